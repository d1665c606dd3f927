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
    assert big.returncode == 2 and "gamma must be an integer in 0..16 (got 99)" in big.stderr


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


TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"


def chat_model_ending_with(tmp_path, end_id: int) -> Path:
    """The demo target with a chat template, whose end-of-turn id is ``end_id`` (a token it emits early)."""
    import shutil

    d = tmp_path / "chat-demo"
    shutil.copytree(default_model_dirs()["target"], d)
    (d / "chat_template.jinja").write_text(TEMPLATE)
    (d / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": end_id}))
    return d


def test_chat_output_keeps_prompt_and_reply_apart_without_end_tokens(tmp_path):
    """`generate --chat` and `speculate --chat` print the turns apart, and never the end-of-turn token as text."""
    from explorer.models.checkpoint import load_model

    lm = load_model(default_model_dirs()["target"], dtype="float32", device="cpu")
    turn = ("--chat", "--system", "Be brief.", "--prompt", "def f():", "--max-new-tokens", "8")
    probe = str(chat_model_ending_with(tmp_path / "probe", 0))
    plain = json.loads(run("generate", "--model", probe, *turn, "--ignore-eos", "--json").stdout)
    end_id = plain["token_ids"][2]  # the third token it says becomes its end of turn
    end_text = lm.tokenizer.decode([end_id])
    args = ("--model", str(chat_model_ending_with(tmp_path, end_id)), *turn)
    out = json.loads(run("generate", *args, "--json").stdout)
    assert out["token_ids"] == plain["token_ids"][:3]  # stopped at the end token, which is in the ids ...
    assert out["text"] == lm.decode(out["token_ids"][:2])  # ... but not in the text
    for command in (("generate",), ("speculate", "--lookup", "--runs", "1")):
        r = run(*command, *args)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["system: Be brief.", "user: def f():", f"assistant: {out['text'].strip()}"]
        assert end_text not in r.stdout.split("assistant:")[1]
    spec = json.loads(run("speculate", "--lookup", "--runs", "1", *args, "--json").stdout)
    assert spec["text"] == out["text"] and spec["token_ids"] == out["token_ids"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def f():\n")
    line = run("speculate", "--lookup", "--runs", "1", *args[:5], "--max-new-tokens", "8", "--prompts",
               str(prompts), "--json").stdout  # fmt: skip
    assert json.loads(line.splitlines()[0])["text"] == out["text"]  # a prompt set's lines too


def test_chat_on_smollm2_prints_no_control_tokens():
    """The issue's case: SmolLM2's reply ended in <|im_end|> (a control token, not its text)."""
    import pytest

    from explorer.errors import ExplorerError
    from explorer.models.smollm import fetch_smollm

    try:
        model = str(fetch_smollm())
    except ExplorerError as exc:
        pytest.skip(f"SmolLM2-135M-Instruct GGUF not available: {exc}")
    r = run("generate", "--model", model, "--chat", "--prompt", "What is 2+2?", "--max-new-tokens", "24")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "user: What is 2+2?" and lines[1].startswith("assistant: ") and len(lines[1]) > 12
    assert "<|" not in r.stdout


def test_speculate_json_puts_the_summary_first_and_no_steps_leaves_them_out():
    args = ("speculate", "--prompt", "def add(a, b):\n", "--max-new-tokens", "8", "--runs", "1", "--json")
    full, short = run(*args), run(*args, "--no-steps")
    assert full.returncode == 0 and short.returncode == 0, full.stderr + short.stderr
    a, b = json.loads(full.stdout), json.loads(short.stdout)
    assert list(a) == ["prompt", "stats", "text", "prompt_ids", "token_ids", "steps"]
    assert list(b) == ["prompt", "stats", "text", "prompt_ids", "token_ids"]
    assert full.stdout.index('"stats"') < 200 and a["steps"] and a["token_ids"] == b["token_ids"]
    assert a["stats"]["new_tokens"] == len(a["token_ids"])
    assert [s["step"] for s in a["steps"]] == list(range(1, len(a["steps"]) + 1))  # counted from 1, as on screen


def test_amp_counts_steps_from_1_in_its_lines_its_json_and_its_spike():
    """One numbering everywhere (issue 23): `--spike-step 2` is the line `step 2`, the JSON's step 2 and the
    summary's first overflow step, as the view's header and player count them."""
    flags = ("amp", "--steps", "3", "--spike-step", "2", "--spike-factor", "1e30", "--no-reference", "--seq-len", "8")
    text, js = run(*flags), run(*flags, "--json")
    assert text.returncode == 0 and js.returncode == 0, text.stderr + js.stderr
    lines = [line.split() for line in text.stdout.splitlines() if line.startswith("step ")]
    assert [line[1] for line in lines] == ["1", "2", "3"] and "x1e+30" in lines[1]
    data = json.loads(js.stdout)
    assert [s["step"] for s in data["steps"]] == [1, 2, 3]
    assert data["steps"][1]["loss_factor"] == 1e30 and data["summary"]["first_overflow_step"] == 2
