"""The ``explorer`` command. Every computation a view shows is reachable here too, with ``--json`` output."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from . import __version__
from .amp_cli import add_amp_parser
from .errors import ExplorerError


def versions() -> dict:
    import platform

    import torch

    out = {"explorer": __version__, "python": platform.python_version(), "torch": torch.__version__}
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:  # Windows / macOS: the Triton kernel's torch fallback is used instead
        out["triton"] = None
    try:
        from .ui.versions import qt_versions

        out.update(qt_versions())
    except ImportError:
        out["pyside6"] = out["qt"] = None
    return out


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .attention import available_backends
    from .checkpoint import default_device, default_dtype, default_model_dirs

    device = default_device()
    info = {
        "versions": versions(),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "CPU",
        "default_dtype": str(default_dtype(device)).removeprefix("torch."),
        "attention_backends": available_backends(),
        "default_models": {role: str(path) for role, path in default_model_dirs().items()},
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    v = info["versions"]
    print(
        f"explorer {v['explorer']}  python {v['python']}  torch {v['torch']}  "
        f"triton {v['triton'] or 'not installed (the Triton kernel will run through its torch fallback)'}  "
        f"Qt {v['qt'] or 'not installed'}"
    )
    print(f"device: {info['device']} ({info['device_name']}), default dtype {info['default_dtype']}")
    print(f"attention backends: {', '.join(info['attention_backends'])}")
    for role, path in info["default_models"].items():
        print(f"default {role}: {path}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .attention import use_backend
    from .checkpoint import default_model_dirs, load_model
    from .generate import generate

    lm = load_model(args.model or default_model_dirs()["target"], dtype=args.dtype, device=args.device)
    use_backend(lm.model, args.attention)
    prompt_ids = lm.encode(args.prompt)
    t0 = time.perf_counter()
    new = generate(lm, prompt_ids, args.max_new_tokens, args.temperature, args.top_k, args.seed)
    seconds = time.perf_counter() - t0
    text = lm.decode(new)
    result = {
        "model": str(lm.path),
        "device": str(lm.device),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "attention": args.attention,
        "prompt": args.prompt,
        "prompt_ids": prompt_ids,
        "token_ids": new,
        "text": text,
        "tokens_per_s": len(new) / seconds if seconds > 0 else None,
        "seconds": seconds,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(args.prompt + text)
        print(
            f"[{len(new)} tokens, {result['tokens_per_s']:.1f} tokens/s, {lm.name}, "
            f"{result['device']} {result['dtype']}]",
            file=sys.stderr,
        )
    return 0


def cmd_screenshot(args: argparse.Namespace) -> int:
    from .ui.app import make_session, screenshot
    from .video import parse_size

    size = parse_size(args.size, even=False)
    session = make_session(args.model, args.draft, args.prompt, args.device, args.dtype)
    out = screenshot(
        session, args.view, args.out, size, step=args.step, theme=args.theme, settings=parse_settings(args.set)
    )
    print(out)
    return 0


def parse_settings(items: list[str]) -> dict:
    """``--set KEY=VALUE`` pairs; VALUE is read as a TOML value (4, 0.5, true, "tree"), else as a plain string."""
    from .tour import tomllib

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ExplorerError(f"--set takes KEY=VALUE (a view setting), got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


def cmd_record(args: argparse.Namespace) -> int:
    from .tour import load_tour, single_view_tour
    from .video import check_fps, output_format, parse_size

    if args.tour and args.view:
        raise ExplorerError("give a TOUR file or --view NAME, not both")
    if not args.tour and not args.view:
        raise ExplorerError("give a TOUR file (see assets/tours/) or --view NAME [--steps N]")
    if args.tour and (args.steps is not None or args.set or args.caption is not None):
        raise ExplorerError("--steps, --set and --caption go with --view; a tour names its own")
    output_format(args.out)  # a bad output name fails before any work
    size = parse_size(args.size) if args.size else None
    fps = check_fps(args.fps) if args.fps is not None else None
    if args.seconds_per_step is not None and not 0 < args.seconds_per_step <= 600:
        raise ExplorerError(f"--seconds-per-step must be above 0 and at most 600, got {args.seconds_per_step:g}")
    if args.tour:
        tour = load_tour(args.tour)
    else:
        tour = single_view_tour(args.view, args.steps, args.seconds_per_step or 1.0)
        tour.scenes[0].settings.update(parse_settings(args.set))
        if args.caption is not None:
            tour.scenes[0].caption = args.caption
    try:
        from .ui.recorder import ModelOverrides, record
    except ImportError as exc:
        raise ExplorerError(f"recording needs PySide6, pyqtgraph, PyAV and Pillow ({exc})") from None

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    models = ModelOverrides(args.model, args.draft, args.prompt, args.device, args.dtype)
    stats = record(tour, args.out, size, fps, args.theme, args.seed, models, log=log)
    for note in stats.notes:
        log(f"note: {note}")
    log(stats.summary())
    print(stats.out)
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    import os

    headless = not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    if sys.platform.startswith("linux") and headless:
        raise ExplorerError(
            "no display found (DISPLAY is not set); run the app on a desktop, or render views headless with "
            "`explorer screenshot --view generate --out view.png`"
        )
    try:
        from .ui.app import make_session, run_gui
    except ImportError as exc:
        raise ExplorerError(f"the GUI needs PySide6 and pyqtgraph ({exc})") from None
    return run_gui(make_session(args.model, args.draft, args.prompt, args.device, args.dtype), theme=args.theme)


def cmd_attention(args: argparse.Namespace) -> int:
    from .attention_trace import check_trace_path, save_trace, trace_attention
    from .checkpoint import default_model_dirs, load_model

    check_trace_path(args.out)  # before the work, not after
    lm = load_model(args.model or default_model_dirs()["target"], dtype=args.dtype, device=args.device)
    t0 = time.perf_counter()
    trace = trace_attention(
        lm, args.prompt, args.layer, args.head, block_m=args.block_m, block_n=args.block_n, causal=args.causal,
        dtype=args.dtype, backend=args.backend,
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


def read_prompts(path: str) -> list[str]:
    """One prompt per non-empty line; a line that is a JSON string (or {"prompt": ...}) may hold newlines."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ExplorerError(f"cannot read prompts file {path}: {exc.strerror}") from None
    prompts = []
    for line in lines:
        if not line.strip():
            continue
        if line.lstrip()[:1] in ('"', "{"):
            try:
                value = json.loads(line)
                line = value["prompt"] if isinstance(value, dict) else value
            except (json.JSONDecodeError, KeyError, TypeError):
                pass
        prompts.append(str(line))
    if not prompts:
        raise ExplorerError(f"no prompts in {path}")
    return prompts


def cmd_speculate(args: argparse.Namespace) -> int:
    from .checkpoint import default_model_dirs, load_model
    from .speculative import SpecOptions, run_speculation

    if args.prompt is None and args.prompts is None:
        raise ExplorerError("give --prompt TEXT or --prompts FILE")
    prompts = [args.prompt] if args.prompt is not None else read_prompts(args.prompts)
    tree = any(v is not None for v in (args.tree_depth, args.tree_topk, args.tree_budget))
    if args.lookup and (tree or args.draft):
        raise ExplorerError("--lookup drafts without a draft model; it cannot be combined with --draft or tree options")
    accept = args.accept or ("greedy" if args.temperature <= 0 else "sample")
    options = SpecOptions(
        method="lookup" if args.lookup else "tree" if tree else "chain", accept=accept, gamma=args.gamma,
        temperature=args.temperature, top_k=args.top_k, seed=args.seed, tree_depth=args.tree_depth or 5,
        tree_topk=args.tree_topk or 4, tree_budget=args.tree_budget or 24, detail=args.json,
    )  # fmt: skip
    dirs = default_model_dirs()
    target = load_model(args.target or dirs["target"], dtype=args.dtype, device=args.device)
    draft = None if args.lookup else load_model(args.draft or dirs["draft"], dtype=args.dtype, device=args.device)
    for prompt in prompts:
        result = run_speculation(target, draft, target.encode(prompt), args.max_new_tokens, options)
        if args.json:
            print(json.dumps(dict(prompt=prompt, **result.as_dict())))
            continue
        s = result.stats
        div = "none" if s["first_divergence"] is None else s["first_divergence"]
        print(prompt + result.text)
        print(
            f"[{s['new_tokens']} tokens in {s['steps']} steps, {s['method']}/{s['accept']}: alpha {s['alpha']:.2f}, "
            f"mean accepted {s['mean_accepted_without_bonus']:.2f} (+bonus {s['mean_accepted_with_bonus']:.2f}), "
            f"{s['tokens_per_s']:.1f} tokens/s vs target-only {s['target_only_tokens_per_s']:.1f} "
            f"= {s['speedup']:.2f}x (theory {s['theoretical_speedup']:.2f}x, c {s['c']:.2f}); "
            f"first divergence from plain greedy: {div if args.temperature <= 0 else 'n/a (sampling)'}]",
            file=sys.stderr,
        )
    return 0


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="target model directory (default: the shipped demo target)")
    p.add_argument("--draft", help="draft model directory (default: the demo draft with the demo target)")
    p.add_argument("--prompt", default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--theme", default="light", choices=["light", "dark"])


def cmd_train_demo(args: argparse.Namespace) -> int:
    from . import train_demo

    command = "explorer train-demo " + shlex.join(sys.argv[2:])
    train_demo.run(Path(args.out), args.target_steps, args.draft_steps, args.batch, args.seq_len, args.seed, command)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explorer", description=__doc__)
    add_model_options(parser)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("info", help="versions, device, attention backends and default models")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("generate", help="decode from a model (greedy unless --temperature > 0)")
    p.add_argument("--model", help="Hugging Face layout model directory (default: the shipped demo target)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument(
        "--attention",
        default="sdpa",
        choices=["sdpa", "triton", "torch-tiled"],
        help="attention backend: torch SDPA (default), the FlashAttention Triton kernel (interpreted on CPU: slow), "
        "or its torch twin",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "attention", help="trace one head's FlashAttention (m, l, alpha per tile) on a prompt and save it to a file"
    )
    p.add_argument("--model", help="Hugging Face layout model directory (default: the shipped demo target)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, required=True, help="query head (its kv head follows from GQA)")
    p.add_argument("--block-m", type=int, default=64, help="query rows per tile (power of two, 16..256)")
    p.add_argument("--block-n", type=int, default=64, help="keys per tile (power of two, 16..256)")
    p.add_argument(
        "--causal", action=argparse.BooleanOptionalAction, default=True, help="causal as the model runs (default)"
    )
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
        help="dtype of the model and the kernel's inputs (accumulation is float32); default float32",
    )  # fmt: skip
    p.add_argument("--backend", default="auto", choices=["auto", "triton", "torch"], help="kernel (default auto)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", required=True, help="trace file to write (safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_attention)

    p = sub.add_parser(
        "speculate", help="speculative decoding (draft chain, token tree or prompt lookup) with every decision"
    )
    p.add_argument("--target", help="target model directory (default: the shipped demo target)")
    p.add_argument("--draft", help="draft model directory (default: the shipped demo draft)")
    p.add_argument("--lookup", action="store_true", help="prompt lookup drafting (no draft model)")
    p.add_argument("--prompt", default=None)
    p.add_argument("--prompts", help="file with one prompt per line (JSON strings may hold newlines)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--gamma", type=int, default=3, help="draft chain / lookup length (default 3)")
    p.add_argument("--tree-depth", type=int, default=None, help="tree drafting: depth (default 5)")
    p.add_argument("--tree-topk", type=int, default=None, help="tree drafting: children per expanded node (4)")
    p.add_argument("--tree-budget", type=int, default=None, help="tree drafting: nodes kept (default 24)")
    p.add_argument(
        "--accept", default=None, choices=["greedy", "sample", "typical"],
        help="greedy (default at temperature 0), sample (default above 0), typical (Medusa, not lossless)",
    )  # fmt: skip
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--json", action="store_true", help="print one JSON object per prompt (JSON lines)")
    p.set_defaults(func=cmd_speculate)

    p = sub.add_parser("screenshot", help="run a view headless and save it as a PNG of exactly --size")
    p.add_argument("--view", required=True, help="generate, attention, speculative or amp")
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="1920x1080", help="WxH (default 1920x1080)")
    p.add_argument("--step", type=int, default=None, help="step to show (default: the last)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a view setting, as in a tour's settings (repeat: --set method=tree --set tree_depth=4)",
    )  # fmt: skip
    add_model_options(p)
    p.set_defaults(func=cmd_screenshot)

    p = sub.add_parser(
        "record",
        help="record a view's steps or a scripted tour to MP4, GIF or numbered PNGs, headless and deterministic",
        description="Record a scripted tour (TOML, see assets/tours/) or one view's steps. Frames are drawn offscreen "
        "at exactly --size; each step is held for --seconds-per-step, time never follows the wall clock, and the "
        "same tour with the same seed gives the same frames.",
    )
    p.add_argument("tour", nargs="?", help="tour file (TOML); or use --view")
    p.add_argument("--view", choices=["generate", "attention", "speculative", "amp"], help="record this view")
    p.add_argument("--steps", type=int, default=None, help="with --view: the first N steps (default: all)")
    p.add_argument("--out", required=True, help="FILE.mp4 (H.264), FILE.gif (loops) or a directory (PNG frames)")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: the tour's, else 30)")
    p.add_argument(
        "--size", default=None, help="WxH, even sides, or 720p / 1080p / 2160p (default: the tour's, else 1280x720)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of every job (default: the tour's, else 0)")
    p.add_argument("--theme", default=None, choices=["light", "dark"], help="default: the tour's, else light")
    p.add_argument("--seconds-per-step", type=float, default=None, help="with --view: how long each step shows (1)")
    p.add_argument("--caption", default=None, help="with --view: caption text ({step}, {steps} and live fields)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="with --view: a view setting, as in a tour's settings (repeat: --set method=tree --set gamma=3)",
    )  # fmt: skip
    p.add_argument("--model", help="target model directory (replaces the tour's; default: the shipped demo target)")
    p.add_argument("--draft", help="draft model directory (replaces the tour's)")
    p.add_argument("--prompt", default=None, help="prompt (replaces the tour's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--quiet", action="store_true", help="print only the output path")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser(
        "train-demo", help="train the shipped demo target/draft pair (about 40 min, under 90 CPU-minutes, on 2 cores)"
    )
    p.add_argument("--out", default="assets/models")
    p.add_argument("--target-steps", type=int, default=1000)
    p.add_argument("--draft-steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_demo)
    add_amp_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.func = cmd_gui
    try:
        return args.func(args)
    except ExplorerError as exc:
        print(f"explorer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except MemoryError:
        print("explorer: error: out of memory; try a smaller model, dtype or prompt", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
