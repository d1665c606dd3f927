"""Greedy decoding speed: explorer's `generate` vs transformers' `generate` on the same model, side by side.

Same prompt, same number of new tokens, fp32 on CPU, both in this one process, alternating runs so that machine
noise hits both alike. Prints a Markdown table and the ratio (the issue requires >= 1.5x on the demo target).

    python benchmarks/bench_generate.py [--model DIR] [--new-tokens 128] [--repeats 5]
    python benchmarks/bench_generate.py --smollm     # SmolLM2-135M-Instruct from its Q4_1 GGUF (+ load time, RSS)

With --smollm the model is the GGUF file (fetched once into the user's cache), transformers loads the same file
through its own GGUF support, and a fresh process measures the GGUF load time and its peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from explorer.models.checkpoint import default_model_dirs, load_model
from explorer.models.generate import generate

PROMPT = "import os\nimport sys\n\n\ndef main(argv):\n    "
LOAD_PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
from explorer.models.checkpoint import load_model
lm = load_model(sys.argv[1], dtype="float32", device="cpu")
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def load_probe(path: str) -> dict:
    """GGUF load time (imports included) and peak RSS, in a fresh process so that nothing else is counted."""
    out = subprocess.run([sys.executable, "-c", LOAD_PROBE, path], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(default_model_dirs()["target"]))
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--smollm", action="store_true", help="SmolLM2-135M-Instruct's Q4_1 GGUF instead of --model")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    probe = None
    if args.smollm:
        from explorer.models.smollm import fetch_smollm

        path = fetch_smollm()
        args.model = str(path)
        probe = load_probe(args.model)
        ref = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    else:
        ref = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    ref = ref.eval()
    lm = load_model(args.model, dtype="float32", device="cpu")
    ids = lm.encode(PROMPT)
    n = args.new_tokens
    input_ids = torch.tensor([ids])

    def ours() -> list[int]:
        return generate(lm, ids, n, stop_at_eos=False)

    @torch.inference_mode()
    def theirs() -> list[int]:
        out = ref.generate(input_ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return out[0, len(ids) :].tolist()

    a, b = ours(), theirs()  # warm-up, and the tokens must agree
    same = a == b
    t_ours, t_theirs = [], []
    for _ in range(args.repeats):
        for fn, times in ((ours, t_ours), (theirs, t_theirs)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    tps_ours = n / statistics.median(t_ours)
    tps_theirs = n / statistics.median(t_theirs)
    print(
        f"model: {args.model}  prompt: {len(ids)} tokens  new tokens: {n}  fp32 CPU  "
        f"threads: {torch.get_num_threads()}  repeats: {args.repeats} (median)"
    )
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; identical tokens: {same}")
    print()
    print("| implementation | tokens/s | ms/token |")
    print("|---|---:|---:|")
    print(f"| explorer generate | {tps_ours:.1f} | {1000 / tps_ours:.2f} |")
    print(f"| transformers generate | {tps_theirs:.1f} | {1000 / tps_theirs:.2f} |")
    print()
    print(f"ratio explorer / transformers: {tps_ours / tps_theirs:.2f}x")
    if probe is not None:
        print(f"GGUF load (fresh process, imports included): {probe['seconds']:.1f} s, "
              f"peak RSS {probe['peak_rss_mb']:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
