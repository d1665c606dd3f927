"""``--model org/name[@revision]`` from a Hugging Face cache built in tmp_path, with downloads switched off."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from explorer.errors import ExplorerError
from explorer.models.checkpoint import default_model_dirs, load_model
from explorer.models.hub import hub_cache_dir, looks_like_repo_id, resolve_repo_id

DEMO = default_model_dirs()["target"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def fake_cache(root, repo="acme/tiny-coder"):
    """The hub cache layout: models--ORG--NAME/refs/main holding a commit, snapshots/COMMIT/ the files."""
    base = root / f"models--{repo.replace('/', '--')}"
    for commit in (COMMIT, OTHER):
        snap = base / "snapshots" / commit
        snap.mkdir(parents=True)
        for f in DEMO.iterdir():
            if f.is_file() and f.name != "README.md":
                shutil.copy(f, snap / f.name)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(COMMIT)
    return root


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = fake_cache(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_repo_ids_are_told_from_paths(tmp_path, monkeypatch):
    assert looks_like_repo_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert looks_like_repo_id("org/name@v1.0")
    assert not looks_like_repo_id("./org/name") and not looks_like_repo_id("/abs/path") and not looks_like_repo_id("x")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not looks_like_repo_id("org/name")  # an existing directory wins


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    assert hub_cache_dir() == tmp_path / "c"


def test_repo_id_resolves_offline_from_the_cache(offline_cache):
    assert resolve_repo_id("acme/tiny-coder") == offline_cache / "models--acme--tiny-coder" / "snapshots" / COMMIT
    assert resolve_repo_id(f"acme/tiny-coder@{OTHER}").name == OTHER
    lm = load_model("acme/tiny-coder", device="cpu")
    ref = load_model(DEMO, device="cpu")
    assert lm.encode("def f(x):") == ref.encode("def f(x):")
    assert lm.config == ref.config


def test_not_cached_and_offline_is_one_line(offline_cache):
    with pytest.raises(ExplorerError) as err:
        load_model("acme/absent-model", device="cpu")
    message = str(err.value)
    assert "acme/absent-model" in message and str(offline_cache) in message and "HF_HUB_OFFLINE" in message
    run = subprocess.run([sys.executable, "-m", "explorer", "generate", "--model", "acme/absent-model"],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert run.stderr.startswith("explorer: error: model acme/absent-model is not in the Hugging Face cache")


def test_cli_generates_from_a_repo_id(offline_cache):
    argv = ["generate", "--model", "acme/tiny-coder", "--max-new-tokens", "4", "--json"]
    run = subprocess.run([sys.executable, "-m", "explorer", *argv], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert COMMIT in run.stdout
