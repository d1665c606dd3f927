"""ruff is part of the test suite so that CI keeps the code clean."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed")
    r = subprocess.run([ruff, "check", "explorer", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_core_never_imports_transformers():
    """transformers is the independent reference in tests and benchmarks, never a run-time dependency."""
    for path in (ROOT / "explorer").rglob("*.py"):
        text = path.read_text()
        assert "import transformers" not in text and "from transformers" not in text, path
