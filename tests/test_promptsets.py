"""Prompt sets and runs on the demo pair: prompt files, run files that resume and replay exactly, aggregates that
equal a recomputation from the steps, and one-line errors for malformed files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from explorer.cli.main import main
from explorer.errors import ExplorerError
from explorer.models.checkpoint import default_model_dirs, load_model
from explorer.speculative import analysis
from explorer.speculative.options import SPECULATE
from explorer.speculative.promptsets import Prompt, read_prompt_set
from explorer.speculative.runs import (
    Configuration,
    RunFileError,
    RunWriter,
    make_header,
    parse_compare,
    read_run,
    run_prompt_set,
    step_from_dict,
    without_timings,
)

ASSETS = default_model_dirs()["target"].parent.parent / "prompts"
PROMPTS = [
    Prompt("add", "def add(a, b):\n    ", "function"),
    Prompt("loop", "for i in range(10):\n    ", "loop"),
    Prompt("cls", "class Point:\n    def __init__(self, x, y):\n        ", "class"),
]
MAX_NEW = 10


@pytest.fixture(scope="module")
def pair():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and kind to a shared machine
    dirs = default_model_dirs()
    yield load_model(dirs["target"]), load_model(dirs["draft"])
    torch.set_num_threads(threads)


def base_values() -> dict:
    values = SPECULATE.defaults()
    values.update(method="chain", accept="greedy", max_new=MAX_NEW)
    return values


def configurations() -> list[Configuration]:
    base = base_values()
    return [Configuration("base", base), parse_compare("gamma=2", base), parse_compare("method=lookup", base)]


@pytest.fixture(scope="module")
def full_run(pair, tmp_path_factory):
    """An uninterrupted run: 3 prompts x 3 configurations, written to a run file; also the live results."""
    target, draft = pair
    path = tmp_path_factory.mktemp("runs") / "full.jsonl"
    configs = configurations()
    header = make_header(PROMPTS, configs, target, draft, 0)
    with RunWriter(path, header) as writer:
        live = list(run_prompt_set(target, draft, PROMPTS, configs, writer))
    return path, live, header


def comparable(result) -> dict:
    """A result without what the wall clock measured."""
    d = result.summary()
    d["stats"] = without_timings(d["stats"])
    d.pop("target_only")
    return d


def step_dicts(steps) -> list[dict]:
    out = []
    for s in steps:
        d = s.as_dict()
        d.pop("draft_seconds"), d.pop("verify_seconds"), d.pop("forward_seconds")
        out.append(d)
    return out


# ---------------------------------------------------------------------------------------------- prompt files
def test_prompt_files_in_three_formats(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("def f(x):\\n    return x\\n\n\nprint('a\\\\n')\n", encoding="utf-8")
    assert [p.text for p in read_prompt_set(text)] == ["def f(x):\n    return x\n", "print('a\\n')"]
    assert [p.id for p in read_prompt_set(text)] == ["1", "2"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a\\nb", "id": "x", "category": "c"}\n{"prompt": "z"}\n', encoding="utf-8")
    assert read_prompt_set(jsonl) == [Prompt("x", "a\nb", "c"), Prompt("2", "z")]
    bench = tmp_path / "question.jsonl"
    bench.write_text(json.dumps({"question_id": 81, "category": "writing", "turns": ["Hi there", "More"]}) + "\n")
    assert read_prompt_set(bench) == [Prompt("81", "Hi there", "writing", chat=True)]


def test_shipped_prompt_sets():
    chat = read_prompt_set(ASSETS / "chat.jsonl")
    code = read_prompt_set(ASSETS / "code.jsonl")
    assert len(chat) >= 40 and all(p.chat for p in chat)
    categories = {p.category for p in chat}
    assert {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities",
            "translation", "summarization", "qa", "rag"} <= categories  # fmt: skip
    assert len(code) == 40 and len({p.id for p in code}) == 40 and not any(p.chat for p in code)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": \n', "bad.jsonl, line 2: not a JSON object"),
        ("bad.jsonl", '{"text": "a"}\n', "bad.jsonl, line 1: an object needs 'prompt'"),
        ("bad.jsonl", '["a"]\n', "bad.jsonl, line 1: each line must be a JSON object"),
        ("bad.jsonl", '{"prompt": "a", "id": 1}\n{"prompt": "b", "id": 1}\n', "line 2: id '1' was already used"),
        ("bad.jsonl", '{"turns": []}\n', "'turns' must be a non-empty list"),
        ("bad.txt", "\n\n", "no prompts in"),
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": "abc \\ud800 def"}\n',
         "bad.jsonl, line 2: the prompt is not valid Unicode (a lone surrogate"),
        ("bad.txt", 'plain\n"x \\udc80"\n', "bad.txt, line 2: the prompt is not valid Unicode"),
        ("bad.jsonl", '{"prompt": "a", "category": "\\udfff"}\n', "line 1: the category is not valid Unicode"),
    ],
)
def test_malformed_prompt_files_one_line(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ExplorerError, match=message.replace("(", r"\(")):
        read_prompt_set(path)
    assert main(["speculate", "--prompts", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("explorer: error: ") and err.count("\n") == 1 and message.split(": ")[-1] in err


def test_bytes_that_are_not_utf8_are_named_by_file_and_line(tmp_path, capsys):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first\nsecond caf\u00e9\n".encode("latin-1"))
    assert main(["speculate", "--prompts", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"explorer: error: prompts file {path}, line 2: not UTF-8 text (byte 0xe9 at column 11)\n"
    path = tmp_path / "escaped.jsonl"  # valid UTF-8, but a JSON escape spells half of a surrogate pair
    path.write_text('{"prompt": "abc \\ud800 def"}\n', encoding="utf-8")
    assert main(["speculate", "--prompts", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"explorer: error: prompts file {path}, line 1: the prompt is not valid Unicode (a lone surrogate "
                   "\\ud800 at character 5)\n")  # fmt: skip


def test_compare_is_checked_by_the_options_schema():
    base = base_values()
    assert parse_compare("gamma=2", base).values["gamma"] == 2
    c = parse_compare("temperature=0.7", base)
    assert c.values["accept"] == "sample" and c.key == "temperature=0.7"
    assert parse_compare("tree_depth=3", base).values["method"] == "tree"
    with pytest.raises(ExplorerError, match="speculate has no option 'gama'"):
        parse_compare("gama=2", base)
    with pytest.raises(ExplorerError, match=r"gamma must be an integer in 0\.\.16 \(got 17\)"):  # 0: auto
        parse_compare("gamma=17", base)


# ---------------------------------------------------------------------------------------------- runs
def test_run_file_reopens_with_the_live_results_and_replays_every_step(full_run):
    path, live, header = full_run
    run = read_run(path)
    assert run.header == header and len(run.results) == len(PROMPTS) * 3
    for a, b in zip(live, run.results, strict=True):
        assert b.summary() == a.summary()
        replayed = run.load_steps(b)
        assert [s.as_dict() for s in replayed] == [s.as_dict() for s in a.steps]  # a replayed step is the live one
        assert [s.as_dict() for s in map(step_from_dict, (s.as_dict() for s in a.steps))] == [
            s.as_dict() for s in a.steps
        ]
    greedy = [r for r in live if r.config in (0, 1)]
    assert all(r.stats["first_divergence"] is None for r in greedy)  # lossless: the target's own greedy tokens
    assert all(r.token_ids == r.target_only["tokens"] for r in live)


def test_aggregates_equal_a_recomputation_from_the_steps(full_run):
    _, live, _ = full_run
    run = read_run(full_run[0])
    for config in range(3):
        mine = [r for r in live if r.config == config]
        stored = [r for r in run.results if r.config == config]
        steps = [s for r in mine for s in r.steps]
        accepted = sum(len(s.accepted) for s in steps)
        tried = sum(len(s.accepted) + (s.rejected is not None) for s in steps)
        every = analysis.categories(stored)["all"]
        assert every.alpha == pytest.approx(accepted / tried if tried else 0.0)
        assert every.mean_accepted == pytest.approx(accepted / len(steps))
        assert every.tokens_per_step == pytest.approx(sum(len(s.new_tokens) for s in steps) / len(steps))
        for r in mine:  # per prompt, the analysis agrees with the engine's own stats
            row = analysis.prompt_row(r)
            assert row["alpha"] == pytest.approx(r.stats["alpha"])
            assert row["mean_accepted_with_bonus"] == pytest.approx(r.stats["mean_accepted_with_bonus"])
        for cat in {p.category for p in PROMPTS}:
            sub = [s for r in mine if r.category == cat for s in r.steps]
            a = sum(len(s.accepted) for s in sub)
            t = sum(len(s.accepted) + (s.rejected is not None) for s in sub)
            assert analysis.categories(stored)[cat].alpha == pytest.approx(a / t if t else 0.0)
        decisions = [(s, d) for s in steps for d in s.decisions]
        cal = analysis.calibration(stored)
        assert sum(cal["count"]) == cal["decisions"] == len(decisions)
        assert sum(c * a for c, a in zip(cal["count"], cal["acceptance"], strict=True) if c) == pytest.approx(
            sum(d.accepted for _, d in decisions)
        )
        pos = analysis.per_position(stored)
        for d, rate in zip(pos["position"], pos["rate"], strict=True):
            deep = [s for s in steps if len(s.tree.tokens) and s.tree.depth.max() >= d]
            assert rate == pytest.approx(sum(len(s.accepted) >= d for s in deep) / len(deep))
        classes = analysis.by_token_class(stored)
        assert sum(v["decisions"] for k, v in classes.items() if k != "after a newline") == len(decisions)
        rejected = analysis.rejected_tokens(stored, top=1000)
        assert sum(r["rejected"] for r in rejected) == sum(not d.accepted for _, d in decisions)
    diff = analysis.differences(run, 1)
    assert len(diff["prompts"]) == len(PROMPTS)
    assert analysis.analyse(run)["configurations"][1]["versus_base"]["prompts"] == diff["prompts"]


def test_a_resumed_run_equals_an_uninterrupted_one(pair, full_run, tmp_path):
    target, draft = pair
    path, live, header = full_run
    data = path.read_bytes()
    lines = data.split(b"\n")
    # Interrupted while writing: the header, the first two pairs (steps + result lines), then half a steps line.
    cut = len(b"\n".join(lines[:5])) + 1 + len(lines[5]) // 2
    partial = tmp_path / "run.jsonl"
    partial.write_bytes(data[:cut])
    assert len(read_run(partial).results) == 2  # the cut-off line is ignored
    configs = configurations()
    with RunWriter(partial, make_header(PROMPTS, configs, target, draft, 0)) as writer:
        assert len(writer.run.results) == 2
        resumed = list(run_prompt_set(target, draft, PROMPTS, configs, writer))
    assert len(resumed) == len(live) - 2
    run = read_run(partial)
    assert [comparable(r) for r in run.results] == [comparable(r) for r in live]
    assert [step_dicts(run.load_steps(r)) for r in run.results] == [step_dicts(r.steps) for r in live]


def test_resume_refuses_another_run(pair, full_run, tmp_path):
    target, draft = pair
    copy = tmp_path / "run.jsonl"
    shutil.copy(full_run[0], copy)
    other = configurations()[:2]
    with pytest.raises(ExplorerError, match="holds another run \\(its configurations differ\\)"):
        RunWriter(copy, make_header(PROMPTS, other, target, draft, 0))


def test_malformed_run_files_one_line(full_run, tmp_path, capsys):
    good = full_run[0].read_bytes().split(b"\n")
    cases = {
        "empty.jsonl": (b"", "empty file, not an explorer run"),
        "text.jsonl": (b"hello\n", "line 1: not JSON: not an explorer run file"),
        "kind.jsonl": (b'{"kind": "other"}\n', "not an explorer run file"),
        "version.jsonl": (good[0].replace(b'"version": 1', b'"version": 99') + b"\n", "run file version 99"),
        "middle.jsonl": (b"\n".join([good[0], good[1], b"{garbage", good[2]]) + b"\n", "line 3: not a run record"),
        "config.jsonl": (b"\n".join([good[0], good[2].replace(b'"config": 0', b'"config": 7')]) + b"\n",
                         "configuration 7 does not exist"),
    }  # fmt: skip
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(RunFileError, match=message.replace("(", r"\(")):
            read_run(path)
        assert main(["open", str(path), "--json"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("explorer: error: ") and err.count("\n") == 1, name
    assert main(["open", str(tmp_path / "missing.jsonl"), "--json"]) == 2
    assert "cannot read run file" in capsys.readouterr().err


def test_cli_runs_a_set_with_a_compared_configuration_and_resumes(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(p.as_dict() | {"prompt": p.text}) + "\n" for p in PROMPTS[:2]))
    out = tmp_path / "run.jsonl"
    argv = ["speculate", "--prompts", str(prompts), "--max-new-tokens", "6", "--compare", "gamma=2",
            "--out", str(out), "--json"]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [(x["prompt"], x["config"]) for x in lines[:-1]] == [
            ("add", "base"), ("add", "gamma=2"), ("loop", "base"), ("loop", "gamma=2")
        ]
        assert all(len(x["token_ids"]) == 6 and "alpha" in x["stats"] for x in lines[:-1])
        assert lines[-1]["kind"] == "aggregates" and len(lines[-1]["configurations"]) == 2
        assert main(argv) == 0  # everything is done: the resumed run computes nothing
        captured = capsys.readouterr()
        assert "resuming" in captured.err and "4 of 4 done" in captured.err
        assert len(captured.out.splitlines()) == 1
    finally:
        torch.set_num_threads(threads)
    assert len(read_run(out).results) == 4
    assert main(["open", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["configurations"][1]["key"] == "gamma=2"


def test_decision_rows_name_the_token_the_output_has_instead(full_run):
    _, live, _ = full_run
    for r in live:
        for s in r.steps:
            for d in s.decisions:
                depth = int(s.tree.depth[d.node])
                if not d.accepted and r.config in (0, 1) and len(s.new_tokens) >= depth:
                    # greedy: what the target chose is its argmax after the node's parent
                    parent = int(s.tree.parent[d.node])
                    assert s.new_tokens[depth - 1] == int(s.target_argmax[parent + 1])
    rows = np.concatenate([r.decisions for r in live])
    assert rows.shape[1] == 8 and set(np.unique(rows[:, 5])) <= {0.0, 1.0}


def test_trees_and_sampling_replay_exactly(pair, tmp_path):
    """Tree masks, residual distributions, u draws and typical thresholds survive the run file bit for bit."""
    target, draft = pair
    base = base_values() | {"max_new": 6}
    configs = [Configuration("base", base)] + [
        parse_compare(text, base)
        for text in ("method=tree,tree_depth=3,tree_topk=3,tree_budget=6", "temperature=0.8",
                     "method=tree,temperature=0.8", "accept=typical")
    ]  # fmt: skip
    path = tmp_path / "run.jsonl"
    with RunWriter(path, make_header(PROMPTS[:1], configs, target, draft, 0)) as writer:
        live = list(run_prompt_set(target, draft, PROMPTS[:1], configs, writer))
    run = read_run(path)
    assert [c.describe() for c in run.configurations][1:] == [
        "tree 3/3/6", "chain γ=auto sample T=0.8", "tree auto sample T=0.8", "chain γ=auto typical"
    ]  # fmt: skip
    for a, b in zip(live, run.results, strict=True):
        assert [s.as_dict() for s in run.load_steps(b)] == [s.as_dict() for s in a.steps]
    sampled = [s for r in live if r.config in (2, 3) for s in r.steps]
    assert any(d.u is not None for s in sampled for d in s.decisions)
    assert any(s.mask is not None for r in live if r.config == 1 for s in r.steps)


def test_spec_bench_turns_use_the_chat_template_when_there_is_one():
    from types import SimpleNamespace

    from explorer.speculative.promptsets import encode_prompt

    calls = []

    def fake(template):
        return SimpleNamespace(
            prompt_format=SimpleNamespace(chat_template=template),
            encode=lambda text: calls.append(("plain", text)) or [1],
            prompt_ids=lambda text, chat=False: calls.append(("chat" if chat else "plain", text)) or [2],
        )

    turn, code = Prompt("1", "Hi", "writing", chat=True), Prompt("2", "def f():", "code")
    assert encode_prompt(fake("{{ messages }}"), turn) == [2] and calls[-1] == ("chat", "Hi")
    assert encode_prompt(fake("{{ messages }}"), code) == [1] and calls[-1] == ("plain", "def f():")
    assert encode_prompt(fake(None), turn) == [1] and calls[-1] == ("plain", "Hi")  # no template: plain text


def test_replay_metadata_of_a_stored_result(full_run):
    from explorer.speculative.job import replay_meta

    path, live, header = full_run
    run = read_run(path)
    result = run.results[4]
    meta = replay_meta(run, result, decode=str)
    prompt = next(p for p in PROMPTS if p.id == result.prompt)
    assert (meta.prompt, meta.prompt_ids, meta.decode) == (prompt.text, result.prompt_ids, str)
    assert meta.options == run.configurations[result.config].options()
    assert meta.target == header["target"]["path"] and meta.draft == header["draft"]["path"]
    assert meta.target_only.tokens == result.target_only["tokens"]
    assert not meta.measures_costs and "costs" not in meta.as_dict()  # a prompt-set run measures no costs
    result.target_only = {}  # runs stored without the baseline
    assert replay_meta(run, result, decode=str).as_dict()["target_only"] is None


def test_heads_of_configurations_come_from_the_session():
    from explorer.speculative.runs import heads_for_configurations

    class Session:
        def heads_for(self, method):
            return f"{method} heads"

    base = base_values()
    configs = [Configuration("base", base), parse_compare("method=eagle", base), parse_compare("method=lookup", base),
               parse_compare("method=eagle,gamma=2", base)]  # fmt: skip
    assert heads_for_configurations(Session(), configs) == {"eagle": "eagle heads"}
    with_fallback = heads_for_configurations(Session(), configs, lookup_kind="mtp")
    assert with_fallback == {"eagle": "eagle heads", "lookup": "mtp heads"}  # lookup guesses with them
