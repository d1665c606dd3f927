"""Prompt-set speed: running a set with a compared configuration, and opening a 1,000-prompt run.

Required (issue 14): 40 prompts × 64 tokens on the demo pair with one compared configuration in <= 2 minutes;
opening a 1,000-prompt run shows the table in < 1 s.

    python benchmarks/bench_promptset.py [--prompts assets/prompts/code.jsonl] [--compare gamma=2] [--opens 4]

The run is the real command (`explorer speculate --prompts ... --compare ... --out RUN`) in a fresh process, timed
wall-clock. The 1,000-prompt run is that run's records repeated under new prompt ids (same sizes as a real one);
"table shown" is from File › Open run… until the table has painted, "plots" until the deferred plots are drawn too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_run(prompts: Path, compare: str, tokens: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "explorer", "speculate", "--prompts", str(prompts), "--max-new-tokens",
           str(tokens), "--compare", compare, "--out", str(out)]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def thousand_prompt_run(run: Path, out: Path, n: int = 1000) -> int:
    """The run's prompts and records repeated under new ids, ``n`` prompts in all; returns the file's bytes."""
    lines = run.read_bytes().split(b"\n")
    header = json.loads(lines[0])
    by_prompt: dict[str, list[dict]] = {}
    for line in lines[1:]:
        if line:
            rec = json.loads(line)
            by_prompt.setdefault(rec["prompt"], []).append(rec)
    source = {p["id"]: p for p in header["prompts"]}
    ids = list(by_prompt)
    prompts, body = [], []
    for i in range(n):
        base, pid = ids[i % len(ids)], f"p{i:04d}"
        prompts.append(source[base] | {"id": pid})
        body += [json.dumps(rec | {"prompt": pid}) for rec in by_prompt[base]]
    header["prompts"] = prompts
    out.write_text(json.dumps(header) + "\n" + "\n".join(body) + "\n")
    return out.stat().st_size


def open_times(small: Path, big: Path, opens: int) -> tuple[list[float], list[float]]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from explorer.speculative.runs import read_run
    from explorer.ui.app import ensure_app
    from explorer.ui.promptset_app import window_with_run

    app = ensure_app(offscreen=True)
    win = window_with_run(read_run(small), offscreen=True)
    win.resize(1920, 1080)
    win.show()
    app.processEvents()
    view = win.views["promptset"]
    table, plots = [], []
    for _ in range(opens):
        t0 = time.perf_counter()
        view.open_run(big)
        view.table.viewport().repaint()
        table.append(time.perf_counter() - t0)
        app.processEvents()  # the deferred plots
        plots.append(time.perf_counter() - t0)
        assert view.proxy.rowCount() == 1000
        view.open_run(small)
        app.processEvents()
    win.close()
    return table, plots


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s ({min(xs):.2f}–{max(xs):.2f}, {len(xs)} opens)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=Path, default=ROOT / "assets" / "prompts" / "code.jsonl")
    ap.add_argument("--compare", default="gamma=2")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--opens", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run, big = Path(tmp) / "run.jsonl", Path(tmp) / "run1000.jsonl"
        seconds = timed_run(args.prompts, args.compare, args.tokens, run)
        size = thousand_prompt_run(run, big)
        table, plots = open_times(run, big, args.opens)
    n = sum(1 for line in args.prompts.read_text().splitlines() if line.strip())
    print("| measurement | value | required |")
    print("|---|---:|---:|")
    print(f"| {n} prompts × {args.tokens} tokens, base + `--compare {args.compare}` (wall, fresh process) "
          f"| {seconds:.0f} s | ≤ 120 s |")  # fmt: skip
    print(f"| open a 1,000-prompt run ({size / 1e6:.0f} MB): table shown | {spread(table)} | < 1 s |")
    print(f"| … and its plots drawn | {spread(plots)} | |")


if __name__ == "__main__":
    main()
