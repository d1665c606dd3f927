"""``explorer info``: versions, device, attention backends and the default models."""

from __future__ import annotations

import argparse
import json

from .. import __version__


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="versions, device, attention backends and default models")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


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
        from ..ui.versions import qt_versions

        out.update(qt_versions())
    except ImportError:
        out["pyside6"] = out["qt"] = None
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from ..attention.backends import available_backends
    from ..models.checkpoint import default_device, default_dtype, default_head_dirs, default_model_dirs

    device = default_device()
    info = {
        "versions": versions(),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "CPU",
        "default_dtype": str(default_dtype(device)).removeprefix("torch."),
        "attention_backends": available_backends(),
        "default_models": {role: str(path) for role, path in default_model_dirs().items()},
    }
    info["default_models"]["heads"] = {kind: str(path) for kind, path in default_head_dirs().items()}
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
        if role == "heads":
            path = ", ".join(f"{kind} {p}" for kind, p in path.items())
        print(f"default {role}: {path}")
    return 0
