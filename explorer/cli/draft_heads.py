"""``--heads DIR`` of ``explorer speculate``: which kind a heads directory holds, and the heads a head method
drafts with (the given directory, else the ones found beside the target)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ExplorerError
from ..speculative.options import HEAD_METHODS


def heads_kind(path: str) -> str:
    """The kind named in a heads directory's config.json (a bare published Medusa file: medusa)."""
    from ..speculative.heads import CONFIG_FILE, MEDUSA_FILE

    d = Path(path).expanduser()
    if not d.is_dir():
        raise ExplorerError(f"heads directory not found: {d}")
    if not (d / CONFIG_FILE).is_file():
        if (d / MEDUSA_FILE).is_file():
            return "medusa"
        raise ExplorerError(f"no {CONFIG_FILE} in heads directory {d}")
    try:
        kind = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8")).get("kind")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        kind = None
    if kind not in HEAD_METHODS:
        raise ExplorerError(f"{d / CONFIG_FILE} must name a kind: one of {', '.join(HEAD_METHODS)}")
    return kind


def heads_dir_for(target, method: str, heads_dir: str | None):
    """The heads directory a head method drafts with: --heads DIR, else the one found beside the target."""
    from ..speculative.heads import find_heads

    if heads_dir is not None:
        return heads_dir
    found = find_heads(target.path).get(method)
    if found is None:
        raise ExplorerError(f"--method {method} needs --heads DIR (no {method} heads found beside {target.path})")
    return found


def load_heads_for(target, method: str, heads_dir: str | None):
    """The heads a head method drafts with: --heads DIR, else the ones found beside the target."""
    from ..speculative.heads import load_heads

    return load_heads(heads_dir_for(target, method, heads_dir), target)
