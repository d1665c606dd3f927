"""Train the shipped demo pair (``explorer train-demo``): a byte-level BPE tokenizer and two Llama models on the
Python source every machine with the explorer has (the standard library and the installed torch package).

The target is a small but real code model; the draft is about 1/6 of its per-token FLOPs and is distilled from
the target (trained on the target's next-token distributions), so that it agrees with it on most easy tokens,
the way a draft model for speculative decoding should. Both are written in Hugging Face layout, fp16.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..atomic import atomic_dir, check_output, os_reason
from ..errors import ExplorerError
from .decoder import CausalLM, ModelConfig

EOS = "<|endoftext|>"
VOCAB = 4096
CONTEXT = 512
EASY = 0.5  # "easy" tokens: the target's top-1 probability is at least this

TARGET = dict(hidden_size=256, intermediate_size=768, num_layers=8, num_heads=4, num_kv_heads=2, head_dim=64)
DRAFT = dict(hidden_size=128, intermediate_size=384, num_layers=3, num_heads=2, num_kv_heads=1, head_dim=64)


# ---------------------------------------------------------------- corpus


def corpus_roots() -> list[Path]:
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    try:
        roots.append(Path(torch.__file__).parent)
    except AttributeError:  # pragma: no cover
        pass
    return roots


def corpus_files(max_bytes: int = 200_000) -> list[tuple[str, Path]]:
    """Every .py file of the stdlib and torch (site-packages excluded), as (stable name, path), sorted."""
    files = []
    for root in corpus_roots():
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            if {"site-packages", "dist-packages", "__pycache__"} & set(rel.parts):
                continue
            try:
                if path.stat().st_size > max_bytes:
                    continue
            except OSError:
                continue
            files.append((f"{root.name}/{rel.as_posix()}", path))
    return files


def is_held_out(name: str) -> bool:
    """About 2% of files, chosen by a hash of their name, never seen in training."""
    return hashlib.sha1(name.encode()).digest()[0] < 6


def read_texts(files: list[tuple[str, Path]]) -> list[str]:
    texts = []
    for _, path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.strip():
            texts.append(text)
    return texts


# ---------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def encode_stream(tok: Tokenizer, texts: list[str]) -> np.ndarray:
    """All texts as one uint16 token stream, each file followed by the end-of-text token."""
    eos = tok.token_to_id(EOS)
    parts = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        parts.append(np.asarray(enc.ids + [eos], dtype=np.uint16))
    return np.concatenate(parts)


# ---------------------------------------------------------------- models


def make_config(shape: dict, vocab_size: int) -> ModelConfig:
    return ModelConfig(
        model_type="llama",
        vocab_size=vocab_size,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        rope_scaling={"rope_type": "default"},
        max_position_embeddings=CONTEXT,
        tie_word_embeddings=True,
        **shape,
    )


def flops_per_token(cfg: ModelConfig, context: int = 0) -> int:
    """Forward multiply-adds x2 per token: every matmul including the LM head, plus attention over `context` keys."""
    d, hd = cfg.hidden_size, cfg.head_dim
    attn = d * hd * (2 * cfg.num_heads + 2 * cfg.num_kv_heads)
    mlp = 3 * d * cfg.intermediate_size
    scores = 2 * cfg.num_heads * hd * context
    return 2 * (cfg.num_layers * (attn + mlp + scores) + d * cfg.vocab_size)


def param_count(cfg: ModelConfig) -> int:
    d = cfg.hidden_size
    per_layer = d * cfg.head_dim * (2 * cfg.num_heads + 2 * cfg.num_kv_heads) + 3 * d * cfg.intermediate_size + 2 * d
    lm_head = 0 if cfg.tie_word_embeddings else d * cfg.vocab_size
    return cfg.vocab_size * d + cfg.num_layers * per_layer + d + lm_head


def init_weights(model: CausalLM, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n_layers = model.config.num_layers
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or "layernorm" in name:
            p.data.fill_(1.0)
        else:
            std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            p.data.normal_(0.0, std, generator=g)


def hf_config(cfg: ModelConfig, eos_id: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "float16",
    }


def save_hf(model: CausalLM, tok: Tokenizer, out: Path, card: str) -> None:
    """The model directory, written complete into a temporary folder next to ``out`` and moved in only then: an
    interrupted save never leaves half a model (see explorer.atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:
        _write_hf(model, tok, tmp, card)


def _write_hf(model: CausalLM, tok: Tokenizer, out: Path, card: str) -> None:
    eos = tok.token_to_id(EOS)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_config(model.config, eos), indent=2) + "\n")
    gen = {"bos_token_id": eos, "eos_token_id": eos, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    tok.save(str(out / "tokenizer.json"))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": None,
        "model_max_length": CONTEXT,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    (out / "README.md").write_text(card)


# ---------------------------------------------------------------- training


@dataclass
class TrainSettings:
    steps: int
    batch: int
    seq_len: int
    lr: float
    warmup: int = 100
    weight_decay: float = 0.1


def batches(stream: np.ndarray, batch: int, seq_len: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    starts = rng.integers(0, len(stream) - seq_len - 1, size=batch)
    rows = np.stack([stream[s : s + seq_len + 1] for s in starts]).astype(np.int64)
    rows = torch.from_numpy(rows)
    return rows[:, :-1], rows[:, 1:]


def lr_at(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    model: CausalLM,
    stream: np.ndarray,
    s: TrainSettings,
    seed: int,
    teacher: CausalLM | None = None,
    log=print,
) -> dict:
    """Next-token training; with a ``teacher``, the loss is the KL to the teacher's distribution (distillation)."""
    rng = np.random.default_rng(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
        betas=(0.9, 0.95),
    )
    model.train()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for step in range(s.steps):
        x, y = batches(stream, s.batch, s.seq_len, rng)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 matmuls, fp32 master weights: ~3.5x faster on CPU
            logits = model(x).float()
        if teacher is None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
        else:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                target_logp = F.log_softmax(teacher(x).float(), dim=-1)
            logp = F.log_softmax(logits, dim=-1)
            loss = F.kl_div(
                logp.view(-1, logp.shape[-1]),
                target_logp.view(-1, logp.shape[-1]),
                log_target=True,
                reduction="batchmean",
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == s.steps - 1:
            el = time.perf_counter() - t0
            log(f"step {step:5d}/{s.steps}  loss {loss.item():.3f}  lr {lr_at(step, s):.2e}  {el / 60:.1f} min")
    model.eval()
    with torch.no_grad():  # from here on the model is exactly what is shipped: fp16 weights
        for p in model.parameters():
            p.copy_(p.to(torch.float16).float())
    return {"wall_minutes": (time.perf_counter() - t0) / 60, "cpu_minutes": (time.process_time() - cpu0) / 60}


@torch.no_grad()
def evaluate(target: CausalLM, draft: CausalLM, stream: np.ndarray, seq_len: int, n_windows: int = 64) -> dict:
    """Held-out loss of both models and the draft's greedy agreement with the target, teacher-forced on real code
    and along the target's own greedy continuations (what greedy speculative decoding actually accepts)."""
    rng = np.random.default_rng(1234)
    x, y = batches(stream, n_windows, seq_len, rng)
    losses: dict[str, list[float]] = {"target": [], "draft": []}
    agree, confident = [], []
    for i in range(0, n_windows, 8):  # one forward of each model per chunk serves every teacher-forced figure
        t_logits, d_logits = target(x[i : i + 8]).float(), draft(x[i : i + 8]).float()
        for name, logits in (("target", t_logits), ("draft", d_logits)):
            losses[name].append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i : i + 8].reshape(-1)).item())
        top_p, top = torch.softmax(t_logits, dim=-1).max(-1)
        agree.append((d_logits.argmax(-1) == top).flatten())
        confident.append((top_p >= EASY).flatten())
    agree, confident = torch.cat(agree), torch.cat(confident)
    out = {f"{name}_loss": float(np.mean(v)) for name, v in losses.items()}
    out["agreement_teacher_forced"] = float(agree.float().mean())
    out.update(
        easy_threshold=EASY,
        easy_share=float(confident.float().mean()),
        agreement_easy=float(agree[confident].float().mean()),
        agreement_hard=float(agree[~confident].float().mean()),
    )
    # Along the target's greedy continuations of held-out prompts.
    prompts = x[:16, :64]
    seq = prompts
    for _ in range(64):
        nxt = target(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    t_next = target(seq[:, :-1])[:, 63:].argmax(-1)
    d_next = draft(seq[:, :-1])[:, 63:].argmax(-1)
    out["agreement_on_target_greedy"] = float((t_next == d_next).float().mean().item())
    return out


def model_card(role: str, cfg: ModelConfig, stats: dict, corpus: dict, command: str, other: ModelConfig) -> str:
    params = param_count(cfg)
    ratio = flops_per_token(cfg) / flops_per_token(other) if role == "draft" else None
    lines = [
        f"# explorer demo {role}",
        "",
        f"A {params / 1e6:.2f} M-parameter Llama-architecture model of Python source code, trained from scratch",
        "on a 2-core CPU for the explorer's demos. Tiny and fast, not a useful code model: it exists so that every",
        "view has a real model to run on the first start, offline.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | Llama: {cfg.num_layers} layers, hidden {cfg.hidden_size}, {cfg.num_heads} heads "
        f"({cfg.num_kv_heads} KV head{'s' if cfg.num_kv_heads > 1 else ''}, head_dim {cfg.head_dim}), "
        f"SwiGLU {cfg.intermediate_size}, tied embeddings |",
        f"| parameters | {params:,} |",
        f"| per-token forward FLOPs | {flops_per_token(cfg) / 1e6:.1f} M"
        + (f" ({ratio:.3f} of the target's) |" if ratio else " |"),
        f"| context | {cfg.max_position_embeddings} tokens |",
        f"| tokenizer | byte-level BPE, {cfg.vocab_size} tokens, shared by target and draft, `{EOS}` ends a file |",
        f"| corpus | {corpus['description']} |",
        f"| training tokens | {corpus['train_tokens']:,} in the stream; "
        f"{stats['tokens_seen']:,} seen ({stats['steps']} steps) |",
        f"| objective | {stats['objective']} |",
        f"| training time | {stats['wall_minutes']:.1f} min wall, "
        f"{stats['cpu_minutes']:.1f} CPU-min on {os.cpu_count()} cores; the whole command (tokenizer, target, "
        f"draft, evaluation) {stats['total_wall_minutes']:.1f} min wall, {stats['total_cpu_minutes']:.1f} CPU-min |",
        f"| held-out loss | target {stats['target_loss']:.3f}, draft {stats['draft_loss']:.3f} nats/token "
        f"({corpus['heldout_tokens']:,} held-out tokens, files never trained on) |",
        f"| draft greedy agreement with target | {stats['agreement_teacher_forced']:.3f} "
        "teacher-forced on held-out code; "
        f"{stats['agreement_on_target_greedy']:.3f} along the target's greedy continuations |",
        f"| agreement on easy tokens | {stats['agreement_easy']:.3f} where the target's top-1 probability is "
        f"≥ {stats['easy_threshold']} ({stats['easy_share']:.0%} of held-out tokens); "
        f"{stats['agreement_hard']:.3f} on the rest |",
        "| weights | fp16 safetensors |",
        "",
        "Trained by:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    return "\n".join(lines)


def check_run(out_dir: Path, target_steps: int, draft_steps: int, batch: int, seq_len: int) -> None:
    """Refuse bad sizes and an unwritable --out before 40 minutes of training, not after."""
    for name, value, lo in (("--batch", batch, 1), ("--seq-len", seq_len, 16), ("--target-steps", target_steps, 1),
                            ("--draft-steps", draft_steps, 1)):  # fmt: skip
        if not isinstance(value, int) or value < lo:
            raise ExplorerError(f"{name} must be an integer >= {lo} (got {value})")
    if seq_len > CONTEXT:
        raise ExplorerError(f"--seq-len must be at most the demo models' context of {CONTEXT} tokens (got {seq_len})")
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExplorerError(f"cannot write --out {out_dir}: {os_reason(exc)}") from None
    for sub in ("demo-target", "demo-draft"):
        check_output(Path(out_dir) / sub, None, "--out", directory=True)


def prepare_corpus(seed: int, max_corpus_mb: float, log=print) -> tuple[Tokenizer, np.ndarray, np.ndarray, dict]:
    """A random subset of the training files up to the size budget, the tokenizer trained on half of it, and both
    streams encoded: (tokenizer, training tokens, held-out tokens, the corpus as the model cards describe it)."""
    files = corpus_files()
    train_files = [f for f in files if not is_held_out(f[0])]
    held_files = [f for f in files if is_held_out(f[0])]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_files))
    texts, total = [], 0
    for i in order:
        t = read_texts([train_files[i]])
        if not t:
            continue
        texts.append(t[0])
        total += len(t[0])
        if total > max_corpus_mb * 1e6:
            break
    held_texts = read_texts(held_files)
    log(f"corpus: {len(texts)} training files ({total / 1e6:.1f} MB), {len(held_texts)} held-out files")
    tok = train_tokenizer(texts[: max(1, len(texts) // 2)])
    stream = encode_stream(tok, texts)
    held = encode_stream(tok, held_texts)
    log(f"tokenizer: {tok.get_vocab_size()} tokens; {len(stream):,} training tokens, {len(held):,} held-out")
    roots = ", ".join(str(r) for r in corpus_roots())
    corpus = {
        "description": f"`.py` files of the Python {sysconfig.get_python_version()} standard library and torch "
        f"{torch.__version__} ({roots}); ~2% of files held out by name hash",
        "train_tokens": int(len(stream)),
        "heldout_tokens": int(len(held)),
    }
    return tok, stream, held, corpus


def run(
    out_dir: Path,
    target_steps: int,
    draft_steps: int,
    batch: int,
    seq_len: int,
    seed: int,
    command: str,
    max_corpus_mb: float = 40.0,
    log=print,
) -> dict:
    check_run(out_dir, target_steps, draft_steps, batch, seq_len)
    torch.manual_seed(seed)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    tok, stream, held, corpus = prepare_corpus(seed, max_corpus_mb, log)
    vocab = tok.get_vocab_size()
    tcfg, dcfg = make_config(TARGET, vocab), make_config(DRAFT, vocab)
    target, draft = CausalLM(tcfg), CausalLM(dcfg)
    init_weights(target, seed)
    init_weights(draft, seed + 1)
    log(
        f"target {param_count(tcfg):,} params, draft {param_count(dcfg):,}; "
        f"draft/target FLOPs per token {flops_per_token(dcfg) / flops_per_token(tcfg):.3f}"
    )
    ts = TrainSettings(steps=target_steps, batch=batch, seq_len=seq_len, lr=3e-3)
    t_stats = train(target, stream, ts, seed, log=log)
    target.requires_grad_(False)
    ds = TrainSettings(steps=draft_steps, batch=batch, seq_len=seq_len, lr=4e-3)
    d_stats = train(draft, stream, ds, seed + 1, teacher=target, log=log)
    ev = evaluate(target, draft, held, seq_len)
    log(f"eval: {ev}")
    total_stats = {
        "wall_minutes": (time.perf_counter() - t_start) / 60,
        "cpu_minutes": (time.process_time() - cpu_start) / 60,
    }
    common = {**ev, "total_wall_minutes": total_stats["wall_minutes"], "total_cpu_minutes": total_stats["cpu_minutes"]}
    t_card = model_card(
        "target", tcfg, {**common, **t_stats, "steps": target_steps, "tokens_seen": target_steps * batch * seq_len,
                         "objective": "next-token cross-entropy, AdamW, cosine schedule"}, corpus, command, dcfg,
    )  # fmt: skip
    d_card = model_card(
        "draft", dcfg, {**common, **d_stats, "steps": draft_steps, "tokens_seen": draft_steps * batch * seq_len,
                        "objective": "distillation: KL to the target's next-token distribution"}, corpus, command, tcfg,
    )  # fmt: skip
    save_hf(target, tok, out_dir / "demo-target", t_card)
    save_hf(draft, tok, out_dir / "demo-draft", d_card)
    summary = {**ev, "target": t_stats, "draft": d_stats, "total": total_stats}
    log(f"done: {json.dumps(summary)}")
    return summary
