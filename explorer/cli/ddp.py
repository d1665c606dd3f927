"""``explorer ddp``: data-parallel training on N real torch.distributed ranks, DDP's buckets against the backward,
one bucket's ring all-reduce step by step, and the α–β cost model (see explorer.distributed)."""

from __future__ import annotations

import argparse
import json

from ..distributed.options import DDP
from .common import add_model_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "ddp", help="data-parallel training on real ranks: DDP's buckets, a ring all-reduce chunk by chunk, the cost "
        "model",
    )  # fmt: skip
    add_model_options(p, skip=("draft", "dtype", "theme", "device", "chat", "system", "ignore_eos"),
                      prompt_help="text to train on (default: the loss-scaling view's text)")  # fmt: skip
    DDP.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def show_step(step, meta) -> None:
    """A few lines per step: the loss, the buckets against the backward, the ring's checks."""
    backward_end = float(step.backward[:, 1].max())
    print(f"step {step.step}: loss {step.loss:.4f} (ranks: {' '.join(f'{x:.3f}' for x in step.losses)}); "
          f"backward returned at {_ms(backward_end)} (slowest rank)")  # fmt: skip
    for b in step.buckets:
        print(f"  bucket {b.index}: {len(b.params)} params, {b.bytes / 2**20:.2f} MiB; all-reduce "
              f"{_ms(float(b.start.min()))} -> {_ms(float(b.finish.max()))}  first: {b.params[0]}")  # fmt: skip
    c = step.ring_check
    print(f"  ring on bucket {step.ring_bucket} ({step.ring_numel} values): vs dist.all_reduce max |d| "
          f"{c['max_abs_diff']:.3g} in {c['dtype']} (rounding bound {c['bound']:.3g}), "
          f"{'exact' if c['exact_float64'] else 'max |d| ' + format(c['max_abs_diff_float64'], '.3g')} in float64; "
          f"ring/N vs DDP's bucket max |d| {step.ring_vs_ddp:.3g}")  # fmt: skip
    if step.one_process:
        o = step.one_process
        print(f"  one process on the whole batch: max |g_DDP - g_one| {o['max_abs_diff']:.3g} "
              f"(max |g| {o['max_abs_grad']:.3g}), loss {o['loss']:.4f}")  # fmt: skip


def show_cost(meta) -> None:
    from ..distributed.cost import describe_crossings

    cost, ab = meta.cost, meta.fitted
    print(f"all-reduce on {cost['n']} ranks (median of 3, slowest rank):")
    for size, ring, gloo in zip(cost["sizes"], cost["ring"], cost["all_reduce"], strict=True):
        print(f"  {size / 1024:8.0f} KiB: ring {_ms(ring)}  dist.all_reduce {_ms(gloo)}  model "
              f"{_ms(ab.ring(cost['n'], size))}")  # fmt: skip
    print(f"alpha-beta fit of the ring: alpha {ab.alpha * 1e6:.0f} us per message, beta {ab.beta / 2**30:.2f} GiB/s "
          f"(median error {ab.rel_error:.0%})")  # fmt: skip
    for line in describe_crossings(ab):
        print("  " + line)


def run(args: argparse.Namespace) -> int:
    from ..amp.engine import default_text
    from ..distributed.ddp import settings_from_values
    from ..distributed.job import training_job
    from ..distributed.launch import torchrun_env
    from ..models.checkpoint import default_model_dirs, load_model

    values = DDP.from_args(args)
    if torchrun_env() is not None:  # this process is one of torchrun's ranks: --ranks is torchrun's world
        values["ranks"] = int(torchrun_env()["WORLD_SIZE"])
    settings = settings_from_values(values)
    text = args.prompt if getattr(args, "prompt", None) else default_text()
    lm = load_model(args.model or default_model_dirs()["target"], dtype="float32", device="cpu")
    if torchrun_env() is not None:
        return run_as_torchrun_rank(args, lm, settings, text)
    job = training_job(lm, settings, text)
    steps = []
    for frame in job.records():
        if frame.position == 0:
            steps.append(frame.step)
            if not args.json:
                show_step(frame.step, job.meta)
    if args.json:
        print(json.dumps({"meta": job.meta.to_json(), "steps": [s.to_json() for s in steps]}))
    elif job.meta.cost is not None:
        show_cost(job.meta)
    return 0


def run_as_torchrun_rank(args: argparse.Namespace, lm, settings, text: str) -> int:
    """Under torchrun: this process trains as one rank; rank 0 prints what every rank reported, as without it."""
    from ..distributed.cost import fit
    from ..distributed.job import WORKER, DdpRunMeta, launch_args, trained_names
    from ..distributed.launch import run_under_torchrun
    from ..distributed.records import gather_step

    gathered = run_under_torchrun(WORKER, launch_args(lm, settings, text), settings.backend, settings.timeout)
    if gathered is None:
        return 0
    cap, first = settings.caps()
    meta = DdpRunMeta(model=str(lm.path), settings=settings, param_names=trained_names(lm, settings.train_layers),
                      bucket_cap=cap, first_bucket_cap=first)  # fmt: skip
    steps = []
    for n in range(1, settings.steps + 1):
        parts = {r: next(m[2] for m in g["messages"] if m[0] == "step" and m[2]["step"] == n)
                 for r, g in enumerate(gathered)}  # fmt: skip
        step = gather_step(parts)
        if step.cost is not None:
            meta.cost, meta.fitted = step.cost, fit([step.cost], "ring")
            meta.fitted_all_reduce = fit([step.cost], "all_reduce")
        steps.append(step)
        if not args.json:
            show_step(step, meta)
    if args.json:
        print(json.dumps({"meta": meta.to_json(), "steps": [s.to_json() for s in steps]}))
    elif meta.cost is not None:
        show_cost(meta)
    return 0
