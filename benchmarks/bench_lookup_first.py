"""Lookup first against the heads alone and lookup alone, per prompt, on the demo target (issue 26).

The default prompt and the 12 held-out prompts of bench_shape.py (both sets), greedy, auto shapes, fp32 on CPU,
one torch thread. With ``--smollm`` the target is SmolLM2-135M-Instruct's GGUF (fetched once into the user's cache)
with the EAGLE heads shipped for it (lookup first + EAGLE is what ``explorer speculate`` runs there with no flags).
Per prompt: each configuration once to warm up and to check it token-identical to greedy, then ``--pairs``
rounds timing target-only and each configuration side by side (the order reversed every other round).
Prints each prompt's median ratios, the steps each drafter drafted, and the medians over all prompts and pairs.

    python benchmarks/bench_lookup_first.py [--new-tokens 48] [--pairs 2] [--smollm]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_shape import AUTO, held_out_prompts

from explorer.models.checkpoint import default_head_dirs, default_model_dirs, load_model
from explorer.models.generate import generate
from explorer.models.smollm import fetch_smollm
from explorer.session import DEFAULT_PROMPT
from explorer.speculative.engine import TimedSpeculation
from explorer.speculative.heads import find_heads, load_heads
from explorer.speculative.records import SpecOptions
from explorer.speculative.shape import choose_method, curve_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--smollm", action="store_true", help="SmolLM2-135M-Instruct's GGUF with its EAGLE heads")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = fetch_smollm() if args.smollm else default_model_dirs()["target"]
    target = load_model(path, dtype="float32", device="cpu")
    head_dirs = find_heads(path) if args.smollm else default_head_dirs()
    heads = {k: load_heads(p, target) for k, p in head_dirs.items() if p.is_dir()}

    print(f"{path.name}: default method {choose_method(SpecOptions(), target, heads, None, curve_for(target))[1]}",
          flush=True)  # fmt: skip

    def opt(method: str) -> SpecOptions:
        return SpecOptions(method=method, detail=False, stop_at_eos=False, **AUTO)

    configs = {"eagle": (opt("eagle"), heads["eagle"]), "lookup": (opt("lookup"), None),
               "lookup first + eagle": (opt("lookup"), heads["eagle"]),
               **({"lookup first + mtp": (opt("lookup"), heads["mtp"])} if "mtp" in heads else {})}  # fmt: skip
    n = args.new_tokens
    ratios: dict[str, list[float]] = {k: [] for k in configs}
    prompts = [DEFAULT_PROMPT, *held_out_prompts("bench"), *held_out_prompts("check")]
    for p, prompt in enumerate(prompts):
        ids = target.encode(prompt)
        ref = generate(target, ids, n, stop_at_eos=False)
        steps = {}
        for k, (o, h) in configs.items():
            run = TimedSpeculation(target, None, ids, n, o, h).run()
            assert run.new_tokens == ref, k
            if run.shape and "drafters" in run.shape:
                steps[k] = run.shape["drafters"]["steps"]
        mine: dict[str, list[float]] = {k: [] for k in configs}
        for r in range(args.pairs):
            for k in list(configs) if r % 2 == 0 else list(configs)[::-1]:
                t0 = time.perf_counter()
                generate(target, ids, n, stop_at_eos=False)
                t1 = time.perf_counter()
                TimedSpeculation(target, None, ids, n, *configs[k]).run()
                mine[k].append((t1 - t0) / (time.perf_counter() - t1))
        print(f"prompt {p}: " + ", ".join(f"{k} {statistics.median(v):.2f}×" for k, v in mine.items())
              + "".join(f"; {k} steps {s}" for k, s in steps.items()), flush=True)  # fmt: skip
        for k in configs:
            ratios[k] += mine[k]
    print("median: " + ", ".join(f"{k} {statistics.median(v):.2f}×" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
