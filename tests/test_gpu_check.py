"""The GPU path: the compiled kernel against SDPA (``gpu``-marked, run by benchmarks/gpu_check.py on a CUDA
machine), gpu_check's dry run on the CPU, and its compile-only mode (cubins for sm_80 and sm_90 built here)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("heads, kv_heads, d", [(8, 8, 64), (8, 2, 128), (4, 1, 256)])
@pytest.mark.parametrize("causal, masked", [(True, False), (False, True)])
def test_compiled_kernel_matches_sdpa(dtype, heads, kv_heads, d, causal, masked):
    fa = importlib.import_module("explorer.kernels.flash_attention")
    assert not fa.runs_interpreted()
    g = torch.Generator(device="cuda").manual_seed(0)
    T = S = 300  # ragged: not a multiple of the tiles
    q = torch.randn(2, heads, T, d, device="cuda", dtype=dtype, generator=g)
    k, v = (torch.randn(2, kv_heads, S, d, device="cuda", dtype=dtype, generator=g) for _ in range(2))
    mask = torch.rand(T, S, device="cuda", generator=g) > 0.3 if masked else None
    res = fa.flash_attention(q, k, v, causal=causal, mask=mask, block_m=64, block_n=32, trace=True)
    rep = heads // kv_heads
    k64, v64 = (x.double().repeat_interleave(rep, dim=1) for x in (k, v))
    attn_mask = mask
    if causal:
        attn_mask = torch.ones(T, S, dtype=torch.bool, device="cuda").tril(S - T)
    ref = F.scaled_dot_product_attention(q.double(), k64, v64, attn_mask=attn_mask)
    sdpa = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                          attn_mask=attn_mask)  # fmt: skip
    ours_err = (res.o.double() - ref).abs().max().item()
    sdpa_err = (sdpa.double() - ref).abs().max().item()
    assert ours_err <= 2 * sdpa_err + 1e-6, (ours_err, sdpa_err)
    assert torch.isfinite(res.m[res.tile_state > 0].nan_to_num(0)).all()


def test_launch_options_halve_the_pipeline():
    fa = importlib.import_module("explorer.kernels.flash_attention")
    assert [o["num_stages"] for o in fa.launch_options(256)] == [2, 1]
    assert fa.padded_head_dim(40) == 64 and fa.padded_head_dim(8) == 16
    assert fa.SHARED_MEMORY_LIMITS[86] < fa.SHARED_MEMORY_LIMITS[80] < fa.SHARED_MEMORY_LIMITS[90]


def test_dry_run_writes_the_report(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)], capture_output=True,
                         text=True, cwd=ROOT)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] and report["device"] == "cpu"
    assert {r["n"] for r in report["kernel"]} == {128, 256} and all(r["tflops"] > 0 for r in report["kernel"])
    assert report["models"][0]["generate_tokens_per_s"] > 0
    assert sorted(Path(f).name for f in report["screenshots"]) == ["amp.png", "attention.png", "generate.png",
                                                                   "speculative.png"]  # fmt: skip
    assert "| N | kernel" in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.kernel_compile
def test_compile_only_builds_cubins_without_a_gpu(tmp_path):
    """sm_80 and sm_90 cubins of the traced fp16 kernel at head_dim 64, 64x64 tiles (the full matrix is
    ``python benchmarks/gpu_check.py --compile-only``: minutes per configuration on a loaded 2-core machine)."""
    argv = ["--compile-only", "--archs", "80,90", "--dtypes", "float16", "--head-dims", "64", "--blocks", "64",
            "--traced-only", "--out", str(tmp_path)]  # fmt: skip
    run = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["rows"]
    assert [r["arch"] for r in rows] == [80, 90]
    for r in rows:
        assert r["fits"] and r["chosen"]["num_stages"] == 2
        assert 8 * 1024 < r["shared"] < 64 * 1024  # K and V tiles, two stages, fp16
