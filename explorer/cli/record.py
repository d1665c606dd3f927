"""``explorer record``: a scripted tour or one view's steps to MP4, GIF or PNG frames, headless and deterministic."""

from __future__ import annotations

import argparse
import sys

from ..errors import ExplorerError
from ..models.options import SEED
from .common import add_model_options
from .screenshot import VIEW_NAMES, add_set_option, parse_settings


def add_parser(sub) -> None:
    p = sub.add_parser(
        "record",
        help="record a view's steps or a scripted tour to MP4, GIF or numbered PNGs, headless and deterministic",
        description="Record a scripted tour (TOML, see assets/tours/) or one view's steps. Frames are drawn offscreen "
        "at exactly --size; each step is held for --seconds-per-step, time never follows the wall clock, and the "
        "same tour with the same seed gives the same frames.",
    )
    p.add_argument("tour", nargs="?", help="tour file (TOML); or use --view")
    p.add_argument("--view", choices=VIEW_NAMES, help="record this view")
    p.add_argument("--steps", type=int, default=None, help="with --view: the first N steps (default: all)")
    p.add_argument("--out", required=True, help="FILE.mp4 (H.264), FILE.gif (loops) or a directory (PNG frames)")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: the tour's, else 30)")
    p.add_argument(
        "--size", default=None, help="WxH, even sides, or 720p / 1080p / 2160p (default: the tour's, else 1280x720)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of every job (default: the tour's, else 0)")
    p.add_argument("--seconds-per-step", type=float, default=None, help="with --view: how long each step shows (1)")
    p.add_argument("--caption", default=None, help="with --view: caption text ({step}, {steps} and live fields)")
    add_set_option(p, "with --view: a view setting, as in a tour's settings (repeat: --set method=tree --set gamma=3)")
    add_model_options(p)
    p.add_argument("--quiet", action="store_true", help="print only the output path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..recording.tour import check_settings, load_tour, single_view_tour
    from ..recording.video import check_fps, check_record_output, parse_size

    if args.tour and args.view:
        raise ExplorerError("give a TOUR file or --view NAME, not both")
    if not args.tour and not args.view:
        raise ExplorerError("give a TOUR file (see assets/tours/) or --view NAME [--steps N]")
    if args.tour and (args.steps is not None or args.set or args.caption is not None):
        raise ExplorerError("--steps, --set and --caption go with --view; a tour names its own")
    check_record_output(args.out)  # a bad output name or an unwritable folder fails before any work
    if args.seed is not None and SEED.problem(args.seed):
        raise ExplorerError(f"--seed {SEED.problem(args.seed)}")
    size = parse_size(args.size) if args.size else None
    fps = check_fps(args.fps) if args.fps is not None else None
    if args.seconds_per_step is not None and not 0 < args.seconds_per_step <= 600:
        raise ExplorerError(f"--seconds-per-step must be above 0 and at most 600, got {args.seconds_per_step:g}")
    if args.tour:
        tour = load_tour(args.tour)
    else:
        tour = single_view_tour(args.view, args.steps, args.seconds_per_step or 1.0)
        tour.scenes[0].settings.update(check_settings(args.view, parse_settings(args.set)))
        if args.caption is not None:
            tour.scenes[0].caption = args.caption
    try:
        from ..ui.recorder import ModelOverrides, record
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
