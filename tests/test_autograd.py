"""Autograd engine (explorer.autograd): the graph read from torch, the hooked backward against
torch.autograd.grad, topological order, nn against functional, memory, and the in-place trap on the demo target."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from explorer.autograd.backward import (
    max_gradient_difference,
    reference_gradients,
    run_backward,
    topological_violations,
)
from explorer.autograd.functional import compare
from explorer.autograd.graph import capture, make_setup
from explorer.autograd.job import autograd_run, follow_model
from explorer.autograd.memory import compare_modes
from explorer.autograd.records import to_json
from explorer.autograd.trap import run_traps
from explorer.errors import ExplorerError
from explorer.models.checkpoint import default_model_dirs, load_model

EXPAND_ERROR = (
    "unsupported operation: more than one element of the written-to tensor refers to a single memory location. "
    "Please clone() the tensor before performing the operation."
)


@pytest.fixture(scope="module")
def lm():
    return load_model(default_model_dirs()["target"], dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def layer_run(lm):
    setup = make_setup(lm, 1, 2, 12)
    graph, live = capture(setup)
    reference = reference_gradients(live)
    steps = run_backward(live)
    return setup, graph, live, reference, steps


def test_hooked_backward_gives_torch_autograd_grad(layer_run):
    setup, graph, live, reference, steps = layer_run
    assert len(live.params) == 9  # the layer's 7 projections and 2 norms
    assert max_gradient_difference(live, reference) == 0.0
    by_variable = {graph.nodes[s.node].variable: s for s in steps if graph.nodes[s.node].variable}
    for (name, p), ref in zip(live.params, reference, strict=True):
        assert torch.equal(p.grad, ref)
        step = by_variable[name]  # the AccumulateGrad node saw the gradient it accumulated
        assert step.shape == tuple(p.shape)
        assert step.norm == pytest.approx(float(ref.norm()), rel=1e-6)
        assert step.bands.sum() == p.numel()


def test_band_counts_are_the_amp_views_own():
    from explorer.amp.bands import BANDS, fp16_bands
    from explorer.autograd.backward import fp16_band_counts

    rng = np.random.default_rng(0)
    edges = [0.0, -0.0, 2**-25, 2**-25 * (1 + 2**-20), 1023.5 * 2**-24, np.nextafter(1023.5 * 2**-24, 0), 65504.0,
             65519.99, 65520.0, np.inf, -np.inf, np.nan, 3e38]  # fmt: skip
    values = np.concatenate([rng.choice([-1, 1], 20000) * 2.0 ** rng.uniform(-30, 18, 20000), edges]).astype(np.float32)
    counts = dict(zip(BANDS, fp16_band_counts(torch.from_numpy(values)).tolist(), strict=True))
    assert counts == fp16_bands(values) and counts["inf_nan"] == 3 and counts["zero"] == 2


def test_recorded_order_is_a_topological_order_of_the_graph(layer_run):
    _, graph, _, _, steps = layer_run
    assert sorted(s.node for s in steps) == list(range(len(graph.nodes)))  # every node ran, once
    assert [s.order for s in steps] == list(range(len(steps)))
    assert steps[0].node == 0 and graph.nodes[0].short == "NllLoss"
    assert topological_violations(graph, steps) == []
    reversed_steps = [type(s)(i, s.node, s.seconds, s.shape, s.norm, s.bands) for i, s in enumerate(steps[::-1])]
    assert len(topological_violations(graph, reversed_steps)) == len(graph.edges())


def test_nodes_know_their_module_source_line_and_saved_tensors(layer_run):
    _, graph, _, _, _ = layer_run
    mm = {n.module: n for n in graph.nodes if n.short == "Mm"}
    q = mm["model.layers.1.self_attn.q_proj"]
    assert q.layer == 1 and q.source.startswith("decoder.py:")
    saved = {graph.saved[j].name: graph.saved[j] for j in q.saved}
    assert saved["mat2"].alias == "parameter model.layers.1.self_attn.q_proj.weight"
    assert saved["mat2"].stride == (1, 256) and saved["self"].stride == (256, 1)  # the weight saved as W.T: a view
    # q, k and v read the same normed input: one storage, kept once, the others point at it
    inputs = [graph.saved[j] for n in graph.nodes if n.short == "Mm" and ".self_attn." in n.module
              and n.module.rsplit(".", 1)[1] in ("q_proj", "k_proj", "v_proj") for j in n.saved
              if graph.saved[j].name == "self"]  # fmt: skip
    assert len(inputs) == 3 and sum(s.alias is None for s in inputs) == 1
    assert {n.short for n in graph.nodes if n.module == "model.layers.1.mlp"} == {"Silu", "Mul"}  # F.silu(g) * u
    sdpa = next(n for n in graph.nodes if n.short.startswith("ScaledDotProduct"))
    assert sdpa.module == "model.layers.1.self_attn" and "sdpa_attention" in sdpa.source
    assert graph.saved_total == sum(s.storage_bytes for s in graph.saved if s.alias is None)
    assert graph.layer_bytes()[1] > 0 and sum(graph.layer_bytes().values()) == graph.saved_total
    tree = {m.name: m for m in graph.modules}
    assert tree["model.layers.1.mlp.up_proj"].parameters == 256 * 768 and tree["model.layers.1.mlp"].depth == 4


def test_functional_layer_builds_the_same_graph_and_gradients(lm):
    check = compare(make_setup(lm, 2, 2, 12))
    assert check.same_graph and check.max_grad_diff == 0.0 and check.parameters == 9
    assert check.module_kinds == check.functional_kinds and len(check.module_kinds) > 50


def test_functional_matches_for_the_whole_model_in_bfloat16(lm):
    check = compare(make_setup(lm, None, 1, 8, dtype="bfloat16"))
    assert check.same_graph and check.max_grad_diff == 0.0


def test_in_place_trap_cases_raise_torchs_own_errors_and_the_fixes_run(lm):
    expand, clone, saved, fixed = run_traps(make_setup(lm, 0, 2, 12))
    assert expand.error == EXPAND_ERROR
    wide = expand.tensors[1]
    assert wide.stride[0] == 0 and wide.overlapping and wide.is_view and wide.storage_bytes == 256 * 4
    assert clone.error is None
    assert clone.tensors[1].stride == (256, 1) and clone.tensors[1].version == 1 and not clone.tensors[1].overlapping
    assert saved.error.startswith("one of the variables needed for gradient computation has been modified by an "
                                  "inplace operation: [torch.FloatTensor [2, 12, 768]]")  # fmt: skip
    assert "is at version 1; expected version 0 instead" in saved.error
    assert [t.version for t in saved.tensors] == [0, 1]
    assert fixed.error is None and fixed.tensors[1].version == 0


def test_checkpointing_keeps_less_and_no_grad_keeps_nothing(lm):
    setup = make_setup(lm, None, 2, 12)
    graph, _ = capture(setup)
    grad, ckpt, no_grad = compare_modes(setup)
    assert grad.saved_bytes == graph.saved_total  # the pack hook saw what the graph walk found
    assert 0 < ckpt.kept_bytes < grad.kept_bytes / 3
    assert no_grad.saved_bytes == 0 and no_grad.kept_bytes == 0
    assert no_grad.forward_peak_bytes < ckpt.forward_peak_bytes <= grad.forward_peak_bytes
    assert grad.peak_bytes >= grad.forward_peak_bytes


def test_job_yields_one_step_per_node_and_exports_json(lm):
    job = autograd_run(lm, {"layer": 3, "seq_len": 8}, deterministic=True)
    records = job.records()
    steps = [next(records)]
    meta = job.meta  # the graph and the checks come with the first step, the rest with the last
    assert meta.graph is not None and meta.order_violations == 0 and not meta.memory and meta.functional is None
    steps += list(records)
    assert len(meta.memory) == 3 and len(meta.traps) == 4 and meta.functional is not None
    assert len(steps) == len(meta.graph.nodes) and meta.graph.scope == "layer 3"
    assert meta.max_grad_diff == 0.0 and meta.order_violations == 0
    assert all(s.seconds == 0.0 for s in steps)
    assert math.isclose(meta.graph.loss, float(meta.graph.loss)) and meta.graph.tokens == (2, 8)
    data = json.loads(json.dumps(meta.to_json()))
    assert data["functional"]["same_graph"] and len(data["traps"]) == 4
    again = autograd_run(lm, {"layer": 3, "seq_len": 8}, deterministic=True)
    again_steps = list(again.records())
    assert again.meta.to_json() == meta.to_json()  # a recording draws the same numbers every time
    assert [to_json(s) for s in again_steps] == [to_json(s) for s in steps]
    assert [m["mode"] for m in data["memory"]] == ["autograd", "checkpoint", "no_grad"]


def test_layer_past_the_model_is_refused_and_followed(lm):
    with pytest.raises(ExplorerError, match=r"--layer must be in 0\.\.7"):
        make_setup(lm, 8, 1, 8)
    assert follow_model({"layer": 30, "batch": 2}, lm.config) == {"layer": 7, "batch": 2}


def explorer(*args):
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=300)


def test_cli_json_holds_the_graph_the_steps_and_the_checks():
    r = explorer("autograd", "--layer", "1", "--seq-len", "8", "--batch", "1", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    nodes, steps = data["graph"]["nodes"], data["steps"]
    assert data["graph"]["scope"] == "layer 1" and data["graph"]["tokens"] == [1, 8]
    assert sorted(s["node"] for s in steps) == list(range(len(nodes)))
    assert data["order_violations"] == 0 and data["max_grad_diff"] == 0.0 and data["functional"]["same_graph"]
    assert data["traps"][0]["error"] == EXPAND_ERROR and data["traps"][1]["error"] is None
    assert sum(n["saved_bytes"] for n in nodes) == data["graph"]["saved_bytes"]


def test_cli_text_and_a_bad_layer_in_one_line(capsys):
    from explorer.cli.main import main

    assert main(["autograd", "--layer", "0", "--seq-len", "8", "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "gradients vs torch.autograd.grad: max |difference| 0" in out
    assert "nn vs functional: same graph" in out and "0 edges out of order" in out
    assert main(["autograd", "--layer", "8"]) == 2
    assert capsys.readouterr().err == "explorer: error: --layer must be in 0..7 for demo-target (got 8)\n"
    assert main(["autograd", "--scope", "net"]) == 2
    assert "--scope must be one of layer, model (got 'net')" in capsys.readouterr().err


def test_a_30_layer_model_collapses_to_one_box_per_layer():
    from types import SimpleNamespace

    from explorer.autograd.layout import lay_out
    from explorer.models.decoder import CausalLM, ModelConfig

    cfg = ModelConfig(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=30,
                      num_heads=2, num_kv_heads=1, head_dim=16, rope_scaling={"rope_type": "default"},
                      max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    lm = SimpleNamespace(config=cfg, name="tiny-30", path="tiny-30", model=CausalLM(cfg),
                         encode=lambda text: [ord(c) % 64 for c in text])  # fmt: skip
    graph, live = capture(make_setup(lm, None, 1, 6))
    reference = reference_gradients(live)
    steps = run_backward(live)
    assert max_gradient_difference(live, reference) == 0.0 and topological_violations(graph, steps) == []
    collapsed = lay_out(graph)
    assert [b for b in collapsed.labels if b.startswith("layer ")] == [f"layer {i}" for i in range(29, -1, -1)]
    assert len(collapsed.labels) < 60 and sum(map(len, collapsed.members)) == len(graph.nodes)
    assert collapsed.x[0] == collapsed.x.max()  # the loss at the right
    assert all(collapsed.x[a] > collapsed.x[b] for a, b in collapsed.edges)  # gradients flow leftwards
    opened = lay_out(graph, {12})
    assert len(opened.labels) == len(collapsed.labels) - 1 + sum(n.layer == 12 for n in graph.nodes)
    assert all(opened.x[a] > opened.x[b] for a, b in opened.edges)
