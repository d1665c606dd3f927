"""The FlashAttention kernel (Triton, interpreted on CPU) and its tiled torch twin: outputs against float64
attention, the traced online-softmax state against a numpy recomputation from the definitions, loop bounds, masks,
GQA, dtypes, and the model running on both backends. Shapes are tiny: the interpreter runs in numpy."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from explorer.attention.backends import BACKENDS, available_backends
from explorer.kernels import attention_trace, flash_attention, runs_interpreted, tiled_attention, triton_available

needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not importable")
IMPLS = [
    pytest.param(flash_attention, id="triton", marks=needs_triton),
    pytest.param(tiled_attention, id="torch"),
]


def qkv(B, H, Hkv, T, S, D, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g)
    k = torch.randn(B, Hkv, S, D, generator=g)
    v = torch.randn(B, Hkv, S, D, generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def allowed_matrix(T, S, causal, mask):
    """bool [.., T, S]: what each query may see (causal bottom-right aligned: query i sees keys <= S - T + i)."""
    allowed = torch.ones(T, S, dtype=torch.bool)
    if causal:
        allowed = torch.arange(S)[None, :] <= S - T + torch.arange(T)[:, None]
    if mask is not None:
        allowed = allowed & mask
    return allowed


def reference(q, k, v, causal=False, mask=None, scale=None):
    """Plain float64 softmax attention; a row that sees nothing gives 0."""
    q, k, v = q.double(), k.double(), v.double()
    H, Hkv, T, S, D = q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3]
    k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
    s = q @ k.transpose(-1, -2) * (D**-0.5 if scale is None else scale)
    s = s.masked_fill(~allowed_matrix(T, S, causal, mask), float("-inf"))
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v), torch.logsumexp(s, -1)


def random_mask(T, S, seed=1, lead=()):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(*lead, T, S, generator=g) < 0.6
    m[..., 3, :] = False  # a row that sees nothing
    m[..., 5, : S // 2] = False  # a row whose first tiles are entirely masked (the NaN trap)
    return m


CASES = [
    # name, B, H, Hkv, T, S, D, causal, mask-kind, block_m, block_n
    ("full", 1, 2, 2, 37, 53, 40, False, None, 16, 32),
    ("causal-square", 1, 2, 2, 48, 48, 16, True, None, 16, 16),
    ("causal-bottom-right", 2, 2, 1, 21, 70, 64, True, None, 16, 32),
    ("causal-decode", 1, 2, 2, 1, 45, 16, True, None, 16, 16),
    ("mask-TS", 1, 2, 2, 33, 47, 16, False, "ts", 16, 16),
    ("mask-B1TS", 2, 2, 2, 19, 19, 40, False, "b1ts", 32, 16),
    ("gqa-odd", 1, 6, 2, 45, 61, 40, False, None, 32, 32),
    ("d100-causal", 1, 2, 1, 20, 33, 100, True, None, 16, 16),
]


def make_case(case, dtype=torch.float32):
    _, B, H, Hkv, T, S, D, causal, mask_kind, bm, bn = case
    q, k, v = qkv(B, H, Hkv, T, S, D, dtype)
    mask = None
    if mask_kind == "ts":
        mask = random_mask(T, S)
    elif mask_kind == "b1ts":
        mask = random_mask(T, S, lead=(B, 1))
    return q, k, v, dict(causal=causal, mask=mask, block_m=bm, block_n=bn)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_output_matches_float64(impl, case):
    q, k, v, kw = make_case(case)
    res = impl(q, k, v, **kw)
    ref_o, ref_lse = reference(q, k, v, kw["causal"], kw["mask"])
    assert res.o.dtype == q.dtype and res.o.shape == q.shape and res.lse.shape == q.shape[:3]
    torch.testing.assert_close(res.o.double(), ref_o, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(res.lse.double(), ref_lse, atol=2e-6, rtol=1e-5)  # -inf where a row sees nothing


@needs_triton
def test_sdpa_agrees_and_strided_inputs():
    """Non-contiguous q/k/v (the model's transposed views) and torch SDPA as a second reference."""
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 29, 2, 64, generator=g).transpose(1, 2)
    k = torch.randn(1, 29, 2, 64, generator=g).transpose(1, 2)
    v = torch.randn(1, 29, 2, 64, generator=g).transpose(1, 2)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    res = flash_attention(q, k, v, causal=True, block_m=16, block_n=16)
    torch.testing.assert_close(res.o, sdpa, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_low_precision(impl, dtype):
    """Tri Dao's criterion: |O_flash(low) − O(fp64)| within ~2× of |O_sdpa(low) − O(fp64)|."""
    q, k, v = qkv(1, 2, 1, 40, 56, 64, dtype, seed=4)
    res = impl(q, k, v, causal=True, block_m=16, block_n=32)
    assert res.o.dtype == dtype and res.lse.dtype == torch.float32
    ref, _ = reference(q, k, v, causal=True)
    mask = allowed_matrix(40, 56, True, None)
    low = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    err_flash = (res.o.double() - ref).abs().max().item()
    err_low = (low.double() - ref).abs().max().item()
    assert err_flash <= 2 * err_low + 1e-3, (err_flash, err_low)


def numpy_trace(q, k, v, causal, mask, block_m, block_n):
    """m, l, alpha, tile_state from the definitions, in float64: visit each Q block's tiles left to right, skipping
    a tile only when causal attention hides all of it; m is the running max of s = q·kᵀ/√D (0 until a row has
    seen an unmasked key), alpha = exp(m_before − m_after) with m_before = −inf before the first key."""
    q, k, v = (t.double().numpy() for t in (q, k, v))
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    nq, nk = math.ceil(T / block_m), math.ceil(S / block_n)
    causal_ok = allowed_matrix(T, S, causal, None).numpy()
    full_ok = np.broadcast_to(allowed_matrix(T, S, causal, mask).numpy(), (B, H, T, S))
    out = {name: np.full((B, H, nq, nk, block_m), np.nan) for name in ("m", "l", "alpha")}
    state = np.zeros((B, H, nq, nk), dtype=np.int8)
    for b in range(B):
        for h in range(H):
            s_all = q[b, h] @ k[b, h // (H // Hkv)].T / math.sqrt(D)
            for i in range(nq):
                rows = slice(i * block_m, min((i + 1) * block_m, T))
                n = rows.stop - rows.start
                m_true = np.full(n, -np.inf)
                l = np.zeros(n)  # noqa: E741
                for j in range(nk):
                    cols = slice(j * block_n, min((j + 1) * block_n, S))
                    if not causal_ok[rows, cols].any():
                        continue
                    ok = full_ok[b, h, rows, cols]
                    state[b, h, i, j] = 1 if ok.all() else 2
                    s = np.where(ok, s_all[rows, cols], -np.inf)
                    m_new = np.maximum(m_true, s.max(1))
                    m_use = np.where(np.isneginf(m_new), 0.0, m_new)
                    alpha = np.exp(m_true - m_use)
                    l = l * alpha + np.exp(s - m_use[:, None]).sum(1)  # noqa: E741
                    m_true = m_new
                    out["m"][b, h, i, j, :n], out["l"][b, h, i, j, :n], out["alpha"][b, h, i, j, :n] = m_use, l, alpha
    return out, state


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_trace_matches_numpy(impl, case):
    q, k, v, kw = make_case(case)
    res = impl(q, k, v, trace=True, **kw)
    want, state = numpy_trace(q, k, v, kw["causal"], kw["mask"], kw["block_m"], kw["block_n"])
    np.testing.assert_array_equal(res.tile_state.numpy(), state)
    for name in ("m", "l", "alpha"):
        got = getattr(res, name)
        assert got.dtype == torch.float32 and got.shape == want[name].shape
        np.testing.assert_allclose(got.numpy(), want[name], rtol=2e-5, atol=2e-6, err_msg=name)  # NaNs must match
        assert np.isfinite(got.numpy()[state > 0][..., : q.shape[2]]).any()


@pytest.mark.parametrize("impl", IMPLS)
def test_trace_flag_does_not_change_results(impl):
    q, k, v, kw = make_case(CASES[4])
    plain, traced = impl(q, k, v, **kw), impl(q, k, v, trace=True, **kw)
    assert plain.m is None and plain.tile_state is None
    assert torch.equal(plain.o, traced.o) and torch.equal(plain.lse, traced.lse)


@pytest.mark.parametrize("impl", IMPLS)
def test_fully_masked_rows_give_zero_not_nan(impl):
    q, k, v = qkv(1, 1, 1, 24, 40, 16)
    mask = torch.ones(24, 40, dtype=torch.bool)
    mask[2] = False  # nothing visible
    mask[7, :32] = False  # the first two 16-key tiles are empty for this row
    res = impl(q, k, v, mask=mask, block_m=16, block_n=16, trace=True)
    assert torch.isfinite(res.o).all()
    assert torch.equal(res.o[0, 0, 2], torch.zeros(16))
    assert res.lse[0, 0, 2] == float("-inf") and torch.isfinite(res.lse[0, 0, 7])
    m = res.m[0, 0, 0]  # Q block 0, every tile visited
    assert torch.isfinite(m).all() and torch.isfinite(res.l[0, 0, 0]).all()
    assert (m[:, 2] == 0).all() and (res.l[0, 0, 0, :, 2] == 0).all()  # FA2: a −inf max is reported as 0
    assert (m[:2, 7] == 0).all() and m[2, 7] != 0
    ref, _ = reference(q, k, v, mask=mask)
    torch.testing.assert_close(res.o.double(), ref, atol=2e-6, rtol=1e-5)

    # causal with T > S: the first T − S queries see no key at all
    q, k, v = qkv(1, 1, 1, 30, 20, 16)
    res = impl(q, k, v, causal=True, block_m=16, block_n=16)
    assert torch.isfinite(res.o).all() and torch.equal(res.o[0, 0, :10], torch.zeros(10, 16))
    torch.testing.assert_close(res.o.double(), reference(q, k, v, causal=True)[0], atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_causal_skips_tiles_above_the_diagonal(impl):
    q, k, v = qkv(1, 1, 1, 64, 64, 16)
    st = impl(q, k, v, causal=True, block_m=16, block_n=16, trace=True).tile_state[0, 0]
    expect = torch.ones(4, 4, dtype=torch.int8).tril(-1) + 2 * torch.eye(4, dtype=torch.int8)
    assert torch.equal(st, expect)  # above: 0 (never visited), diagonal: 2 (masked), below: 1 (no mask)
    res = impl(q, k, v, causal=True, block_m=16, block_n=16, trace=True)
    assert res.m[0, 0, 0, 1:].isnan().all()  # nothing is stored for tiles never visited
    full = impl(q, k, v, block_m=16, block_n=16, trace=True).tile_state
    assert (full == 1).all()


@needs_triton
@pytest.mark.parametrize(
    "case, dtype",
    [(CASES[2], torch.float32), (CASES[4], torch.float32), (CASES[6], torch.bfloat16), (CASES[1], torch.float16)],
    ids=["causal-bottom-right", "mask", "gqa-bf16", "causal-fp16"],
)
def test_triton_and_torch_agree(case, dtype):
    q, k, v, kw = make_case(case, dtype)
    a = flash_attention(q, k, v, trace=True, **kw)
    b = tiled_attention(q, k, v, trace=True, **kw)
    assert (a.backend, b.backend) == ("triton", "torch")
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(a.o, b.o, **tol)
    torch.testing.assert_close(a.lse, b.lse, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.tile_state, b.tile_state)
    for name in ("m", "l", "alpha"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-5, rtol=1e-5, equal_nan=True)


def test_dispatcher():
    q, k, v = qkv(1, 1, 1, 20, 20, 16)
    res = attention_trace(q, k, v, causal=True, block_m=16, block_n=16, backend="torch")
    assert res.backend == "torch" and res.tile_state is not None
    auto = attention_trace(q, k, v, causal=True, block_m=16, block_n=16)
    assert auto.backend == ("triton" if triton_available() else "torch")
    torch.testing.assert_close(auto.o, res.o, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        attention_trace(q, k, v, backend="cuda")
    with pytest.raises(ValueError):
        tiled_attention(q, k[:, :, :, :8], v)
    assert ("triton" in available_backends()) == triton_available()
    if triton_available():
        assert runs_interpreted() == (not torch.cuda.is_available())


def test_imports_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch\n"
        "from explorer.kernels.flash_attention import attention_trace, triton_available, runs_interpreted\n"
        "from explorer.attention.backends import available_backends\n"
        "assert not triton_available() and not runs_interpreted()\n"
        "assert available_backends() == ['sdpa', 'torch-tiled'], available_backends()\n"
        "q = torch.randn(1, 1, 20, 16)\n"
        "assert attention_trace(q, q, q, causal=True, block_m=16, block_n=16).backend == 'torch'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


@pytest.mark.parametrize("name", [pytest.param("triton", marks=needs_triton), "torch-tiled"])
@torch.no_grad()
def test_model_logits_match_sdpa(model, name):
    ids = torch.randint(0, 97, (1, 23), generator=torch.Generator().manual_seed(5))
    tree = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=torch.bool)  # two children of one token

    def run():
        out = [model(ids)]
        cache = model.new_cache(48)
        out.append(model(ids[:, :18], cache=cache))  # prefill
        out += [model(ids[:, i : i + 1], cache=cache) for i in range(18, 20)]  # decode: T = 1, S > T
        out.append(model(ids[:, 20:23], cache=cache, mask=tree))  # tree verification: explicit [1, 1, 3, 23] mask
        return out

    model.attention = BACKENDS["sdpa"]
    want = run()
    try:
        model.attention = BACKENDS[name]
        got = run()
    finally:
        model.attention = BACKENDS["sdpa"]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=0)
