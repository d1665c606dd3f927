"""Frame writers for recordings: MP4 (H.264 through PyAV), GIF (Pillow, loops forever) and numbered PNGs.

Qt-free: a writer takes RGB frames as ``uint8`` arrays of shape (height, width, 3), one call per video frame. A
recording holds each step for many frames, so writers are told when a frame is the very same array object as the
previous one (``frame is last``) and then skip the work they already did: the MP4 writer encodes the colour-
converted frame again, the PNG writer writes the same bytes again, the GIF writer lengthens the previous frame.
"""

from __future__ import annotations

import io
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..atomic import AtomicDir, AtomicFile, check_output, os_reason
from ..errors import ExplorerError

SIZE_PRESETS = {"720p": (1280, 720), "1080p": (1920, 1080), "2160p": (3840, 2160)}
FORMATS = ("mp4", "gif", "png")
MAX_FPS = 120.0


def parse_size(text: str, even: bool = True) -> tuple[int, int]:
    """``1280x720`` (or a preset name: 720p, 1080p, 2160p / 4k) as (width, height); ``even`` sides for H.264
    (a still screenshot may have odd ones)."""
    t = str(text).strip().lower()
    t = {"4k": "2160p"}.get(t, t)
    if t in SIZE_PRESETS:
        return SIZE_PRESETS[t]
    m = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+)", t)
    if not m:
        raise ExplorerError(f"size must look like 1920x1080 (or 720p, 1080p, 2160p), got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (320 <= w <= 7680 and 240 <= h <= 4320):
        raise ExplorerError(f"size {w}x{h} is outside 320x240 .. 7680x4320")
    if even and (w % 2 or h % 2):
        raise ExplorerError(f"size {w}x{h}: width and height must be even (H.264 with yuv420p needs even sides)")
    return w, h


def check_fps(fps: float) -> float:
    if not (0 < float(fps) <= MAX_FPS):
        raise ExplorerError(f"fps must be above 0 and at most {MAX_FPS:g}, got {fps:g}")
    return float(fps)


def output_format(out: str | Path) -> str:
    """``mp4`` or ``gif`` by the file's suffix; a directory (existing, or a path without a suffix) gets PNGs."""
    p = Path(out)
    suffix = p.suffix.lower()
    if suffix in (".mp4", ".gif"):
        return suffix[1:]
    if p.is_dir() or suffix == "":
        return "png"
    raise ExplorerError(
        f"cannot record to {out}: give FILE.mp4, FILE.gif or a directory for numbered PNG frames (not {suffix})"
    )


def check_record_output(out: str | Path) -> str:
    """The format of ``out`` (see :func:`output_format`), after checking that it can be written: called before
    any work, so that ``--out /proc/x.mp4`` fails in a second, not after the computation."""
    fmt = output_format(out)
    check_output(out, None, "--out", directory=fmt == "png")
    return fmt


class FrameWriter:
    """Base: counts frames; ``write`` takes one video frame. Frames go to a temporary name next to ``path``
    (``self.tmp``) that :meth:`close` renames to ``path``; :meth:`abort` deletes it and leaves ``path`` as it
    was (see explorer.atomic)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float):
        self.final, self.size, self.fps = Path(path), size, fps
        self.output = AtomicFile(self.final)
        self.path = self.output.tmp
        self.frames = 0
        self._last: np.ndarray | None = None

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame of shape {frame.shape} {frame.dtype}, expected {self.size[1]}x{self.size[0]}x3")
        try:
            self._write(frame, frame is self._last)
        except OSError as exc:  # a full disk, a vanished folder
            raise ExplorerError(f"cannot write {self.final}: {os_reason(exc)}") from None
        self._last = frame
        self.frames += 1

    def _write(self, frame: np.ndarray, same: bool) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._last = None

    def commit(self) -> None:
        self.output.commit()

    def abort(self) -> None:
        """Stop without finishing (a cancelled recording): the temporary output is deleted, ``path`` untouched."""
        self._last = None
        self.output.discard()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Mp4Writer(FrameWriter):
    """H.264 (libx264) in an MP4 container, yuv420p, BT.709 colours, constant frame rate 1/fps."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, crf: int = 18, preset: str = "veryfast"):
        super().__init__(path, size, fps)
        import av

        rate = Fraction(fps).limit_denominator(1001)
        try:
            self.container = av.open(str(self.path), mode="w", options={"movflags": "+faststart"})
        except OSError as exc:
            raise ExplorerError(f"cannot write {self.final}: {os_reason(exc)}") from None
        stream = self.container.add_stream("libx264", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        cc = stream.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709, what players assume for HD video
        cc.color_range = 1  # limited ("MPEG") range
        self.stream = stream
        self._yuv = None
        self._colorspace = av.video.reformatter.Colorspace.ITU709

    def _write(self, frame: np.ndarray, same: bool) -> None:
        import av

        if not same or self._yuv is None:
            rgb = av.VideoFrame.from_ndarray(frame, format="rgb24")
            self._yuv = rgb.reformat(format="yuv420p", dst_colorspace=self._colorspace)
        self._yuv.pts = self.frames
        for packet in self.stream.encode(self._yuv):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is None:
            return
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
        except OSError as exc:
            self.abort()
            raise ExplorerError(f"cannot write {self.final}: {os_reason(exc)}") from None
        self.container = None
        self._yuv = None
        super().close()
        self.commit()

    def abort(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001
                pass
            self.container = None
        self._yuv = None
        super().abort()


class GifWriter(FrameWriter):
    """An animated GIF that loops forever. Each distinct frame gets its own adaptive 256-colour palette (no
    dithering: flat UI colours and text stay crisp); a held frame lengthens the previous frame's duration instead of
    repeating it (GIF delays are in hundredths of a second)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float):
        super().__init__(path, size, fps)
        self.images: list = []
        self.durations: list[float] = []  # ms
        check_output(self.final, None, "--out")

    def _write(self, frame: np.ndarray, same: bool) -> None:
        from PIL import Image

        ms = 1000.0 / self.fps
        if same and self.images:
            self.durations[-1] += ms
            return
        image = Image.fromarray(frame, "RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        self.images.append(image)
        self.durations.append(ms)

    def close(self) -> None:
        if not self.images:
            return
        # Whole hundredths of a second that add up to the recording's length (no drift over a long recording).
        ends = np.round(np.cumsum(self.durations) / 10.0).astype(int) * 10
        durations = np.diff(np.concatenate([[0], ends])).clip(min=10).tolist()
        first, rest = self.images[0], self.images[1:]
        buf = io.BytesIO()
        first.save(buf, "GIF", save_all=True, append_images=rest, duration=durations, loop=0, optimize=False)
        try:
            self.path.write_bytes(buf.getvalue())
        except OSError as exc:
            self.abort()
            raise ExplorerError(f"cannot write {self.final}: {os_reason(exc)}") from None
        self.images, self.durations = [], []
        super().close()
        self.commit()

    def abort(self) -> None:
        self.images, self.durations = [], []
        super().abort()


class PngDirWriter(FrameWriter):
    """Numbered PNG files ``frame_00000.png`` ... in a directory. They are written to a temporary directory next to
    it and moved in when the recording is complete (old ``frame_*.png`` files there are removed then, and only
    then; other files are left alone)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, compress_level: int = 3):
        self.final, self.size, self.fps = Path(path), size, fps
        self.frames = 0
        self._last = None
        check_output(self.final, None, "--out", directory=True)
        self.output = AtomicDir(self.final, "frame_*.png")
        self.path = self.output.tmp
        self.compress_level = compress_level
        self._png: bytes | None = None

    def _write(self, frame: np.ndarray, same: bool) -> None:
        if not same or self._png is None:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(frame, "RGB").save(buf, "PNG", compress_level=self.compress_level)
            self._png = buf.getvalue()
        try:
            (self.path / f"frame_{self.frames:05d}.png").write_bytes(self._png)
        except OSError as exc:
            raise ExplorerError(f"cannot write frames to {self.final}: {os_reason(exc)}") from None

    def close(self) -> None:
        self._png = None
        super().close()
        self.commit()

    def abort(self) -> None:
        self._png = None
        super().abort()


class ThreadedWriter:
    """Encodes on a worker thread while the caller draws the next frame (PyAV and Pillow release the GIL while
    they convert and compress). Frames must not be changed after ``write`` (recordings hand over a fresh buffer per
    picture). ``encode_seconds`` is the worker's time in the writer; an error there is raised by the next call."""

    def __init__(self, writer: FrameWriter, depth: int = 4):
        import queue
        import threading

        self.writer = writer
        self.frames = 0
        self.encode_seconds = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="frame-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time

        while True:
            frame = self._queue.get()
            if frame is None:
                return
            if self._error is not None or self._stop:
                continue
            t0 = time.perf_counter()
            try:
                self.writer.write(frame)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc
            self.encode_seconds += time.perf_counter() - t0

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, frame: np.ndarray) -> None:
        self._raise()
        self._queue.put(frame)
        self.frames += 1

    def drain(self) -> None:
        """Wait until every frame written so far is encoded into the temporary output (nothing is committed)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def close(self) -> None:
        """Drain, then finish the output and commit it (renamed over the target)."""
        import time

        self.drain()
        t0 = time.perf_counter()
        self.writer.close()
        self.encode_seconds += time.perf_counter() - t0

    def abort(self) -> None:
        self._stop = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._error = None
        self.writer.abort()


def open_writer(out: str | Path, size: tuple[int, int], fps: float) -> FrameWriter:
    """The writer for ``out``'s format (see :func:`output_format`)."""
    fmt = check_record_output(out)
    path = Path(out).expanduser()
    fps = check_fps(fps)
    if fmt == "mp4":
        return Mp4Writer(path, size, fps)
    if fmt == "gif":
        return GifWriter(path, size, fps)
    return PngDirWriter(path, size, fps)
