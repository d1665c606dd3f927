"""The CLI: info, generate and the no-argument start, as a user's script would call them."""

import json
import subprocess
import sys
from pathlib import Path

from explorer.models.checkpoint import default_model_dirs


def run(*args):
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=300)


def test_info_json():
    r = run("info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["versions"]["torch"]
    assert "triton" in info["versions"]  # a version string, or null where triton is missing
    assert info["device"] in ("cpu", "cuda")
    assert "sdpa" in info["attention_backends"]
    heads = info["default_models"].pop("heads")
    assert info["default_models"] == {k: str(v) for k, v in default_model_dirs().items()}
    assert set(heads) == {"medusa", "eagle", "mtp"} and all(Path(p).is_dir() for p in heads.values())


def test_generate_json_is_greedy_and_repeatable():
    args = ("generate", "--prompt", "def add(a, b):\n", "--max-new-tokens", "12", "--json")
    first, second = run(*args), run(*args)
    assert first.returncode == 0, first.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["token_ids"] == b["token_ids"]
    assert 1 <= len(a["token_ids"]) <= 12
    assert a["prompt_ids"] and a["text"] and a["tokens_per_s"] > 0


def test_screenshot_writes_exact_size(tmp_path):
    out = tmp_path / "gen.png"
    r = run("screenshot", "--view", "generate", "--out", str(out), "--size", "960x600", "--prompt", "import os\n")
    assert r.returncode == 0, r.stderr
    from PySide6.QtGui import QImage

    image = QImage(str(out))
    assert (image.width(), image.height()) == (960, 600)


def test_screenshot_unknown_view_is_one_line_error(tmp_path):
    r = run("screenshot", "--view", "nope", "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "unknown view 'nope'" in r.stderr


def test_screenshot_applies_view_settings(tmp_path):
    out = tmp_path / "tree.png"
    r = run(
        "screenshot", "--view", "speculative", "--out", str(out), "--size", "960x600",
        "--set", "method=tree", "--set", "tree_budget=6", "--set", "max_new=8",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 5000
    bad = run("screenshot", "--view", "speculative", "--out", str(out), "--set", "gama=3")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "no setting 'gama'" in bad.stderr
    big = run("screenshot", "--view", "speculative", "--out", str(out), "--set", "gamma=99")
    assert big.returncode == 2 and "gamma must be an integer in 1..16 (got 99)" in big.stderr


def test_generate_with_each_attention_backend_gives_the_same_tokens():
    """The FlashAttention kernel (Triton interpreter on CPU) and its torch twin as the model's attention."""
    from explorer.attention.backends import available_backends

    args = ("generate", "--prompt", "import os\n", "--max-new-tokens", "6", "--json")
    tokens = {}
    for backend in available_backends():
        r = run(*args, "--attention", backend)
        assert r.returncode == 0, r.stderr
        tokens[backend] = json.loads(r.stdout)["token_ids"]
    assert len(set(map(tuple, tokens.values()))) == 1, tokens
