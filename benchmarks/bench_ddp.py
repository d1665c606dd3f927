"""All-reduce on this machine's loopback against the α–β model: for N = 2..8 real gloo ranks (explorer's
launcher), the hand-written ring and dist.all_reduce are timed on float32 tensors of several sizes (median of a
few runs, slowest rank); α and β are fitted to all the ring's timings together, and the model's ring time is
printed beside each measurement, with where the model says a binary tree or a direct reduce would beat the ring.
Prints Markdown tables.

    python benchmarks/bench_ddp.py [--ranks 2,3,4,5,6,7,8] [--sizes 4096,65536,1048576,8388608] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from explorer.distributed.cost import describe_crossings, fit
from explorer.distributed.launch import LaunchSpec, collect


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default="2,3,4,5,6,7,8")
    p.add_argument("--sizes", default="4096,65536,1048576,8388608", help="bytes")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    ns = [int(x) for x in a.ranks.split(",")]
    sizes = [int(x) for x in a.sizes.split(",")]
    sweeps = []
    for n in ns:
        t0 = time.perf_counter()
        results, _ = collect("explorer.distributed.cost:cost_worker", {"sizes": sizes, "repeats": a.repeats},
                             LaunchSpec(n, timeout_s=600))  # fmt: skip
        sweeps.append(results[0])
        print(f"N={n}: measured in {time.perf_counter() - t0:.1f} s", flush=True)
    model = fit(sweeps, "ring")
    print(f"\n{platform.node()}, {os.cpu_count()} CPU cores, gloo over 127.0.0.1; {a.repeats} runs per figure (median)")
    print(f"α = {model.alpha * 1e6:.0f} µs per message, β = {model.beta / 2**20:.0f} MiB/s "
          f"(median |model − measured| / measured: {model.rel_error:.0%})\n")  # fmt: skip
    print("| N | size | ring measured | ring model | dist.all_reduce | best by the model |")
    print("|---|---|---|---|---|---|")
    for s in sweeps:
        n = s["n"]
        for size, ring, gloo in zip(s["sizes"], s["ring"], s["all_reduce"], strict=True):
            print(f"| {n} | {size / 1024:.0f} KiB | {ring * 1e3:.2f} ms | {model.ring(n, size) * 1e3:.2f} ms | "
                  f"{gloo * 1e3:.2f} ms | {model.best(n, size)} |")  # fmt: skip
    print("\nOne fit per N (α and β of that N's sizes alone): where α grows with N, the ranks share cores.\n")
    print("| N | α | β | median error |")
    print("|---|---|---|---|")
    for s in sweeps:
        one = fit([s], "ring")
        print(f"| {s['n']} | {one.alpha * 1e6:.0f} µs | {one.beta / 2**20:.0f} MiB/s | {one.rel_error:.0%} |")
    print()
    for line in describe_crossings(model, ns):
        print(f"- {line}")


if __name__ == "__main__":
    main()
