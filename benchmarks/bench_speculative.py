"""Speculative decoding speed on the demo pair: target-only vs draft chains, token trees and prompt lookup, and
transformers' assisted generation (``assistant_model``) on the same pair, all in this one process.

Greedy, fp32 on CPU, held-out prompts (source files of this repository and of the standard library, which are not
in the demo pair's training corpus), every configuration checked token-identical to target-only greedy. Runs are
interleaved per prompt so that machine noise hits all alike; tokens/s is the total over prompts of the medians.

    python benchmarks/bench_speculative.py [--new-tokens 96] [--repeats 3]
    python benchmarks/bench_speculative.py --smollm --heads DIR   # SmolLM2-135M-Instruct (GGUF) with heads for it

With --smollm the target is SmolLM2's GGUF (fetched once into the user's cache); it has no draft model, so only
target-only, prompt lookup and the given heads run, and transformers' assisted generation is left out.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from pathlib import Path

import torch

from explorer.models.checkpoint import default_head_dirs, default_model_dirs, load_model
from explorer.models.generate import generate
from explorer.speculative.costs import verify_cost_curve, where_it_pays
from explorer.speculative.engine import run_speculation
from explorer.speculative.heads import load_heads
from explorer.speculative.records import SpecOptions

ROOT = Path(__file__).resolve().parent.parent


def held_out_prompts() -> list[str]:
    sources = [ROOT / "explorer" / "models" / "generate.py", ROOT / "explorer" / "session.py"]
    sources.append(Path(inspect.getfile(json)))
    sources.append(Path(inspect.getfile(statistics)))
    prompts = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        cut = text.find("\ndef ", len(text) // 3)  # the start of a function in the file's middle
        prompts.append(text[cut + 1 : cut + 1 + 300])
    return prompts


CONFIGS = {
    "chain γ=2": SpecOptions(gamma=2),
    "chain γ=3": SpecOptions(gamma=3),
    "chain γ=5": SpecOptions(gamma=5),
    "tree d=4 k=2 n=8": SpecOptions(method="tree", tree_depth=4, tree_topk=2, tree_budget=8),
    "tree d=5 k=4 n=24": SpecOptions(method="tree", tree_depth=5, tree_topk=4, tree_budget=24),
    "prompt lookup γ=4": SpecOptions(method="lookup", gamma=4),
    "medusa (tuned tree)": SpecOptions(method="medusa"),
    "medusa chain 0.0": SpecOptions(method="medusa", medusa_tree="0,0.0"),
    "medusa 1 node": SpecOptions(method="medusa", medusa_tree="0"),
    "eagle d=2 k=1 n=2": SpecOptions(method="eagle", tree_depth=2, tree_topk=1, tree_budget=2),
    "eagle d=3 k=1 n=3": SpecOptions(method="eagle", tree_depth=3, tree_topk=1, tree_budget=3),
    "eagle d=4 k=2 n=6": SpecOptions(method="eagle", tree_depth=4, tree_topk=2, tree_budget=6),
    "mtp γ=1": SpecOptions(method="mtp", gamma=1),
    "mtp γ=2": SpecOptions(method="mtp", gamma=2),
    "mtp γ=3": SpecOptions(method="mtp", gamma=3),
    "prompt lookup γ=4 + mtp heads": SpecOptions(method="lookup", gamma=4),
    "prompt lookup γ=4 + medusa heads": SpecOptions(method="lookup", gamma=4),
}
FALLBACK = {"prompt lookup γ=4 + mtp heads": "mtp", "prompt lookup γ=4 + medusa heads": "medusa"}  # no n-gram: heads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--only", nargs="+", metavar="WORD", help="run only the configurations whose name has a word")
    ap.add_argument("--smollm", action="store_true", help="SmolLM2-135M-Instruct's GGUF as the target (no draft)")
    ap.add_argument("--heads", nargs="+", default=[], metavar="DIR", help="head directories (default: the demo "
                    "target's shipped heads)")  # fmt: skip
    args = ap.parse_args()
    if args.smollm:
        for name in [k for k, o in CONFIGS.items() if o.method in ("chain", "tree")]:
            del CONFIGS[name]
    if args.only:
        for name in [k for k in CONFIGS if not any(w in k for w in args.only)]:
            del CONFIGS[name]
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    dirs = default_model_dirs()
    if args.smollm:
        from explorer.models.smollm import fetch_smollm

        dirs = {"target": fetch_smollm()}
    target = load_model(dirs["target"], dtype="float32", device="cpu")
    draft = None if args.smollm else load_model(dirs["draft"], dtype="float32", device="cpu")
    head_dirs = [Path(p) for p in args.heads] or [p for p in default_head_dirs().values() if p.is_dir()]
    heads = {h.kind: h for h in (load_heads(p, target) for p in head_dirs)}
    for name in [k for k, o in CONFIGS.items() if FALLBACK.get(k, o.method) in ("medusa", "eagle", "mtp")]:
        if FALLBACK.get(name, CONFIGS[name].method) not in heads:
            del CONFIGS[name]
    for kind, h in heads.items():
        acc = h.config.get("accuracy", {})
        pairs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(acc.get("top1", []), acc.get("top5", []), strict=True))
        print(f"{kind} heads ({h.path}): held-out top-1/top-5 per head {pairs}")
    if not args.smollm:
        hf_target = transformers.AutoModelForCausalLM.from_pretrained(dirs["target"], dtype=torch.float32).eval()
        hf_draft = transformers.AutoModelForCausalLM.from_pretrained(dirs["draft"], dtype=torch.float32).eval()
    n = args.new_tokens
    for opt in CONFIGS.values():
        opt.detail, opt.stop_at_eos = False, False

    def target_only(ids):
        return generate(target, ids, n, stop_at_eos=False)

    # The current prompt's timed runs: drafting seconds per drafted token, and the cost model's speedup built from
    # each run's own costs on the prompt's verification curve (``current``).
    drafting = {k: [] for k in CONFIGS}
    modelled = {k: [] for k in CONFIGS}
    current = {}

    def spec(name, opt):
        h = heads.get(FALLBACK.get(name, opt.method))
        d = None if h is not None or opt.method == "lookup" else draft

        def run(ids):
            result = run_speculation(target, d, ids, n, opt, compare=False, heads=h)
            if result.stats["drafted"]:
                drafting[name].append(result.stats["draft_seconds"] / result.stats["drafted"])
            if "curve" in current:
                tree = any(s.mask is not None for s in result.steps)  # verified with a tree mask (else a chain)
                modelled[name].append(where_it_pays(current["curve"], result.stats, tree)["model_speedup"])
            return result.token_ids

        return run

    @torch.inference_mode()
    def assisted(ids):
        out = hf_target.generate(
            torch.tensor([ids]), assistant_model=hf_draft, do_sample=False, max_new_tokens=n, min_new_tokens=n
        )
        return out[0, len(ids) :].tolist()

    runners = {"target-only": target_only, **{k: spec(k, v) for k, v in CONFIGS.items()}}
    if not args.smollm:
        runners["transformers assisted"] = assisted
    seconds = {k: 0.0 for k in runners}
    tokens = {k: 0 for k in runners}
    identical = {k: True for k in runners}
    accepted = {k: [] for k in CONFIGS}
    step_seconds = {k: [0.0, 0] for k in CONFIGS}  # seconds and steps of the stats runs
    ratios = {k: [] for k in runners}  # per prompt and repeat: target-only time / this method's time
    model_speedup = {}  # the cost model's figure for the current prompt
    # The model's figure for the whole benchmark: the target-only time it implies per prompt (its median time
    # over the model's speedup for that prompt), summed; prompts differ a lot (lookup: 1x on one, 3x on another),
    # so medians of per-prompt ratios taken apart do not compare.
    model_seconds = {k: 0.0 for k in CONFIGS}
    # Drafting seconds per drafted token (median over a prompt's timed runs) over one target forward (the cost
    # curve's unit), and over one step of target-only decoding (its median time per token for the prompt).
    draft_cost = {k: [] for k in CONFIGS}
    draft_cost_decode = {k: [] for k in CONFIGS}
    prompts = held_out_prompts()
    for prompt in prompts:
        ids = target.encode(prompt)
        ref = target_only(ids)
        times = {k: [] for k in runners}
        for name, fn in runners.items():  # warm-up + correctness
            identical[name] &= fn(ids) == ref
        curve = verify_cost_curve(target.model, len(ids), sizes=tuple(range(1, 25)), repeats=5)
        current["curve"] = curve
        for name, opt in CONFIGS.items():
            h = heads.get(FALLBACK.get(name, opt.method))
            d = None if h is not None or opt.method == "lookup" else draft
            stats = run_speculation(target, d, ids, n, opt, compare=False, heads=h).stats
            accepted[name].append(stats["mean_accepted_with_bonus"])
            step_seconds[name][0] += stats["seconds"]
            step_seconds[name][1] += stats["steps"]
        for v in (*drafting.values(), *modelled.values()):
            v.clear()
        for _ in range(args.repeats):
            for name, fn in runners.items():
                t0 = time.perf_counter()
                out = fn(ids)
                times[name].append(time.perf_counter() - t0)
            tokens_once = len(out)
            for name in runners:
                ratios[name].append(times["target-only"][-1] / times[name][-1])
        decode_step = statistics.median(times["target-only"]) / n
        for name, figures in modelled.items():
            model_speedup[name] = statistics.median(figures)
        for name, per_token in drafting.items():
            if per_token and FALLBACK.get(name, CONFIGS[name].method) != "lookup":
                draft_cost[name].append(statistics.median(per_token) / curve["base_seconds"])
                draft_cost_decode[name].append(statistics.median(per_token) / decode_step)
        for name in runners:
            seconds[name] += statistics.median(times[name])
            if name in CONFIGS:
                model_seconds[name] += statistics.median(times["target-only"]) / model_speedup[name]
            tokens[name] += n if name != "transformers assisted" else tokens_once
    tps = {k: tokens[k] / seconds[k] for k in runners}
    pair = Path(dirs["target"]).name if args.smollm else "demo pair"
    print(
        f"{pair}, fp32 CPU, threads {torch.get_num_threads()}, {len(prompts)} held-out prompts x {n} new tokens, "
        f"greedy, median of {args.repeats}; torch {torch.__version__}, transformers {transformers.__version__}"
    )
    print()
    print(
        "| method | tokens/s | vs target-only: median (min–max) | cost model (total time) | vs transformers assisted | "
        "tokens/step | = greedy |"
    )
    print("|---|---:|---:|---:|---:|---:|:-:|")
    base, hf = tps["target-only"], tps.get("transformers assisted", float("nan"))
    for name in runners:
        per_step = f"{statistics.mean(accepted[name]):.2f}" if name in accepted else ""
        r = ratios[name]
        model = f"{seconds['target-only'] / model_seconds[name]:.2f}x" if name in model_seconds else ""
        print(
            f"| {name} | {tps[name]:.1f} | {statistics.median(r):.2f}x ({min(r):.2f}–{max(r):.2f}) | {model} | "
            f"{tps[name] / hf:.2f}x | {per_step} | {'yes' if identical[name] else 'NO'} |"
        )
    best = max((tps[k] for k in CONFIGS if CONFIGS[k].method in ("chain", "tree")), default=0.0)
    best_heads = max((tps[k] for k in CONFIGS if CONFIGS[k].method in ("medusa", "eagle", "mtp")), default=0.0)
    print()
    if args.smollm:
        print(f"best heads: {best_heads / base:.2f}x target-only")
    else:
        print(
            f"best draft-model chain/tree: {best / base:.2f}x target-only, {best / hf:.2f}x transformers assisted; "
            f"best heads: {best_heads / base:.2f}x target-only (required >= 1.1x and faster than the draft model)"
        )
    print_cost_model(CONFIGS, accepted, step_seconds, 1000 * seconds["target-only"] / tokens["target-only"])
    print()
    print("drafting cost per drafted token (median over prompts of each prompt's median over its timed runs; required "
          "<= 0.15 for heads), in one-token target forwards / in target-only decoding steps:")
    for name, costs in draft_cost.items():
        if costs:
            dec = draft_cost_decode[name]
            print(f"  {name}: {statistics.median(costs):.3f} ({min(costs):.3f}–{max(costs):.3f}) / "
                  f"{statistics.median(dec):.3f} ({min(dec):.3f}–{max(dec):.3f})")
    off = {k: model_seconds[k] / seconds[k] - 1 for k in CONFIGS if model_seconds[k]}  # total-time speedups
    worst = max(off, key=lambda k: abs(off[k]))
    print(f"measured vs cost model (speedups in total time over the prompts): largest gap {off[worst]:+.1%} ({worst}); "
          f"{sum(abs(v) <= 0.15 for v in off.values())} of {len(off)} within 15%")


def tokens_per_step(alpha: float, depth: int) -> float:
    return depth + 1 if alpha >= 1 else (1 - alpha ** (depth + 1)) / (1 - alpha)


def alpha_for(tokens: float, depth: int) -> float:
    """The per-position acceptance α that gives ``tokens`` per step with ``depth`` drafts (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tokens_per_step(mid, depth) < tokens else (lo, mid)
    return lo


def print_cost_model(configs, accepted, step_seconds, target_ms: float, goal: float = 1.6) -> None:
    """Why a configuration is as fast as it is: a step costs (almost) the same whatever is accepted, so
    speedup = tokens per step × target ms per token / ms per step; from that, the tokens per step — and the
    per-position acceptance α of a chain — that the goal needs at the measured costs."""
    print()
    print(f"cost model (target-only: {target_ms:.2f} ms/token)")
    print()
    print(f"| method | ms/step | tokens/step | α (equivalent chain) | tokens/step for {goal}x | α needed |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, opt in configs.items():
        secs, steps = step_seconds[name]
        if not steps or opt.method == "lookup":
            continue
        step_ms = 1000 * secs / steps
        have = statistics.mean(accepted[name])
        need = goal * step_ms / target_ms
        depth = opt.depth
        needed = f"{alpha_for(need, depth):.2f}" if need < depth + 1 else "impossible"
        print(f"| {name} | {step_ms:.2f} | {have:.2f} | {alpha_for(have, depth):.2f} | {need:.2f} | {needed} |")


if __name__ == "__main__":
    main()
