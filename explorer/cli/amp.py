"""``explorer amp``: mixed-precision training steps with every loss-scaler decision (see explorer.amp.engine)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..amp.options import AMP
from ..errors import ExplorerError
from .common import add_model_options, check_device


def add_parser(sub) -> None:
    p = sub.add_parser(
        "amp", help="mixed-precision training steps on a model: gradients against the fp16 range, every scaler decision"
    )
    add_model_options(p, skip=("draft", "dtype", "theme", "device"), prompt_help="text to train on (default: a few KB "
                      "of the explorer's own sources, assets/text/amp_default.txt, as the loss-scaling view)")
    AMP.add_arguments(p)
    p.add_argument("--spike", default=None, metavar="STEP:FACTOR",
                   help="multiply the loss by FACTOR at step STEP (= --spike-step STEP --spike-factor FACTOR)")
    p.add_argument("--text", default=None, metavar="FILE",
                   help="text file to train on (default: a few KB of explorer's sources; --prompt: this text)")
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def parse_spike(text: str) -> tuple[int, float]:
    try:
        step, factor = text.split(":")
        return int(step), float(factor)
    except ValueError:
        raise ExplorerError(f"--spike must be STEP:FACTOR (e.g. 5:1e6), got {text!r}") from None


def spike_of(args: argparse.Namespace, o: dict) -> tuple[int, float] | None:
    if args.spike is not None:
        if getattr(args, "opt_spike_step", None) is not None:
            raise ExplorerError("give --spike STEP:FACTOR or --spike-step / --spike-factor, not both")
        step, factor = parse_spike(args.spike)
        for name, value in (("spike_step", step), ("spike_factor", factor)):
            problem = AMP[name].problem(value)
            if problem:
                raise ExplorerError(f"--spike: {AMP[name].cli_flag} {problem}")
        return step, factor
    return (o["spike_step"], o["spike_factor"]) if o["spike_step"] >= 1 else None


def read_text(args: argparse.Namespace) -> str:
    from ..amp.engine import default_text

    if args.text:
        path = Path(args.text).expanduser()
        if not path.is_file():
            raise ExplorerError(f"text file not found: {path}")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExplorerError(f"cannot read text file {path}: {exc}") from None
    return args.prompt if getattr(args, "prompt", None) else default_text()


def run(args: argparse.Namespace) -> int:
    from ..amp.engine import settings_from_values, summarize
    from ..amp.job import start_training
    from ..models.checkpoint import default_model_dirs, load_model

    o = AMP.from_args(args)
    if o["init_scale"] is not None and o["init_scale_log2"] is not None:
        raise ExplorerError("give --init-scale or --init-scale-log2, not both")
    spike = spike_of(args, o)
    if spike is not None:  # --spike STEP:FACTOR, as the schema's two values
        o["spike_step"], o["spike_factor"] = spike
    settings = settings_from_values(o, device=check_device(args.device) or "cpu")
    text = read_text(args)
    lm = load_model(args.model or default_model_dirs()["target"], dtype="float32", device=settings.device)
    ctx = lm.config.max_position_embeddings
    if settings.seq_len > ctx:
        raise ExplorerError(f"--seq-len must be at most {lm.name}'s context of {ctx} tokens (got {settings.seq_len})")
    trainer = start_training(lm, settings, text)

    def show(r) -> None:
        if args.json:
            return
        from ..amp.bands import flushed_share

        mark = "SKIP" if r.skipped else "    "
        spike = " x" + format(r.loss_factor, "g") if r.loss_factor != 1 else ""
        ev = r.event or ""
        fu, fs = flushed_share(r.param_unscaled), flushed_share(r.param_scaled)
        print(
            f"step {r.step + 1:4d}  loss {r.loss:7.4f}{spike}  "
            f"scale 2^{math.log2(r.scale):6.2f} -> 2^{math.log2(r.next_scale):6.2f}  {mark} {ev:7s} "
            f"tracker {r.growth_tracker:4d}  flushed(param) {fu:.2%} unscaled / {fs:.2%} scaled"
            + (f"  first overflow: {r.first_overflow}" if r.first_overflow else ""),
            flush=True,
        )

    records, stopped = trainer.run(on_step=show)
    trainer.close()
    summary = summarize(records, trainer, stopped)
    summary["model"] = str(lm.path)
    summary["text_tokens"] = len(trainer.tokens)
    if args.json:
        # steps count from 1, as on screen and in the view's exports (record.step is the 0-based index)
        steps = [{**r.to_json(), "step": r.step + 1} for r in records]
        print(json.dumps({"steps": steps, "summary": summary}))
    else:
        s = summary
        print(
            f"{s['steps']} steps, {s['policy']} policy, {s['dtype']}: {s['overflow_steps']} overflows, "
            f"{s['skipped_steps']} skipped, {s['backoff_events']} backoffs, {s['growth_events']} growths; "
            f"scale 2^{math.log2(s['init_scale']):g} -> 2^{math.log2(s['final_scale']):g}; "
            f"loss {s['first_loss']:.4f} -> {s['final_loss']:.4f}; {s['steps_per_s']:.2f} steps/s"
        )
        print(
            f"flushed to zero in fp16 (parameter grads): {s['param_flushed_share_unscaled']:.2%} without scaling, "
            f"{s['param_flushed_share_scaled']:.2%} with it; activation grads: "
            f"{s['act_flushed_share_unscaled']:.2%} / {s['act_flushed_share_scaled']:.2%}"
        )
    if stopped:
        sys.stdout.flush()
        raise ExplorerError(stopped)
    return 0
