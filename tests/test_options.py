"""One options schema per engine: the same bad value gets the same words on the command line, in a tour and in
``--set``; every subcommand documents every option; CLI flags, panel controls and checks come from one place."""

import argparse
import math

import pytest

from explorer.amp.options import AMP
from explorer.attention.options import ATTENTION
from explorer.cli.main import build_parser, main
from explorer.errors import ExplorerError
from explorer.models.options import GENERATE, GENERATE_CLI
from explorer.options import Option, Schema, number
from explorer.recording.tour import VIEW_SCHEMAS, parse_tour
from explorer.speculative.options import SPECULATE

# (command line, tour view, setting, TOML value, the words every surface must use after the option's name)
CASES = [
    (["speculate", "--tree-depth", "13"], "speculative", "tree_depth", "13", "must be an integer in 0..12 (got 13)"),
    (["speculate", "--gamma", "99"], "speculative", "gamma", "99", "must be an integer in 0..16 (got 99)"),
    (["speculate", "--method", "beam"], "speculative", "method", '"beam"',
     "must be one of auto, chain, tree, lookup, medusa, eagle, mtp (got 'beam')"),
    (["speculate", "--temperature", "nan"], "speculative", "temperature", "nan",
     "must be a finite number in 0..5 (got nan)"),
    (["generate", "--temperature", "-1"], "generate", "temperature", "-1.0",
     "must be a finite number in 0..5 (got -1)"),
    (["generate", "--top-k", "-1"], "generate", "top_k", "-1", "must be an integer in 0..1000 (got -1)"),
    (["generate", "--max-new-tokens", "0"], "generate", "max_new", "0", "must be an integer in 1..4096 (got 0)"),
    (["generate", "--seed", str(2**40)], "generate", "seed", str(2**40),
     "must be an integer in 0..2147483647 (got 1099511627776)"),
    (["attention", "--block-m", "48", "--out", "t.safetensors"], "attention", "block_m", "48",
     "must be a power of two in 16..256 (got 48)"),
    (["attention", "--length", "5000", "--out", "t.safetensors"], "attention", "length", "5000",
     "must be an integer in 0..1024 (got 5000)"),
    (["amp", "--steps", "0"], "amp", "steps", "0", "must be an integer in 1..2000 (got 0)"),
    (["amp", "--policy", "apex"], "amp", "policy", '"apex"',
     "must be one of torch, deepspeed, megatron, static, none (got 'apex')"),
    (["amp", "--spike-factor", "inf"], "amp", "spike_factor", "inf", "must be a finite number in 1..1e+38 (got inf)"),
]


def cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("explorer: error: "), err
    return err.strip().removeprefix("explorer: error: ")


@pytest.mark.parametrize("argv,view,key,toml,words", CASES, ids=[f"{c[1]}-{c[2]}" for c in CASES])
def test_same_message_on_the_command_line_in_a_tour_and_in_set(argv, view, key, toml, words, capsys, tmp_path):
    flag = next(a for a in argv if a.startswith("--"))
    on_cli = cli_error(argv, capsys)
    tour = f'[[scene]]\nview = "{view}"\nsettings = {{ {key} = {toml} }}\n'
    assert on_cli == f"{flag} {words}"
    with pytest.raises(ExplorerError) as info:
        parse_tour(tour, name="t.toml")
    assert str(info.value) == f"t.toml, line 3: {key} {words}"
    out = tmp_path / "x.png"
    assert cli_error(["screenshot", "--view", view, "--out", str(out), "--set", f"{key}={toml}"], capsys) == (
        f"{key} {words}"
    )
    assert not out.exists()


def test_unknown_setting_names_the_known_ones(capsys, tmp_path):
    argv = ["screenshot", "--view", "speculative", "--out", str(tmp_path / "x.png"), "--set", "gama=3"]
    err = cli_error(argv, capsys)
    assert err.startswith("the speculative view has no setting 'gama' (its settings: method, accept, gamma,")
    with pytest.raises(ExplorerError, match="line 3: the speculative view has no setting 'gama'"):
        parse_tour('[[scene]]\nview = "speculative"\nsettings = { gama = 3 }\n', name="t.toml")


def test_every_option_of_every_subcommand_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"info", "generate", "attention", "speculate", "screenshot", "record", "train-demo",
                                "amp", "autograd", "ddp", "open", "train-heads", "convert"}  # fmt: skip
    missing = []
    for name, p in [("explorer", parser), *sub.choices.items()]:
        for action in p._actions:
            if action.option_strings and not action.help and action.help is not argparse.SUPPRESS:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_help_shows_range_and_default(capsys):
    with pytest.raises(SystemExit):
        main(["speculate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--tree-depth N tree depth, 0 = auto; integer in 0..12 (default: 0)" in out
    assert "--model MODEL, --target MODEL" in out


def test_model_given_before_or_after_the_subcommand_means_the_same(capsys):
    for argv in (["--model", "/no/such/dir", "generate"], ["generate", "--model", "/no/such/dir"],
                 ["speculate", "--target", "/no/such/dir"]):  # fmt: skip
        assert "model directory not found: /no/such/dir" in cli_error(argv, capsys)


def test_view_panels_are_built_from_the_schemas():
    assert list(VIEW_SCHEMAS["speculative"].options) == [
        "method", "accept", "gamma", "tree_depth", "tree_topk", "tree_budget", "temperature", "max_new", "seed",
    ]  # fmt: skip
    assert VIEW_SCHEMAS["attention"].display_names == ("units", "fa4", "unsafe")
    assert VIEW_SCHEMAS["amp"].display_names == ("grads",)
    # a view may start elsewhere than the command line, never outside the one range
    for view, full in (("speculative", SPECULATE), ("attention", ATTENTION), ("amp", AMP), ("generate", GENERATE)):
        for o in VIEW_SCHEMAS[view]:
            assert (o.lo, o.hi, o.choices) == (full[o.name].lo, full[o.name].hi, full[o.name].choices)
            assert o.problem(o.default) is None


def test_option_checks():
    o = Option("x", float, 1.0, "x", lo=0, hi=2)
    assert o.problem(math.inf) == "must be a finite number in 0..2 (got inf)"
    assert o.problem(True) == "must be a finite number in 0..2 (got true)"
    assert o.problem([1]) == "must be a finite number in 0..2 (got an array)"
    assert o.problem(2) is None and o.problem(1.5) is None
    assert Option("n", int, 1, "n", lo=1).problem(1.5) == "must be an integer >= 1 (got 1.5)"
    assert Option("s", float, 1.0, "s", lo=0, lo_open=True).problem(0) == "must be a finite number above 0 (got 0)"
    schema = Schema("demo", [o])
    with pytest.raises(ExplorerError, match="^x must be a finite number in 0..2 \\(got 3\\)$"):
        schema.check({"x": 3})


def test_one_default_per_option_on_the_command_line_and_in_the_view(capsys):
    """The speculative view and `explorer speculate` start from the same values: eagle gives the same numbers."""
    view = VIEW_SCHEMAS["speculative"]
    assert {n: o.default for n, o in view.options.items()} == {n: SPECULATE[n].default for n in view.options}
    assert {n: o.default for n, o in VIEW_SCHEMAS["generate"].options.items()} == GENERATE_CLI.defaults()
    # 0 = auto: the shape is chosen from this machine's costs (explorer/speculative/shape.py), in both
    assert (SPECULATE["tree_depth"].default, SPECULATE["tree_topk"].default, SPECULATE["tree_budget"].default) == (
        0, 0, 0)
    assert (SPECULATE["gamma"].default, SPECULATE["method"].default, SPECULATE["medusa_tree"].default) == (
        0, "auto", "")
    with pytest.raises(SystemExit):
        main(["speculate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in view.options:
        o = SPECULATE[name]
        default = o.default_help or (number(o.default) if isinstance(o.default, float) else o.default)
        assert f"{o.cli_flag} " in out and f"(default: {default})" in out, name


def test_speculate_help_is_grouped_and_says_what_each_default_is(capsys):
    with pytest.raises(SystemExit):
        main(["speculate", "--help"])
    text = capsys.readouterr().out
    lines = text.splitlines()
    headers = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    assert headers == ["common options:", "drafting and acceptance:", "timing, prompt sets and output:", "advanced:"]
    assert len(lines) < 81 and max(len(line) for line in lines) <= 100
    common = text[text.index("common options:") : text.index("drafting and acceptance:")]
    for flag in ("--model", "--draft", "--prompt ", "--prompts", "--method", "--lookup", "--heads", "--json"):
        assert flag in common, flag
    flat = " ".join(text.split())
    assert "the view's own" not in flat
    assert "--prompt TEXT the prompt (default: 'def fibonacci(n):', a new line and 4 spaces" in flat
    assert "(default: lookup with --lookup, the heads' kind with --heads, tree with a tree option, else " \
        "auto)" in flat
    listed = [line.split()[0] for line in lines if line.startswith("  -")]
    assert sorted(o.cli_flag for o in SPECULATE) == sorted(f for f in listed if f in {o.cli_flag for o in SPECULATE})


def test_train_demo_states_the_measured_time_once(capsys):
    """The help and docs/commands.md give the figure the shipped pair's training.json measured."""
    import json
    from pathlib import Path

    from explorer.models.checkpoint import default_model_dirs

    total = json.loads((default_model_dirs()["target"] / "training.json").read_text())["total"]
    figure = f"about {round(total['wall_minutes'])} min, {round(total['cpu_minutes'])} CPU-minutes, on 2 cores"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert figure in " ".join(capsys.readouterr().out.split())
    docs = (Path(__file__).parent.parent / "docs" / "commands.md").read_text()
    assert figure in docs and "~45 min" not in docs
