"""Recording speed: frames per second drawn offscreen and encoded to MP4 (H.264) at 1920x1080, for each view.

Required (issue 7): 15 frames/s at 1080p on this CPU; goal 30 (real time).

    python benchmarks/bench_record.py [--size 1920x1080] [--fps 30]

Two measurements per view, after its job has run (the job's time is not counted):

* *every frame a new step* -- the worst case: each frame shows another step, so every frame is drawn (the view
  updates, layouts settle, the widget tree is painted into the frame buffer, the caption strip is drawn) and
  encoded from scratch. Two passes over the view's steps.
* *1 s per step* -- a recording as `explorer record` makes it by default: each step is drawn once and held for
  `fps` frames; held frames reuse the drawn picture and its colour conversion, only the encoder runs.

"draw" (the GUI thread's work) and "encode" (colour conversion and H.264, libx264 preset veryfast, on a second
thread that overlaps the drawing) are timed separately; frames/s is frames over the wall time of both.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

VIEWS = {
    "generate": {"max_new": 24},
    "attention": {"length": 256, "block_m": 32, "block_n": 32},  # 8 x 8 tiles, 36 visited
    "speculative": {"max_new": 48},
    "amp": {"steps": 6},
}


def run(view: str, settings: dict, size: tuple[int, int], fps: float, seconds_per_step: float, passes: int):
    from explorer.recording.tour import single_view_tour
    from explorer.recording.video import Mp4Writer, ThreadedWriter
    from explorer.ui.recorder import Recorder

    tour = single_view_tour(view, None, seconds_per_step)
    tour.scenes[0].settings = dict(settings)
    tour.scenes *= passes  # the same job again (computed once): a second pass over the steps
    for i, scene in enumerate(tour.scenes):
        tour.scenes[i] = type(scene)(**{**scene.__dict__, "index": i})
    rec = Recorder(tour, size, fps, theme="light", seed=0)
    rec.prepare()
    with tempfile.TemporaryDirectory() as tmp:
        writer = ThreadedWriter(Mp4Writer(Path(tmp) / "bench.mp4", size, fps))
        t0 = time.perf_counter()
        for frame in rec.frames():
            writer.write(frame)
        writer.close()
        wall = time.perf_counter() - t0
    rec.close()
    return writer.frames, len(rec.shots), rec.seconds_render, writer.encode_seconds, wall, rec.seconds_compute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--views", default=",".join(VIEWS))
    args = ap.parse_args()

    from explorer.recording.video import parse_size
    from explorer.ui.recorder import prepare_app

    size = parse_size(args.size)
    prepare_app("light")
    rows = []
    for view in args.views.split(","):
        settings = VIEWS[view]
        *a, job = run(view, settings, size, args.fps, 1.0 / args.fps, passes=2)
        rows.append((view, "every frame a new step", *a))
        *a, _ = run(view, settings, size, args.fps, 1.0, passes=1)
        rows.append((view, "1 s per step", *a))
        print(f"{view}: job {job:.1f} s", file=sys.stderr)
    w, h = size
    print(f"| view | frames | pictures drawn | draw ms / picture | encode ms / frame | frames/s at {w}x{h} |")
    print("|---|---|---:|---:|---:|---:|")
    for view, kind, frames, steps, draw, enc, wall in rows:
        print(
            f"| {view} | {kind}: {frames} | {steps} | {1000 * draw / steps:.1f} | {1000 * enc / frames:.1f} | "
            f"**{frames / wall:.1f}** |"
        )


if __name__ == "__main__":
    main()
