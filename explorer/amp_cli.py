"""``explorer amp``: mixed-precision training steps on a model with every loss-scaler decision (see explorer.amp)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .errors import ExplorerError


def parse_spike(text: str | None) -> tuple[int, float] | None:
    if not text:
        return None
    try:
        step, factor = text.split(":")
        out = int(step), float(factor)
    except ValueError:
        raise ExplorerError(f"--spike must be STEP:FACTOR (e.g. 5:1e6), got {text!r}") from None
    if out[0] < 0 or not math.isfinite(out[1]):
        raise ExplorerError(f"--spike needs a step >= 0 and a finite factor, got {text!r}")
    return out


def cmd_amp(args: argparse.Namespace) -> int:
    import torch

    from .amp import AmpSettings, AmpTrainer, default_text, summarize, text_tokens, trainable_copy
    from .checkpoint import default_model_dirs, load_model

    settings = AmpSettings(
        steps=args.steps,
        policy=args.policy,
        dtype=args.dtype,
        init_scale=args.init_scale,
        growth_factor=args.growth_factor,
        backoff_factor=args.backoff,
        growth_interval=args.growth_interval,
        hysteresis=args.hysteresis,
        min_scale=args.min_scale,
        lr=args.lr,
        batch=args.batch,
        seq_len=args.seq_len,
        spike=parse_spike(args.spike),
        seed=args.seed,
        device=args.device or "cpu",
    )
    settings.check()
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise ExplorerError("CUDA was requested but torch sees no CUDA device")
    if args.text:
        path = Path(args.text).expanduser()
        if not path.is_file():
            raise ExplorerError(f"text file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExplorerError(f"cannot read text file {path}: {exc}") from None
    else:
        text = args.prompt if getattr(args, "prompt", None) else default_text()
    lm = load_model(args.model or default_model_dirs()["target"], dtype="float32", device=settings.device)
    tokens = text_tokens(lm.encode, text, settings.seq_len)
    torch.manual_seed(settings.seed)
    trainer = AmpTrainer(trainable_copy(lm, settings.device), tokens, settings)

    def show(r) -> None:
        if args.json:
            return
        from .amp import flushed_share

        mark = "SKIP" if r.skipped else "    "
        ev = r.event or ""
        fu, fs = flushed_share(r.param_unscaled), flushed_share(r.param_scaled)
        print(
            f"step {r.step:4d}  loss {r.loss:7.4f}{' x' + format(r.loss_factor, 'g') if r.loss_factor != 1 else ''}  "
            f"scale 2^{math.log2(r.scale):6.2f} -> 2^{math.log2(r.next_scale):6.2f}  {mark} {ev:7s} "
            f"tracker {r.growth_tracker:4d}  flushed(param) {fu:.2%} unscaled / {fs:.2%} scaled"
            + (f"  first overflow: {r.first_overflow}" if r.first_overflow else ""),
            flush=True,
        )

    records, stopped = trainer.run(on_step=show)
    trainer.close()
    summary = summarize(records, trainer, stopped)
    summary["model"] = str(lm.path)
    summary["text_tokens"] = len(tokens)
    if args.json:
        print(json.dumps({"steps": [r.to_json() for r in records], "summary": summary}))
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


def add_amp_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "amp", help="mixed-precision training steps on a model: gradients against the fp16 range, every scaler decision"
    )
    p.add_argument("--model", help="Hugging Face layout model directory (default: the shipped demo target)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument(
        "--policy",
        default="torch",
        choices=["torch", "deepspeed", "megatron", "static", "none"],
        help="loss scaler: torch (torch.amp.GradScaler itself), deepspeed, megatron, static, none",
    )
    p.add_argument(
        "--init-scale",
        type=float,
        default=None,
        help="initial loss scale (default: the policy's own: 2^16; megatron 2^32; none 1)",
    )
    p.add_argument(
        "--growth-interval",
        type=int,
        default=None,
        help="clean steps before the scale grows (default: torch 2000, deepspeed/megatron 1000)",
    )
    p.add_argument("--growth-factor", type=float, default=2.0)
    p.add_argument("--backoff", type=float, default=0.5, help="backoff factor on overflow (default 0.5)")
    p.add_argument("--hysteresis", type=int, default=2, help="deepspeed/megatron hysteresis (default 2)")
    p.add_argument("--min-scale", type=float, default=1.0, help="deepspeed/megatron minimum scale (default 1)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"], help="autocast dtype")
    p.add_argument("--spike", default=None, metavar="STEP:FACTOR", help="multiply the loss by FACTOR at step STEP")
    p.add_argument("--text", default=None, help="text file to train on (default: a few KB of explorer's sources)")
    p.add_argument("--prompt", default=None, help="text to train on instead of a file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_amp)
    return p
