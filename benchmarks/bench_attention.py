"""How long it takes to trace one attention head (FlashAttention forward with trace=True, m/l/alpha per tile).

Times ``explorer.kernels.attention_trace`` on one head (causal, fp32, 64x64 tiles, head_dim 64) with the Triton
interpreter (N = 512, 1024, 2048) and with the tiled torch path (N = 512 .. 4096), and prints a Markdown table of
CPU time (``time.process_time``, what the requirement is stated in) and wall time, median of ``--repeats`` runs
after one warm-up. q/k/v are random (seed 0): the demo model's context is 512 tokens, so no real prompt reaches
these lengths. When the demo target is present, one more row per backend times the whole ``trace_attention``
(model forward to the layer, kernel, float64 and SDPA references) on a real 511-token prompt.

Requirements: N = 1024 under 1 s on the torch path and under 5 s with the interpreter.

    python benchmarks/bench_attention.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from explorer.kernels import attention_trace, runs_interpreted, triton_available

HEAD_DIM = 64
BLOCK = 64
LIMITS = {"triton": 5.0, "torch": 1.0}  # seconds of CPU time at N = 1024
SIZES = {"triton": (512, 1024, 2048), "torch": (512, 1024, 2048, 4096)}
DEMO_TEXT = (
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n"
    "The quick brown fox jumps over the lazy dog. "
)


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(median CPU seconds, median wall seconds, last result) over ``repeats`` runs after one warm-up run."""
    result = fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall), result


def random_qkv(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(1, 1, n, HEAD_DIM, generator=g) for _ in range(3))


def requirement(backend: str, n: int, cpu: float) -> str:
    if n != 1024:
        return ""
    limit = LIMITS[backend]
    return f"< {limit:g} s: {'PASS' if cpu < limit else 'FAIL'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--no-demo", action="store_true", help="skip the rows on the demo model")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    backends = ["torch"]
    if triton_available() and runs_interpreted():
        backends.insert(0, "triton")
    else:
        print("(Triton interpreter not available here: only the torch path is timed)")
    rows = []
    for backend in backends:
        for n in SIZES[backend]:
            q, k, v = random_qkv(n)

            def run(q=q, k=k, v=v, backend=backend):
                return attention_trace(q, k, v, causal=True, block_m=BLOCK, block_n=BLOCK, backend=backend)

            cpu, wall, res = timed(run, args.repeats if n <= 1024 or backend == "torch" else 1)
            ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            err = (res.o - ref).abs().max().item()
            visited = int((res.tile_state > 0).sum())
            total = res.tile_state.numel()
            label = "Triton interpreter" if backend == "triton" else "torch (tiled)"
            rows.append((label, "random q/k/v", n, f"{visited}/{total}", cpu, wall, err, requirement(backend, n, cpu)))

    if not args.no_demo:
        rows += demo_rows(backends, args.repeats)

    print(f"One head, causal, fp32, {BLOCK}x{BLOCK} tiles, head_dim {HEAD_DIM}, trace=True, {args.threads} thread(s).")
    print("q/k/v are random: the demo model's context is 512 tokens, too short for these N.\n")
    print("| path | input | N | tiles visited/total | CPU s | wall s | max abs diff vs SDPA | requirement (N=1024) |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for label, source, n, tiles, cpu, wall, err, req in rows:
        print(f"| {label} | {source} | {n} | {tiles} | {cpu:.3f} | {wall:.3f} | {err:.1e} | {req} |")


def demo_rows(backends: list[str], repeats: int) -> list[tuple]:
    """Whole trace_attention on the demo target (if it is there) with a prompt filling its context."""
    from explorer.attention.trace import trace_attention
    from explorer.errors import ExplorerError
    from explorer.models.checkpoint import default_model_dirs, load_model

    try:
        lm = load_model(default_model_dirs()["target"], dtype="float32", device="cpu")
    except ExplorerError as exc:
        print(f"(no demo-model rows: {exc})")
        return []
    ctx = lm.config.max_position_embeddings
    ids = (lm.encode(DEMO_TEXT) * ctx)[: ctx - 1]
    layer, head = lm.config.num_layers // 2, 0
    rows = []
    for backend in backends:

        def run(backend=backend):
            return trace_attention(lm, ids, layer, head, block_m=BLOCK, block_n=BLOCK, backend=backend)

        cpu, wall, tr = timed(run, repeats)
        label = "Triton interpreter" if backend == "triton" else "torch (tiled)"
        source = f"{lm.name} L{layer} H{head}, whole trace_attention"
        tiles = f"{tr.meta.tiles_visited}/{tr.meta.tiles_total}"
        rows.append((label, source, tr.meta.n, tiles, cpu, wall, tr.meta.model_max_abs_diff, ""))
    return rows


if __name__ == "__main__":
    main()
