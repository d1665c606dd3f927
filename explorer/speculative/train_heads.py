"""Train draft heads (Medusa, EAGLE, MTP) on a frozen target by self-distillation, CPU-friendly (Qt-free).

The data are the target's own: text windows as prompts, continued by the target's greedy decoding (batched), with
the target's features recorded once on the way. The heads learn the target's next-token distributions at later
positions (soft targets recomputed from the cached features through the frozen LM head, so nothing big is
stored); EAGLE also regresses the next feature. Held-out sequences give each head's top-1 / top-5 agreement with
the target's greedy token, and Medusa's static tree is tuned on them against this machine's verification cost.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..atomic import AtomicDir
from ..errors import ExplorerError
from ..models.checkpoint import LoadedModel
from .costs import verify_cost_curve
from .heads import CONFIG_FILE, WEIGHTS_FILE, EagleHead, MTPModules, build_heads, capture_features, format_choices

HELD_OUT = 0.1  # share of the sequences kept for the accuracy figures and the tree tuning
LOSS_DECAY = 0.8  # Medusa: the loss of head k is weighted 0.8^k


def default_text_files() -> list[Path]:
    """The standard library's sources (the demo target's domain), minus the modules the benchmark prompts use."""
    root = Path(json.__file__).resolve().parent.parent
    files = [p for p in sorted(root.glob("*.py")) if p.stem not in ("statistics", "json")]
    return files


def read_corpus(target: LoadedModel, files: list[Path], max_chars: int = 1_000_000) -> np.ndarray:
    ids: list[int] = []
    chars = 0
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExplorerError(f"cannot read text file {f}: {exc}") from None
        ids += target.encode(text)
        chars += len(text)
        if chars >= max_chars:
            break
    if len(ids) < 1000:
        raise ExplorerError(f"too little text to train heads on ({len(ids)} tokens; give more --text files)")
    return np.asarray(ids, dtype=np.int64)


def progress(label: str, done: int, total: int, start: float, extra: str = "") -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    secs = time.perf_counter() - start
    bar = "#" * filled + "-" * (width - filled)
    end = "\n" if done >= total else ""
    print(f"\r{label} [{bar}] {done}/{total} {secs:5.0f}s {extra}", end=end, file=sys.stderr, flush=True)


@torch.inference_mode()
def self_distill(target: LoadedModel, corpus: np.ndarray, sequences: int, prefix: int, gen: int, seed: int,
                 batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``sequences`` text windows of ``prefix`` tokens, each continued by ``gen`` greedy tokens of the target.
    Returns tokens [S, prefix + gen + 1] and the target's features at every position but the last [S, T, d]."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(corpus) - prefix, size=sequences)
    model = target.model
    T = prefix + gen
    toks = torch.zeros(sequences, T + 1, dtype=torch.long)
    feats = torch.zeros(sequences, T, target.config.hidden_size)
    t0 = time.perf_counter()
    for b in range(0, sequences, batch):
        rows = slice(b, min(b + batch, sequences))
        n = rows.stop - rows.start
        x = torch.as_tensor(np.stack([corpus[s : s + prefix] for s in starts[rows]]))
        toks[rows, :prefix] = x
        cache = model.new_cache(T + 1, batch=n)
        with capture_features(model) as out:
            logits = model(x, cache=cache)
            feats[rows, :prefix] = out[0].float()
            nxt = logits[:, -1].argmax(-1)
            for i in range(gen):
                toks[rows, prefix + i] = nxt
                logits = model(nxt[:, None], cache=cache)
                feats[rows, prefix + i] = out[0][:, 0].float()
                nxt = logits[:, -1].argmax(-1)
            toks[rows, T] = nxt
        progress("self-distilling", rows.stop, sequences, t0)
    return toks, feats


def soft_targets(feats: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
    return torch.softmax(feats @ lm.T, dim=-1)


def soft_ce(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def head_logits(kind: str, module, feats: torch.Tensor, toks: torch.Tensor, t: torch.Tensor, embed, lm, K: int):
    """Per head k = 1..K, the logits at positions (sequence n, time t) [B] for the token at t + k + 1
    (Medusa, MTP); EAGLE is trained on whole sequences instead (see :func:`eagle_step`)."""
    n = torch.arange(len(t))
    f = feats[n, t]
    if kind == "medusa":
        return list(module.logits(f, lm))
    out, h = [], f
    for k, m in enumerate(module, start=1):
        h, o = m(h, embed[toks[n, t + k]])
        out.append(o @ lm.T)
    return out[:K]


def eagle_forward(module, feats, toks, embed, noise: float = 0.0):
    """Teacher-forced EAGLE over whole sequences: entry t = (f_t, x_{t+1}) → f̂_{t+1}, t = 0 .. T − 2."""
    f_in = feats[:, :-1]
    if noise:
        f_in = f_in + (torch.rand_like(f_in) - 0.5) * 2 * noise * f_in.std()
    T = f_in.shape[1]
    pos = torch.arange(T)[None].expand(len(feats), T)
    return module(f_in, embed[toks[:, 1:T + 1]], pos)


def train(target: LoadedModel, kind: str, num_heads: int, steps: int, text_files: list[Path] | None, seed: int,
          sequences: int = 1536, prefix: int = 32, gen: int = 64, lr: float = 1e-3, batch: int = 512,
          draft_vocab: int = 0, draft_loss: bool = False, intermediate: int | None = None,
          log=print) -> tuple[torch.nn.Module, dict]:  # fmt: skip
    """Train a head set; returns the module (fp32, CPU) and its measured card figures. ``draft_loss``: the soft
    targets are the target's distributions restricted to the draft vocabulary and renormalized, and the heads'
    logits are computed over it alone (see the option)."""
    torch.manual_seed(seed)
    files = text_files or default_text_files()
    corpus = read_corpus(target, files)
    toks, feats = self_distill(target, corpus, sequences, prefix, gen, seed)
    lm = target.model.lm_head.weight.detach().float()
    embed = target.model.model.embed_tokens.weight.detach().float()
    n_val = max(1, int(sequences * HELD_OUT))
    tr_toks, tr_feats, va_toks, va_feats = toks[n_val:], feats[n_val:], toks[:n_val], feats[:n_val]
    module = build_heads(kind, target.config, num_heads, intermediate=intermediate).float().train()
    K = 1 if kind == "eagle" else num_heads
    inside = None  # the draft vocabulary as a mask over the whole one
    if 0 < draft_vocab < lm.shape[0]:
        inside = torch.zeros(lm.shape[0], dtype=torch.bool)
        inside[frequent_tokens(tr_toks[:, prefix:], draft_vocab)] = True
    lm_loss = lm[inside] if draft_loss and inside is not None else lm  # the LM-head rows the loss multiplies
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    warm_cosine = lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warm_cosine)
    T = tr_feats.shape[1]
    t0 = time.perf_counter()
    for step in range(steps):
        if kind == "eagle":
            rows = torch.randint(0, len(tr_feats), (max(1, batch // T),))
            f, x = tr_feats[rows], tr_toks[rows]
            out = eagle_forward(module, f, x, embed, noise=0.1)
            reg = F.smooth_l1_loss(out, f[:, 1:])
            ce = soft_ce(out @ lm_loss.T, soft_targets(f[:, 1:], lm_loss))
            loss = reg + 0.3 * ce
        else:
            n = torch.randint(0, len(tr_feats), (batch,))
            t = torch.randint(0, T - K, (batch,))
            outs = head_logits(kind, module, tr_feats[n], tr_toks[n], t, embed, lm_loss, K)
            loss = 0
            for k, lg in enumerate(outs, start=1):
                tgt = soft_targets(tr_feats[n, t + k], lm_loss)
                loss = loss + LOSS_DECAY ** (k - 1) * soft_ce(lg, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 10 == 0 or step == steps - 1:
            progress(f"training {kind}", step + 1, steps, t0, f"loss {float(loss.detach()):.3f}")
    module.eval().requires_grad_(False)
    card = evaluate(kind, module, va_toks, va_feats, embed, lm, K, inside)
    if inside is not None:
        held_out = va_toks[:, prefix:].reshape(-1)
        card.update(draft_vocab=torch.nonzero(inside).flatten().tolist(),
                    draft_vocab_coverage=float(inside[held_out].float().mean()), draft_loss=draft_loss)  # fmt: skip
    card.update(sequences=sequences, prefix=prefix, continuation=gen, steps=steps, seconds=time.perf_counter() - t0,
                text_files=len(files), corpus_tokens=int(len(corpus)))  # fmt: skip
    if kind == "medusa":
        card["medusa_choices"] = tune_medusa_tree(target, module, va_toks, va_feats, lm, K, log)
    return module, card


def frequent_tokens(toks: torch.Tensor, n: int) -> list[int]:
    """The ``n`` tokens the target emitted most often (its greedy continuations); ties by id."""
    counts = torch.bincount(toks.reshape(-1)).tolist()
    return sorted(range(len(counts)), key=lambda t: (-counts[t], t))[:n]


@torch.inference_mode()
def evaluate(kind, module, toks, feats, embed, lm, K, inside: torch.Tensor | None = None) -> dict:
    """Per head: held-out top-1 / top-5 agreement with the target's greedy token (teacher-forced); with a draft
    vocabulary (``inside``, a mask over the whole one), the heads' guesses are restricted to it as when drafting."""
    T = feats.shape[1]
    outside = ~inside if inside is not None else None
    if kind == "eagle":
        out = eagle_forward(module, feats, toks, embed) @ lm.T  # [S, T-1, V]
        if outside is not None:
            out = out.masked_fill(outside, float("-inf"))
        truth = (feats[:, 1:] @ lm.T).argmax(-1)
        top5 = out.topk(5, dim=-1).indices
        return {"top1": [float((top5[..., 0] == truth).float().mean())],
                "top5": [float((top5 == truth[..., None]).any(-1).float().mean())]}  # fmt: skip
    n, t = torch.meshgrid(torch.arange(len(feats)), torch.arange(T - K), indexing="ij")
    n, t = n.reshape(-1), t.reshape(-1)
    outs = head_logits(kind, module, feats[n], toks[n], t, embed, lm, K)
    top1, top5 = [], []
    for k, lg in enumerate(outs, start=1):
        truth = (feats[n, t + k] @ lm.T).argmax(-1)
        if outside is not None:
            lg = lg.masked_fill(outside, float("-inf"))
        idx = lg.topk(5, dim=-1).indices
        top1.append(float((idx[:, 0] == truth).float().mean()))
        top5.append(float((idx == truth[:, None]).any(-1).float().mean()))
    return {"top1": top1, "top5": top5}


@torch.inference_mode()
def tune_medusa_tree(target, module, toks, feats, lm, K, log=print, max_nodes: int = 24, ranks: int = 5) -> list:
    """Medusa's tree, tuned here: grow it greedily by the held-out probability that a path is the target's greedy
    continuation (every head's rank matches), and keep the size whose expected tokens per step over the measured
    cost of verifying that many nodes is best."""
    T = feats.shape[1]
    n, t = torch.meshgrid(torch.arange(len(feats)), torch.arange(T - K), indexing="ij")
    n, t = n.reshape(-1), t.reshape(-1)
    logits = module.logits(feats[n, t], lm)  # [K, P, V]
    order = logits.topk(ranks, dim=-1).indices  # [K, P, ranks]
    rank = torch.full((K, len(n)), -1)
    for k in range(K):
        truth = (feats[n, t + k + 1] @ lm.T).argmax(-1)
        hit = order[k] == truth[:, None]
        rank[k] = torch.where(hit.any(-1), hit.float().argmax(-1), torch.tensor(-1))
    prob: dict[tuple, float] = {}

    def p(path: tuple) -> float:
        if path not in prob:
            ok = torch.ones(len(n), dtype=torch.bool)
            for k, r in enumerate(path):
                ok &= rank[k] == r
            prob[path] = float(ok.float().mean())
        return prob[path]

    tree: list[tuple] = []
    frontier = {(r,) for r in range(ranks)}
    curve = verify_cost_curve(target.model, 64, sizes=tuple(range(1, max_nodes + 1)), repeats=5)
    best, best_value, sizes = [], 0.0, []
    expected = 1.0
    for size in range(1, max_nodes + 1):
        path = max(sorted(frontier), key=p)
        tree.append(path)
        frontier.discard(path)
        if len(path) < K:
            frontier |= {path + (r,) for r in range(ranks)}
        expected += p(path)
        cost = curve["tree_seconds"][size - 1] / curve["base_seconds"]
        value = expected / cost
        sizes.append((size, expected, cost, value))
        if value > best_value:
            best, best_value = list(tree), value
    log(f"medusa tree: {len(best)} nodes, expected {sizes[len(best) - 1][1]:.2f} tokens per step at "
        f"{sizes[len(best) - 1][2]:.2f}x a decode step's cost ({format_choices(best)})")  # fmt: skip
    return [list(c) for c in best]


def _intermediate(module) -> int | None:
    """The MLP width of EAGLE's layer or the MTP modules (None for Medusa, which has no MLP)."""
    if isinstance(module, EagleHead):
        return module.cfg.intermediate_size
    if isinstance(module, MTPModules):
        return module[0].mlp.down_proj.in_features
    return None


def write_heads(out: Path, kind: str, module, target: LoadedModel, card: dict, num_heads: int, command: str) -> Path:
    """config.json, heads.safetensors (fp16) and README.md, written into a temporary directory beside ``out`` and
    renamed when complete."""
    cfg = target.config
    config = {
        "kind": kind,
        "num_heads": 1 if kind == "eagle" else num_heads,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "intermediate_size": _intermediate(module),
        "target": target.name,
        "medusa_choices": card.get("medusa_choices"),
        "draft_vocab": card.get("draft_vocab"),
        "accuracy": {"top1": card["top1"], "top5": card["top5"]},
        "command": command,
    }
    d = AtomicDir(out)
    try:
        tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}
        save_file(tensors, str(d.tmp / WEIGHTS_FILE), metadata={"kind": kind})
        (d.tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (d.tmp / "README.md").write_text(model_card(kind, config, card, command), encoding="utf-8")
    except BaseException:
        d.discard()
        raise
    return d.commit()


def model_card(kind: str, config: dict, card: dict, command: str) -> str:
    what = {
        "medusa": "Medusa heads (residual block on the target's last feature, the target's LM head shared); head k "
        "predicts token t + k + 1",
        "eagle": "an EAGLE head (fc of [feature ; next token embedding] → one decoder layer → next feature, the "
        "target's LM head shared)",
        "mtp": "multi-token prediction modules (DeepSeek-V3 style, attention-free block), module k predicts token "
        "t + k + 1 from module k − 1's state and the embedding of token t + k",
    }[kind]
    rows = "\n".join(
        f"| {k + 1} | {a:.3f} | {b:.3f} |" for k, (a, b) in enumerate(zip(card["top1"], card["top5"], strict=True))
    )
    tree = ""
    if card.get("medusa_choices"):
        paths = card["medusa_choices"]
        tree = f"\nTuned static tree ({len(paths)} nodes): `{format_choices(paths)}`\n"
    if card.get("draft_vocab"):
        tree += (f"\nDrafts from the {len(card['draft_vocab'])} tokens the target emitted most often in the training "
                 f"data ({card['draft_vocab_coverage']:.1%} of its held-out greedy tokens; the figures above are "
                 "restricted to them).\n")  # fmt: skip
        if card.get("draft_loss"):
            tree += ("Trained against the target's distributions restricted to those tokens (renormalized), their "
                     "LM-head rows alone.\n")  # fmt: skip
    return f"""# {kind} heads for {config['target']}

{what}. Self-distilled on the frozen target: {card['sequences']} windows of {card['prefix']} tokens of text
({card['text_files']} files, {card['corpus_tokens']} tokens) continued by {card['continuation']} greedy tokens of the
target; soft targets are the target's own next-token distributions. {card['steps']} optimizer steps,
{card['seconds']:.0f} s of training (after the data).

Held-out agreement with the target's greedy token (teacher-forced; {int(HELD_OUT * 100)}% of the sequences):

| head | top-1 | top-5 |
|---:|---:|---:|
{rows}
{tree}
Made with:

    {command}
"""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
