"""``explorer attention``: trace one head's FlashAttention (m, l, α per tile) and save the trace."""

from __future__ import annotations

import argparse
import json
import time

from ..attention.options import CLI as ATTENTION_CLI
from .common import add_model_options, check_device, with_prompt_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "attention", help="trace one head's FlashAttention (m, l, alpha per tile) on a prompt and save it to a file"
    )
    add_model_options(p, skip=("draft", "dtype", "theme"))
    ATTENTION_CLI.add_arguments(p)
    p.add_argument("--out", required=True, metavar="TRACE", help="trace file to write (safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..attention.job import attention_job
    from ..attention.trace import check_trace_path, save_trace
    from ..models.checkpoint import default_model_dirs, load_model
    from ..session import DEFAULT_PROMPT, Session

    o = ATTENTION_CLI.from_args(args)
    if getattr(args, "opt_dtype", None) is None and args.dtype is not None:  # `explorer --dtype D attention`
        o["dtype"] = args.dtype
    check_trace_path(args.out)  # before the work, not after
    prompt = DEFAULT_PROMPT if args.prompt is None else args.prompt
    model = args.model or default_model_dirs()["target"]
    device = check_device(args.device)
    lm = load_model(model, dtype=o["dtype"], device=device)
    session = with_prompt_options(Session(target_dir=model, draft_dir=None, prompt=prompt, device=device), args)
    session.dtype, session.target = o["dtype"], lm
    if session.ignore_eos:
        lm.eos_token_ids = ()
    t0 = time.perf_counter()
    job = attention_job(session, o)
    steps = list(job.records())  # the trace is computed before the first step
    trace = steps[0].walk.trace
    seconds = time.perf_counter() - t0
    out = save_trace(trace, args.out)
    if args.json:
        print(json.dumps(dict(trace.summary(), seconds=seconds, out=str(out))))
        return 0
    s = trace.meta
    diff = "n/a (not causal)" if s.model_max_abs_diff is None else f"{s.model_max_abs_diff:.3g}"
    ratio = "n/a" if s.error_ratio is None else f"{s.error_ratio:.2f}x"
    print(
        f"{s.model_name} layer {s.layer} head {s.head} (kv head {s.kv_head}): {s.n} tokens, "
        f"head_dim {s.head_dim}, {s.block_m}x{s.block_n} tiles, {s.dtype}, backend {s.backend}, "
        f"{'causal' if s.causal else 'not causal'}"
    )
    print(
        f"tiles: {s.tiles_visited} visited ({s.tiles_masked} with masked entries), "
        f"{s.tiles_skipped} skipped, of {s.tiles_total}"
    )
    print(
        f"max |O - O_ref(float64)|: kernel {s.max_abs_error:.3g}, torch SDPA {s.dtype} "
        f"{s.sdpa_max_abs_error:.3g} (ratio {ratio}; fine when <= 2x); vs the model's own attention {diff}"
    )
    print(f"trace written to {out} ({seconds:.2f} s)")
    return 0
