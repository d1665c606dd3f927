"""Atomic outputs: every file the explorer writes goes to a temporary name in the target's own directory and is
renamed over the target only when complete, so that a crash, Ctrl-C, SIGTERM, a full disk or the GUI's Stop
leaves the previous file untouched and no partial file behind. Qt-free; use it for any new output.

    check_output("run.json", (".json",), flag="--out")     # before any work: folder exists and is writable
    with atomic_path("run.json") as tmp:                    # tmp: ".run.json.partial-1234-ab12cd.json"
        tmp.write_text(...)                                 # renamed to run.json on success, deleted on error
    write_text_atomic("run.json", text)                     # the same in one call (also write_bytes_atomic)
    with atomic_dir("frames/", "frame_*.png") as tmp: ...  # files made in tmp, moved into frames/ when complete

The temporary name keeps the target's suffix (encoders such as PyAV pick the container by it) and starts with a
dot and contains ``.partial-`` so that it is easy to recognise and never mistaken for a finished output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import ExplorerError

PARTIAL_MARK = ".partial-"


def os_reason(exc: OSError) -> str:
    """An OSError in a few words: 'No space left on device', 'Permission denied'."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    return exc.strerror or str(exc) or type(exc).__name__


def partial_name(target: Path) -> Path:
    """A fresh temporary path next to ``target``, with the same suffix."""
    return target.with_name(f".{target.name}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(3)}{target.suffix}")


def check_output(
    path: str | Path, suffixes: Iterable[str] | None = None, flag: str = "--out", directory: bool = False
) -> Path:
    """The output path, checked before any work starts: a known suffix (``suffixes``, lower case with the dot),
    not a directory (unless ``directory``), and a folder that exists (it is created when its parent exists) where a
    file can really be created (a probe file is made and removed). Raises one-line :class:`ExplorerError`."""
    p = Path(path).expanduser()
    if suffixes is not None:
        allowed = tuple(suffixes)
        if p.suffix.lower() not in allowed:
            got = f"{p.suffix!r}" if p.suffix else "no extension"
            raise ExplorerError(f"{flag} {path} must end in {' or '.join(allowed)} (got {got})")
    if not directory and p.is_dir():
        raise ExplorerError(f"{flag} {path} is a directory; give a file name")
    if directory and p.exists() and not p.is_dir():
        raise ExplorerError(f"{flag} {path} exists and is not a directory")
    folder = p if directory else p.parent
    folder = folder if str(folder) else Path(".")
    if directory and not folder.exists() and folder.parent.is_dir():
        folder = folder.parent  # the directory is made when the output is complete: its parent must be writable
    if not folder.is_dir():
        if folder.exists():
            raise ExplorerError(f"cannot write {flag} {path}: {folder} is not a directory")
        if not folder.parent.is_dir():
            raise ExplorerError(f"cannot write {flag} {path}: folder {folder.parent} does not exist")
        try:
            folder.mkdir()
        except OSError as exc:
            raise ExplorerError(f"cannot write {flag} {path}: cannot create {folder}: {os_reason(exc)}") from None
    probe = partial_name(folder / ".explorer-write-test")
    try:
        with open(probe, "xb"):
            pass
    except OSError as exc:
        raise ExplorerError(f"cannot write {flag} {path}: {folder} is not writable ({os_reason(exc)})") from None
    with contextlib.suppress(OSError):
        probe.unlink()
    return p


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


class AtomicFile:
    """A temporary path (``tmp``) next to ``target``: :meth:`commit` renames it over ``target``, :meth:`discard`
    deletes it. For writers that open and finish at different times (video encoders); else use
    :func:`atomic_path`."""

    def __init__(self, target: str | Path):
        self.target = Path(target).expanduser()
        self.tmp = partial_name(self.target)

    def commit(self) -> Path:
        if not self.tmp.exists():
            raise ExplorerError(f"nothing was written to {self.target}")
        try:
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.discard()
            raise ExplorerError(f"cannot write {self.target}: {os_reason(exc)}") from None
        return self.target

    def discard(self) -> None:
        _remove(self.tmp)


class AtomicDir:
    """A temporary directory (``tmp``) next to ``target``. :meth:`commit`: a missing ``target`` becomes it (one
    rename); an existing ``target`` loses its files matching ``owned`` (``frame_*.png``: the previous recording)
    and gets the new ones, each moved by a rename, so that its other files are never touched. :meth:`discard`
    deletes it."""

    def __init__(self, target: str | Path, owned: str = "*"):
        self.target = Path(target).expanduser().resolve()
        self.owned = owned
        self.tmp = partial_name(self.target)
        try:
            self.tmp.mkdir()
        except OSError as exc:
            raise ExplorerError(f"cannot write {self.target}: {os_reason(exc)}") from None

    def commit(self) -> Path:
        try:
            if not self.target.exists():
                os.replace(self.tmp, self.target)
                return self.target
            for old in self.target.glob(self.owned):
                if old.is_file():
                    old.unlink()
            for new in sorted(self.tmp.iterdir()):
                os.replace(new, self.target / new.name)
        except OSError as exc:
            self.discard()
            raise ExplorerError(f"cannot write {self.target}: {os_reason(exc)}") from None
        self.discard()
        return self.target

    def discard(self) -> None:
        _remove(self.tmp)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yields a temporary path in ``target``'s directory; on a clean exit it replaces ``target`` (one rename), on
    any exception (KeyboardInterrupt included) it is deleted and ``target`` is left as it was. An OSError inside
    (a full disk) becomes one :class:`ExplorerError` line."""
    f = AtomicFile(target)
    try:
        yield f.tmp
    except OSError as exc:
        f.discard()
        raise ExplorerError(f"cannot write {f.target}: {os_reason(exc)}") from None
    except BaseException:
        f.discard()
        raise
    f.commit()


def write_bytes_atomic(target: str | Path, data: bytes) -> Path:
    """``data`` into ``target``, all or nothing (flushed to disk before the rename)."""
    target = Path(target).expanduser()
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return target


def write_text_atomic(target: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes_atomic(target, text.encode(encoding))


@contextlib.contextmanager
def atomic_dir(target: str | Path, owned: str = "*") -> Iterator[Path]:
    """Yields a fresh temporary directory next to ``target`` that replaces ``target``'s ``owned`` files on a clean
    exit (see :class:`AtomicDir`) and is deleted on any exception."""
    d = AtomicDir(target, owned)
    try:
        yield d.tmp
    except OSError as exc:
        d.discard()
        raise ExplorerError(f"cannot write {d.target}: {os_reason(exc)}") from None
    except BaseException:
        d.discard()
        raise
    d.commit()
