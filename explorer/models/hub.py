"""``--model org/name[@revision]``: a Hugging Face repo id resolved to a local snapshot directory.

The local cache is tried first, so a model downloaded once works offline. Only when it is not there, and the user
has not switched downloads off (``HF_HUB_OFFLINE=1``), the config, tokenizer and safetensors files are downloaded
(with huggingface_hub's progress bars); pickle weights are never fetched. The cache location and the offline switch
are read from the environment at each call (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ExplorerError

# What a model needs and nothing else: no *.bin / *.pt / *.pth / *.ckpt (pickles), no ONNX or GGUF copies.
ALLOW_PATTERNS = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "*.safetensors",
    "model.safetensors.index.json",
]
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._/-]+)?")


def looks_like_repo_id(text: str) -> bool:
    """``org/name`` or ``org/name@revision`` that is not an existing local path."""
    return bool(REPO_ID.fullmatch(text)) and not Path(text).expanduser().exists()


def split_repo_id(text: str) -> tuple[str, str | None]:
    repo, _, revision = text.partition("@")
    return repo, revision or None


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_repo_id(text: str) -> Path:
    """The local snapshot directory of ``org/name[@revision]``, downloading it first when allowed and needed."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, revision = split_repo_id(text)
    cache = hub_cache_dir()
    kwargs = dict(repo_id=repo, revision=revision, cache_dir=str(cache), allow_patterns=ALLOW_PATTERNS)
    try:
        return Path(snapshot_download(**kwargs, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        pass
    at = f"@{revision}" if revision else ""
    if offline():
        raise ExplorerError(
            f"model {repo}{at} is not in the Hugging Face cache {cache} and downloads are off (HF_HUB_OFFLINE=1); "
            f"no local directory {text} either"
        )
    try:
        return Path(snapshot_download(**kwargs))
    except GatedRepoError:
        raise ExplorerError(f"model {repo} is gated: accept its licence on huggingface.co and log in") from None
    except RepositoryNotFoundError:
        raise ExplorerError(f"no local directory {text} and no model {repo} on the Hugging Face Hub (or it is "
                            "private)") from None  # fmt: skip
    except RevisionNotFoundError:
        raise ExplorerError(f"model {repo} has no revision {revision!r}") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExplorerError(f"cannot download {repo}{at} into {cache}: {reason}") from None
