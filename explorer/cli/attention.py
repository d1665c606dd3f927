"""``explorer attention``: trace one head's FlashAttention (m, l, α per tile) and save the trace."""

from __future__ import annotations

import argparse
import json
import time

from ..attention.options import CLI as ATTENTION_CLI
from .common import add_model_options, check_device, prepare_prompt


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
    from ..attention.trace import check_trace_path, save_trace, trace_attention
    from ..attention.walk import continue_prompt
    from ..models.checkpoint import default_model_dirs, load_model
    from ..session import DEFAULT_PROMPT

    o = ATTENTION_CLI.from_args(args)
    if getattr(args, "opt_dtype", None) is None and args.dtype is not None:  # `explorer --dtype D attention`
        o["dtype"] = args.dtype
    check_trace_path(args.out)  # before the work, not after
    prompt = DEFAULT_PROMPT if args.prompt is None else args.prompt
    lm = load_model(args.model or default_model_dirs()["target"], dtype=o["dtype"], device=check_device(args.device))
    t0 = time.perf_counter()
    ids = prepare_prompt(lm, prompt, args)
    ids = continue_prompt(lm, ids, o["length"]) if o["length"] else ids
    trace = trace_attention(
        lm, ids, o["layer"], o["head"], block_m=o["block_m"], block_n=o["block_n"], causal=o["causal"],
        dtype=o["dtype"], backend=o["backend"],
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    out = save_trace(trace, args.out)
    summary = dict(trace.summary(), seconds=seconds, out=str(out))
    if args.json:
        print(json.dumps(summary))
        return 0
    s = summary
    diff = "n/a (not causal)" if s["model_max_abs_diff"] is None else f"{s['model_max_abs_diff']:.3g}"
    ratio = "n/a" if s["error_ratio"] is None else f"{s['error_ratio']:.2f}x"
    print(
        f"{s['model_name']} layer {s['layer']} head {s['head']} (kv head {s['kv_head']}): {s['n']} tokens, "
        f"head_dim {s['head_dim']}, {s['block_m']}x{s['block_n']} tiles, {s['dtype']}, backend {s['backend']}, "
        f"{'causal' if s['causal'] else 'not causal'}"
    )
    print(
        f"tiles: {s['tiles_visited']} visited ({s['tiles_masked']} with masked entries), "
        f"{s['tiles_skipped']} skipped, of {s['tiles_total']}"
    )
    print(
        f"max |O - O_ref(float64)|: kernel {s['max_abs_error']:.3g}, torch SDPA {s['dtype']} "
        f"{s['sdpa_max_abs_error']:.3g} (ratio {ratio}; fine when <= 2x); vs the model's own attention {diff}"
    )
    print(f"trace written to {out} ({seconds:.2f} s)")
    return 0
