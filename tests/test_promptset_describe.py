"""explorer/speculative/describe_runs.py: the prompt-set view's words (header, table columns, legend, details) from a
run, without a display."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from explorer.models.checkpoint import default_model_dirs, load_model
from explorer.speculative import analysis
from explorer.speculative.describe_runs import (
    NO_VALUE,
    TableRow,
    config_label,
    detail_html,
    empty_header_html,
    header_html,
    legend_html,
    plot_categories,
    sort_key,
    table_columns,
)
from explorer.speculative.options import SPECULATE
from explorer.speculative.promptsets import Prompt
from explorer.speculative.runs import Configuration, Run, make_header, parse_compare, run_prompt_set

PALETTE = SimpleNamespace(muted="#777777", accent="#ee5500")
PROMPTS = [Prompt("p1", "def add(a, b):\n    ", "function"), Prompt("p2", "for i in range(10):\n    ", "loop")]


@pytest.fixture(scope="module")
def run() -> Run:
    """Two prompts under two configurations (no file: the results kept in memory)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    dirs = default_model_dirs()
    target, draft = load_model(dirs["target"]), load_model(dirs["draft"])
    base = SPECULATE.defaults() | {"method": "chain", "accept": "greedy", "max_new": 6}
    configs = [Configuration("base", base), parse_compare("gamma=2", base)]
    header = make_header(PROMPTS, configs, target, draft, 0)
    done = Run(None, header, list(run_prompt_set(target, draft, PROMPTS, configs)))
    torch.set_num_threads(threads)
    return done


def test_columns_name_each_configuration_when_there_are_several():
    base = SPECULATE.defaults() | {"method": "chain", "accept": "greedy"}
    one = [c.title for c in table_columns([Configuration("base", base)])]
    assert one == ["prompt", "category", "α", "tok/step", "speedup", "1st div."]
    two = [c.title for c in table_columns([Configuration("base", base), parse_compare("gamma=2", base)])]
    assert two == ["prompt", "category", "α base", "tok/step base", "speedup base", "α gamma=2", "tok/step gamma=2",
                   "speedup gamma=2", "1st div.", "Δ tok/step gamma=2"]  # fmt: skip
    assert [c.title for c in table_columns([])] == ["prompt", "category", "1st div."]  # no run yet


def test_rows_values_cell_text_and_sort_keys():
    base = SPECULATE.defaults() | {"method": "chain", "accept": "greedy"}
    columns = table_columns([Configuration("base", base), parse_compare("gamma=2", base)])
    row = TableRow("10", "loop", "for i in range(10)", {0: {"alpha": 0.5, "tokens_per_step": 2.0, "speedup": None,
                                                           "first_divergence": 3}})  # fmt: skip
    by_title = {c.title: c for c in columns}
    assert by_title["α base"].text(row) == "0.50" and by_title["speedup base"].text(row) == NO_VALUE
    assert by_title["α gamma=2"].text(row) == NO_VALUE  # no result yet under gamma=2
    assert row.delta(1) is None and by_title["Δ tok/step gamma=2"].signed and not by_title["α base"].signed
    row.cells[1] = {"alpha": 0.4, "tokens_per_step": 1.5, "speedup": 1.25, "first_divergence": None}
    assert by_title["Δ tok/step gamma=2"].text(row) == "-0.50" and by_title["speedup gamma=2"].text(row) == "1.25×"
    assert by_title["1st div."].text(row) == "3"
    assert row.matches("range") and row.matches("loop") and row.matches("10") and not row.matches("while")
    assert sorted(["10", "2", "1"], key=sort_key) == ["1", "2", "10"]  # ids in numeric order
    assert sort_key(None) < sort_key(-5.0) and sort_key("Loop") == "loop"


def test_header_says_progress_models_file_and_the_replayed_prompt(run):
    text = header_html(run, PALETTE)
    assert text.startswith("<b style='font-size:120%'>2 prompts × 2 configurations</b>")
    assert "demo-target + draft demo-draft" in text and "seed 0" in text and "(not saved)" in text
    assert "of 4" not in text  # complete: no progress
    partial = Run(None, run.header, run.results[:1])
    assert f"<span style='color:{PALETTE.accent}'>● 1 of 4</span>" in header_html(partial, PALETTE)
    replayed = run.results[3]
    text = header_html(run, PALETTE, replayed, steps=7)
    assert "replaying prompt <b>p2</b> (loop) under gamma=2: ←/→ step through its 7 steps" in text
    assert PALETTE.muted in empty_header_html(PALETTE) and "File › Open run…" in empty_header_html(PALETTE)


def test_legend_details_and_categories(run):
    configs = run.configurations
    assert config_label(configs[1]) == f"gamma=2: {configs[1].describe()}"
    results = [r for r in run.results if r.config == 0]
    counts = analysis.counts(results)
    legend = legend_html("#4c78a8", configs[0], counts, 0.25, deterministic=False)
    assert legend.startswith("<span style='color:#4c78a8'>■</span> <b>base</b>") and "ECE 0.25" in legend
    assert f"α {counts.alpha:.2f}" in legend and f"{counts.tokens_per_step:.2f} tok/step" in legend
    assert "speedup –" in legend_html("#4c78a8", configs[0], counts, 0.25, deterministic=True)  # recordings
    details = detail_html(run, 0, PALETTE)
    assert "<b>acceptance by token class</b> (base)" in details and "<b>gamma=2 vs base</b>" in details
    assert "most changed (Δ tok/step)" in details
    assert "<b>gamma=2 vs base</b>" in detail_html(run, 1, PALETTE)
    assert plot_categories(run.results) == ["function", "loop", "all"]
    assert plot_categories(run.results[:2]) == ["function"]  # one category: no "all" repeating it
