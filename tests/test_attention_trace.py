"""Tracing one head of a real (tiny) model through the FlashAttention kernel: the captured q/k/v are what
transformers computes for that layer (Llama, and Qwen3 with its q/k-norm), the kernel's output equals the model's
own attention output, the traced m/l/alpha equal a float64 numpy recomputation from the saved q/k, the trace file
round-trips and refuses malformed files with one line, and the ``explorer attention`` command works end to end.

Tiny random models are saved by transformers with a tiny BPE tokenizer (helpers of test_checkpoint_errors);
prompts are under 40 tokens and tiles 16x16, so the Triton interpreter stays fast.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from test_checkpoint_errors import build_model_dir, build_tokenizer

from explorer.attention.trace import capture_layer, capture_qkv, load_trace, save_trace, trace_attention
from explorer.cli.main import main
from explorer.errors import ExplorerError
from explorer.kernels import triton_available
from explorer.models.checkpoint import load_model
from explorer.models.decoder import sdpa_attention

transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parent.parent
PROMPT = "hello world, the quick brown fox jumps over the lazy dog; a tiny tokenizer for tests. Zebras vex moody kings!"
BLOCK = 16
BACKENDS = [pytest.param("triton", marks=pytest.mark.skipif(not triton_available(), reason="no triton")), "torch"]


def build_qwen3_dir(path: Path) -> Path:
    """A tiny Qwen3 (q/k-norm, explicit head_dim 16, tied embeddings) with non-trivial norm weights."""
    config = transformers.Qwen3Config(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=64, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(1)
    model = transformers.Qwen3ForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path)
    build_tokenizer(path)
    return path


def build_mistral_dir(path: Path) -> Path:
    """A tiny Mistral whose sliding window (16) is shorter than the prompt: the model passes a mask, not causal."""
    config = transformers.MistralConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, sliding_window=16, bos_token_id=None, eos_token_id=0,
        pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(2)
    transformers.MistralForCausalLM(config).save_pretrained(path)
    build_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("attention-trace")
    return {
        "llama": build_model_dir(root / "tiny-llama", max_position_embeddings=64),
        "qwen3": build_qwen3_dir(root / "tiny-qwen3"),
        "mistral": build_mistral_dir(root / "tiny-mistral"),
    }


@pytest.fixture(scope="module")
def models(model_dirs):
    return {name: load_model(path, dtype="float32", device="cpu") for name, path in model_dirs.items()}


@pytest.fixture(scope="module")
def llama_trace(models):
    return trace_attention(models["llama"], PROMPT, layer=1, head=3, block_m=BLOCK, block_n=BLOCK)


def transformers_attention(path: Path, ids: list[int], layer: int):
    """(q, k, v, out) of ``layer`` as transformers computes them, from an attention function registered with
    transformers' AttentionInterface: q/k after its own q/k-norm and RoPE; out [1, H, N, D]."""
    seen = {}

    def capture(module, query, key, value, attention_mask, **kwargs):
        out = transformers.integrations.sdpa_attention.sdpa_attention_forward(
            module, query, key, value, attention_mask, **kwargs
        )
        if module.layer_idx == layer:
            seen.update(q=query, k=key, v=value, out=out[0].transpose(1, 2))
        return out

    transformers.AttentionInterface.register("explorer_test_capture", capture)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path, attn_implementation="explorer_test_capture", dtype=torch.float32
    )
    with torch.no_grad():
        model(torch.tensor([ids]))
    return seen["q"], seen["k"], seen["v"], seen["out"]


@pytest.mark.parametrize("name", ["llama", "qwen3"])
def test_captured_qkv_are_what_transformers_computes(models, model_dirs, name):
    lm = models[name]
    ids = lm.encode(PROMPT)
    cap = capture_layer(lm, ids, layer=1)
    q, k, v, out = transformers_attention(model_dirs[name], ids, layer=1)
    cfg = lm.config
    assert cap.q.shape == (1, cfg.num_heads, len(ids), cfg.head_dim)
    assert cap.k.shape == cap.v.shape == (1, cfg.num_kv_heads, len(ids), cfg.head_dim)
    assert cap.causal and cap.mask is None and cap.scale == cfg.head_dim**-0.5
    for ours, theirs in ((cap.q, q), (cap.k, k), (cap.v, v), (cap.out, out)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert all(torch.equal(a, b) for a, b in zip(capture_qkv(lm, ids, 1), (cap.q, cap.k, cap.v), strict=True))
    assert lm.model.attention is sdpa_attention


def test_capture_restores_the_attention_function_on_error(models):
    lm = models["llama"]

    def broken(q, k, v, *, causal, mask, scale, layer):
        raise RuntimeError("broken backend")

    lm.model.attention = broken
    try:
        with pytest.raises(RuntimeError, match="broken backend"):
            capture_layer(lm, lm.encode(PROMPT), layer=0)
        assert lm.model.attention is broken
    finally:
        lm.model.attention = sdpa_attention


def numpy_online_softmax(q: np.ndarray, k: np.ndarray, scale: float, bm: int, bn: int):
    """m, l, alpha [n_q_blocks, n_kv_blocks, bm] of causal FlashAttention-2, in float64 from the definitions
    (NaN where a tile is not visited or a row is padding), and the expected tile states."""
    n = q.shape[0]
    nq, nkv = -(-n // bm), -(-n // bn)
    s_all = (q.astype(np.float64) @ k.astype(np.float64).T) * scale
    s_all[np.triu_indices(n, 1)] = -np.inf
    m_out, l_out, a_out = (np.full((nq, nkv, bm), np.nan) for _ in range(3))
    state = np.zeros((nq, nkv), np.int8)
    for i in range(nq):
        r0, r1 = i * bm, min(n, (i + 1) * bm)
        m, l = np.full(r1 - r0, -np.inf), np.zeros(r1 - r0)  # noqa: E741
        for j in range(nkv):
            if j * bn > r1 - 1:  # entirely above the diagonal: never visited
                break
            s = s_all[r0:r1, j * bn : (j + 1) * bn]
            m_new = np.maximum(m, s.max(1))
            m_use = np.where(np.isneginf(m_new), 0.0, m_new)
            alpha = np.exp(m - m_use)
            l = l * alpha + np.exp(s - m_use[:, None]).sum(1)  # noqa: E741
            m = m_new
            m_out[i, j, : r1 - r0], l_out[i, j, : r1 - r0], a_out[i, j, : r1 - r0] = m_use, l, alpha
            state[i, j] = 2 if np.isneginf(s).any() else 1
    return m_out, l_out, a_out, state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["llama", "qwen3"])
def test_trace_equals_model_output_and_numpy_recomputation(models, name, backend):
    lm = models[name]
    tr = trace_attention(lm, PROMPT, layer=1, head=2, block_m=BLOCK, block_n=BLOCK, backend=backend)
    meta = tr.meta
    n, d = meta.n, meta.head_dim
    assert meta.backend == backend and meta.kv_head == 1 and meta.dtype == "float32"
    assert n == len(lm.encode(PROMPT)) and 32 < n <= 40 and d == lm.config.head_dim
    assert meta.model_max_abs_diff <= 1e-5  # the kernel's output is the model's own attention output
    assert meta.max_abs_error <= 1e-5 and meta.sdpa_max_abs_error <= 1e-5

    m_want, l_want, alpha_want, state = numpy_online_softmax(tr.q, tr.k, meta.scale, BLOCK, BLOCK)
    np.testing.assert_array_equal(tr.tile_state, state)
    for got, want in ((tr.m, m_want), (tr.l, l_want), (tr.alpha, alpha_want)):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert meta.tiles_visited == int((state > 0).sum()) == 6 and meta.tiles_skipped == 3
    assert meta.tiles_masked == 3  # the diagonal tiles

    s = (tr.q.astype(np.float64) @ tr.k.astype(np.float64).T) * meta.scale
    s[np.triu_indices(n, 1)] = -np.inf
    p = np.exp(s - s.max(1, keepdims=True))
    np.testing.assert_allclose(tr.o, (p / p.sum(1, keepdims=True)) @ tr.v.astype(np.float64), atol=1e-5)
    lse = s.max(1) + np.log(np.exp(s - s.max(1, keepdims=True)).sum(1))
    np.testing.assert_allclose(tr.lse, lse, rtol=1e-5)
    assert len(meta.tokens) == n == len(meta.prompt_ids) and "".join(meta.tokens) == lm.decode(
        meta.prompt_ids
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_meets_tri_daos_criterion(models, dtype):
    tr = trace_attention(models["llama"], PROMPT, layer=0, head=0, block_m=BLOCK, block_n=BLOCK, dtype=dtype)
    meta = tr.meta
    assert meta.dtype == dtype and meta.reference == "float64"
    assert 0 < meta.max_abs_error <= 2 * meta.sdpa_max_abs_error and meta.within_2x_sdpa
    assert meta.model_max_abs_diff < 0.05  # a float32 model against its own inputs rounded to 16 bits


@pytest.mark.parametrize("backend", BACKENDS)
def test_sliding_window_mask_is_traced_as_the_model_runs(models, backend):
    tr = trace_attention(models["mistral"], PROMPT, layer=1, head=1, block_m=BLOCK, block_n=BLOCK, backend=backend)
    assert tr.meta.mask == "sliding_window" and tr.meta.n > 32
    assert tr.meta.model_max_abs_diff <= 1e-5 and tr.meta.max_abs_error <= 1e-5
    want = np.array([[2, 0, 0], [2, 2, 0], [2, 2, 2]], np.int8)  # above the diagonal skipped; the window masks
    np.testing.assert_array_equal(tr.tile_state, want)


def test_not_causal_visits_every_tile_and_skips_the_model_comparison(models):
    tr = trace_attention(models["llama"], PROMPT, layer=0, head=1, block_m=BLOCK, block_n=BLOCK, causal=False)
    assert tr.meta.tiles_skipped == 0 and tr.meta.tiles_masked == 0 and (tr.tile_state == 1).all()
    assert tr.meta.model_max_abs_diff is None and tr.meta.max_abs_error <= 1e-5


def test_trace_file_round_trip(llama_trace, tmp_path):
    path = save_trace(llama_trace, tmp_path / "trace.safetensors")
    back = load_trace(path)
    assert back.meta.as_dict() == json.loads(json.dumps(llama_trace.meta.as_dict()))
    assert back.meta == llama_trace.meta
    for name, arr in llama_trace.tensors().items():
        got = getattr(back, name)
        assert got.dtype == arr.dtype and got.shape == arr.shape, name
        np.testing.assert_array_equal(got, arr)  # NaN where not visited, on both sides
    assert back.meta.prompt == PROMPT and back.meta.layer == 1 and back.meta.head == 3


def _truncated(p: Path, good: Path):
    data = good.read_bytes()
    p.write_bytes(data[: len(data) - 100])


def _header_cut(p: Path, good: Path):
    p.write_bytes(good.read_bytes()[:40])


def _no_metadata(p: Path, good: Path):
    save_file(load_trace(good).tensors(), str(p))


def _metadata_not_json(p: Path, good: Path):
    save_file(load_trace(good).tensors(), str(p), metadata={"explorer_trace": "{not json"})


def _missing_tensor(p: Path, good: Path):
    tr = load_trace(good)
    tensors = tr.tensors()
    del tensors["alpha"]
    save_file(tensors, str(p), metadata={"explorer_trace": json.dumps(tr.meta.as_dict())})


def _wrong_shape(p: Path, good: Path):
    tr = load_trace(good)
    tensors = dict(tr.tensors(), m=tr.m[:, :-1].copy())
    save_file(tensors, str(p), metadata={"explorer_trace": json.dumps(tr.meta.as_dict())})


def _other_format(p: Path, good: Path):
    tr = load_trace(good)
    save_file(tr.tensors(), str(p), metadata={"explorer_trace": json.dumps(dict(tr.meta.as_dict(), format="other"))})


MALFORMED = {
    "missing": (None, "trace file not found"),
    "directory": (lambda p, good: p.mkdir(), "not a trace file"),
    "empty": (lambda p, good: p.write_bytes(b""), "not a readable safetensors file"),
    "text": (lambda p, good: p.write_text("hello, I am not a trace\n" * 20), "not a readable safetensors file"),
    "pickle": (lambda p, good: torch.save({"q": torch.zeros(2)}, p), "not a readable safetensors file"),
    "truncated": (_truncated, "not a readable safetensors file"),
    "header-cut": (_header_cut, "not a readable safetensors file"),
    "no-metadata": (_no_metadata, "not an explorer attention trace"),
    "metadata-not-json": (_metadata_not_json, "not valid JSON"),
    "missing-tensor": (_missing_tensor, "lacks tensor(s) alpha"),
    "wrong-shape": (_wrong_shape, "tensor m is float32"),
    "other-format": (_other_format, "not an explorer attention trace"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_trace_files_are_refused_with_one_line(llama_trace, tmp_path, case):
    good = save_trace(llama_trace, tmp_path / "good.safetensors")
    make, fragment = MALFORMED[case]
    path = tmp_path / f"{case}.safetensors"
    if make is not None:
        make(path, good)
    with pytest.raises(ExplorerError) as info:
        load_trace(path)
    message = str(info.value)
    assert "\n" not in message and fragment in message, message


def test_cli_json(model_dirs, tmp_path):
    out = tmp_path / "cli.safetensors"
    args = ["attention", "--model", str(model_dirs["qwen3"]), "--prompt", PROMPT, "--layer", "1", "--head", "3"]
    args += ["--block-m", "16", "--block-n", "16", "--out", str(out), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "explorer", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    for key in ("backend", "n", "head_dim", "tiles_visited", "tiles_skipped", "max_abs_error", "sdpa_max_abs_error"):
        assert key in summary, key
    assert summary["backend"] in ("triton", "torch") and summary["head_dim"] == 16
    assert summary["tiles_visited"] + summary["tiles_skipped"] == math.ceil(summary["n"] / 16) ** 2
    assert summary["model_max_abs_diff"] <= 1e-5 and summary["out"] == str(out)
    assert load_trace(out).meta.head == 3


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--layer", "2", "--head", "0"], "layer 2 is out of range"),
        (["--layer", "-1", "--head", "0"], "--layer must be an integer in 0..255 (got -1)"),
        (["--layer", "0", "--head", "4"], "head 4 is out of range"),
        (["--layer", "0", "--head", "0", "--block-m", "24"], "--block-m must be a power of two in 16..256 (got 24)"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(model_dirs, tmp_path, capsys, extra, fragment):
    out = tmp_path / "never.safetensors"
    code = main(["attention", "--model", str(model_dirs["llama"]), "--prompt", PROMPT, "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("explorer: error:") and fragment in err, err
    assert not out.exists()


def test_prompt_longer_than_the_context_is_refused(models):
    with pytest.raises(ExplorerError, match="longer than .* context of 64 tokens"):
        trace_attention(models["llama"], PROMPT * 3, layer=0, head=0)


# ---------------------------------------------------------------- the typed metadata


def test_trace_metadata_is_written_with_todays_keys_in_todays_order(llama_trace, tmp_path):
    from safetensors import safe_open

    path = save_trace(llama_trace, tmp_path / "keys.safetensors")
    with safe_open(str(path), framework="numpy") as f:
        written = json.loads(f.metadata()["explorer_trace"])
    assert list(written) == [
        "format", "version", "model", "model_name", "model_type", "model_dtype", "prompt", "prompt_ids", "tokens",
        "layer", "head", "kv_head", "num_layers", "num_heads", "num_kv_heads", "n", "head_dim", "scale", "block_m",
        "block_n", "n_q_blocks", "n_kv_blocks", "causal", "mask", "dtype", "backend", "device", "tiles_total",
        "tiles_visited", "tiles_skipped", "tiles_masked", "reference", "max_abs_error", "sdpa_max_abs_error",
        "error_ratio", "within_2x_sdpa", "model_max_abs_diff", "kernel_seconds", "capture_seconds",
    ]  # fmt: skip
    assert written["format"] == "explorer-attention-trace" and written["version"] == 1
    assert list(llama_trace.summary()) == [k for k in written if k not in ("prompt_ids", "tokens")]


def test_trace_files_written_before_are_read(llama_trace, tmp_path):
    """A file without a version and with only the required facts (an older writer) loads; what it lacks takes
    the defaults, and keys this version does not know are left out."""
    from explorer.attention.meta import REQUIRED, TraceMeta

    full = llama_trace.meta.as_dict()
    old = {"format": full["format"], **{k: full[k] for k in REQUIRED}, "scale": full["scale"], "retired": 1}
    path = tmp_path / "old.safetensors"
    save_file(llama_trace.tensors(), str(path), metadata={"explorer_trace": json.dumps(old)})
    back = load_trace(path)
    assert isinstance(back.meta, TraceMeta) and back.meta.version == 1
    assert back.meta.layer == 1 and back.meta.head == 3 and back.meta.n == llama_trace.n
    assert back.meta.tokens == [] and back.meta.prompt == "" and back.meta.mask == "causal"
    assert back.meta.model_max_abs_diff is None and back.meta.kernel_seconds is None
    assert "retired" not in back.meta.as_dict()
    from explorer.attention.walk import build_walk

    assert len(build_walk(back).steps()) == int((back.tile_state > 0).sum())  # drawable as it is


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"version": 2}, "trace format version 2 is not supported (max 1)"),
        ({"version": "1"}, "trace format version '1' is not supported"),
        ({"block_m": "sixteen"}, "must be integers"),
        ({"n": 0}, "must be positive"),
    ],
)
def test_trace_metadata_reader_refuses_with_one_line(llama_trace, change, fragment):
    from explorer.attention.meta import TraceMeta

    with pytest.raises(ExplorerError) as info:
        TraceMeta.from_dict(dict(llama_trace.meta.as_dict(), **change), where="t.safetensors")
    assert str(info.value).startswith("t.safetensors: ") and fragment in str(info.value)
    without = {k: v for k, v in llama_trace.meta.as_dict().items() if k != "head_dim"}
    with pytest.raises(ExplorerError, match="the trace metadata lacks head_dim"):
        TraceMeta.from_dict(without)


def test_attention_job_is_the_cli_computation(model_dirs, models):
    """The runner the view and the recorder use traces what ``explorer attention`` traces, and fills its meta."""
    from explorer.attention.job import AttentionRun, attention_job
    from explorer.jobs import run_job
    from explorer.session import Session

    session = Session(target_dir=model_dirs["llama"], draft_dir=None, prompt=PROMPT, device="cpu")
    session.target = models["llama"]
    values = dict(layer=1, head=3, block_m=16, block_n=16, causal=True, dtype="float32", backend="torch", length=0)
    job = run_job("attention", session, values)
    assert isinstance(job.meta, AttentionRun) and job.meta.walk is None and job.meta.trace is None
    steps = list(job.records())
    assert job.meta.walk is steps[0].walk and job.meta.trace.tiles_visited == len(steps)
    direct = trace_attention(models["llama"], PROMPT, 1, 3, block_m=16, block_n=16, backend="torch")
    np.testing.assert_array_equal(steps[0].walk.trace.m, direct.m)
    assert job.meta.trace.prompt_ids == direct.meta.prompt_ids
    with pytest.raises(ExplorerError, match="lacks the value"):
        attention_job(session, {"layer": 1})
