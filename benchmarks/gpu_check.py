"""One command for a GPU machine: does the compiled path work, and how fast is it?

    python benchmarks/gpu_check.py                  # on a CUDA machine (under 8 minutes on one GPU)
    python benchmarks/gpu_check.py --dry-run        # the same script on the CPU, small sizes (CI runs this)
    python benchmarks/gpu_check.py --compile-only   # cubins for sm_80/86/89/90 without a GPU, shared memory each

The full run: the ``gpu``-marked tests; the untraced kernel's TFLOP/s against torch SDPA for N = 1k..16k and the
cost of tracing; generate and speculate tokens/s (demo pair, and SmolLM2 when it can be had) in bf16; a screenshot
of every view; a markdown and a JSON report in --out. ``--compile-only`` compiles the FlashAttention kernel for
every dtype, head_dim and block size the app offers with the launch options the launcher would try, and reports
the shared memory each needs against each architecture's limit: a configuration the launcher would refuse is
listed; the check fails when a compile fails or when the app's default tiles do not fit somewhere.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHS = (80, 86, 89, 90)
DTYPES = ("float16", "bfloat16", "float32")
HEAD_DIMS = (64, 128, 256)
BLOCKS = (16, 32, 64, 128)  # square tiles; the view defaults to 32x32, the CLI and the model backend to 64x64
DEFAULT_BLOCKS = (32, 64)


def fa_module():
    return importlib.import_module("explorer.kernels.flash_attention")  # the package re-exports a function


# ---------------------------------------------------------------- compile-only


def compile_config(arch: int, dtype: str, head_dim: int, block: int, trace: bool) -> dict:
    """Compile for ``arch`` with each launch option the launcher would try; the first that fits is its choice."""
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fa = fa_module()
    fn = fa._flash_fwd
    ptr = {"float32": "*fp32", "float16": "*fp16", "bfloat16": "*bf16"}[dtype]
    constants = fa.kernel_constants(getattr(torch, dtype), block, block, head_dim, causal=True, has_mask=False,
                                    trace=trace)  # fmt: skip
    ints = {"H", "GROUP", "T", "S", "D", "N_Q_BLOCKS", "N_KV_BLOCKS"}
    signature = {}
    for name in fn.arg_names:
        if name in constants:
            signature[name] = "constexpr"
        elif name in ("Q", "K", "V", "Out"):
            signature[name] = ptr
        elif name in ("LSE", "TRACE_M", "TRACE_L", "TRACE_A"):
            signature[name] = "*fp32"
        elif name in ("MASK", "TILE_STATE"):
            signature[name] = "*i8"
        elif name == "qk_scale":
            signature[name] = "fp32"
        else:
            assert name in ints or name.startswith("stride_"), name
            signature[name] = "i32"
    limit = fa.SHARED_MEMORY_LIMITS[arch]
    tried = []
    for options in fa.launch_options(head_dim):
        t0 = time.perf_counter()
        kernel = triton.compile(ASTSource(fn, signature, constexprs=constants), target=GPUTarget("cuda", arch, 32),
                                options=dict(options))  # fmt: skip
        shared = int(kernel.metadata.shared)
        tried.append(dict(options, shared=shared, seconds=round(time.perf_counter() - t0, 2)))
        if shared <= limit:
            return dict(arch=arch, dtype=dtype, head_dim=head_dim, block=block, trace=trace, fits=True,
                        chosen=options, shared=shared, limit=limit, tried=tried)  # fmt: skip
    return dict(arch=arch, dtype=dtype, head_dim=head_dim, block=block, trace=trace, fits=False, chosen=None,
                shared=tried[-1]["shared"], limit=limit, tried=tried)  # fmt: skip


def compile_only(args) -> dict:
    os.environ["TRITON_INTERPRET"] = "0"  # the real compiler, not the interpreter (set before triton is imported)
    rows, errors = [], []
    t0 = time.perf_counter()
    for arch in args.archs:
        for dtype in args.dtypes:
            for hd in args.head_dims:
                for block in args.blocks:
                    for trace in (True, False) if not args.traced_only else (True,):
                        try:
                            row = compile_config(arch, dtype, hd, block, trace)
                        except Exception as exc:  # noqa: BLE001 - every failure is reported, then fails the check
                            errors.append(f"sm_{arch} {dtype} d={hd} {block}x{block} trace={trace}: {exc}")
                            continue
                        rows.append(row)
                        shown = "fits" if row["fits"] else "REFUSED"
                        print(f"sm_{arch} {dtype:8s} d={hd:3d} {block:3d}x{block:<3d} trace={trace!s:5s} "
                              f"{row['shared'] / 1024:7.1f} KB of {row['limit'] / 1024:.0f} KB  {shown}"
                              f"{'  stages=' + str(row['chosen']['num_stages']) if row['fits'] else ''}",
                              flush=True)  # fmt: skip
    bad_defaults = [r for r in rows if not r["fits"] and r["block"] in DEFAULT_BLOCKS and r["dtype"] != "float32"]
    return dict(rows=rows, errors=errors, refused=[r for r in rows if not r["fits"]], bad_defaults=bad_defaults,
                seconds=time.perf_counter() - t0, ok=not errors and not bad_defaults)  # fmt: skip


# ---------------------------------------------------------------- the full check (GPU, or the CPU in dry mode)


def run_gpu_tests(dry: bool) -> dict:
    where = ROOT / "tests" / ("test_gpu_check.py" if dry else "")  # dry: skip collecting the whole suite
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(where)]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    tail = (run.stdout.strip().splitlines() or [""])[-1]
    return dict(returncode=run.returncode, summary=tail, seconds=time.perf_counter() - t0,
                ok=run.returncode in (0, 5))  # fmt: skip


def bench_kernel(device: str, sizes: list[int], dtype_name: str) -> list[dict]:
    """Untraced FlashAttention (our kernel) against torch SDPA, causal, 8 heads of 128; and the traced overhead."""
    import torch
    import torch.nn.functional as F

    from explorer.kernels.tiled_torch import tiled_attention

    fa = fa_module()
    dtype = getattr(torch, dtype_name)
    use_triton = device.startswith("cuda") and fa.triton_available()
    kernel = fa.flash_attention if use_triton else tiled_attention
    rows = []
    for n in sizes:
        heads, d = (8, 128) if device.startswith("cuda") else (2, 64)
        q, k, v = (torch.randn(1, heads, n, d, device=device, dtype=dtype) for _ in range(3))

        def timed(fn, repeat=3):
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return (time.perf_counter() - t0) / repeat

        qkv = (q, k, v)
        with torch.no_grad():
            ours = timed(lambda qkv=qkv: kernel(*qkv, causal=True, trace=False))
            traced = timed(lambda qkv=qkv: kernel(*qkv, causal=True, trace=True), repeat=1)
            sdpa = timed(lambda qkv=qkv: F.scaled_dot_product_attention(*qkv, is_causal=True))
        flops = 2 * 2 * heads * n * n * d / 2  # causal: half of QK^T and PV
        rows.append(dict(n=n, kernel="triton" if use_triton else "torch-tiled", dtype=dtype_name,
                         tflops=flops / ours / 1e12, sdpa_tflops=flops / sdpa / 1e12,
                         trace_overhead=traced / ours))  # fmt: skip
    return rows


def bench_models(device: str, dtype: str, new_tokens: int, smollm: bool) -> list[dict]:
    import torch

    from explorer.models.checkpoint import default_model_dirs, load_model
    from explorer.models.generate import generate
    from explorer.speculative.engine import run_speculation
    from explorer.speculative.records import SpecOptions

    dirs = default_model_dirs()
    pairs = [("demo pair", dirs["target"], dirs["draft"])]
    if smollm:
        from explorer.errors import ExplorerError
        from explorer.models.smollm import fetch_smollm

        try:
            pairs.append(("SmolLM2-135M-Instruct Q4_1", fetch_smollm(), None))
        except ExplorerError as exc:
            print(f"SmolLM2 skipped: {exc}")
    rows = []
    for name, target_path, draft_path in pairs:
        target = load_model(target_path, dtype=dtype, device=device)
        draft = load_model(draft_path, dtype=dtype, device=device) if draft_path else None
        ids = target.encode("def fibonacci(n):\n    ")
        generate(target, ids, 4, stop_at_eos=False)
        t0 = time.perf_counter()
        n = len(generate(target, ids, new_tokens, stop_at_eos=False))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        gen_tps = n / (time.perf_counter() - t0)
        opt = SpecOptions(method="chain" if draft is not None else "lookup", stop_at_eos=False)
        stats = run_speculation(target, draft, ids, new_tokens, opt, runs=1).stats
        rows.append(dict(model=name, device=device, dtype=dtype, generate_tokens_per_s=gen_tps,
                         speculate_method=opt.method, speculate=stats))  # fmt: skip
    return rows


def screenshots(device: str, out: Path, size: tuple[int, int]) -> list[str]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from explorer.session import Session
    from explorer.ui.app import screenshot

    session = Session(device=device)
    files = []
    for view in ("generate", "attention", "speculative", "amp"):
        path = out / f"{view}.png"
        settings = {"amp": {"steps": 3}, "generate": {"max_new": 12}, "speculative": {"max_new": 12}}.get(view, {})
        screenshot(session, view, path, size, settings=settings)
        files.append(str(path))
    return files


def full_check(args) -> dict:
    import torch

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; use --dry-run (CPU) or --compile-only")
    device = "cpu" if dry else "cuda"
    report: dict = dict(
        mode="dry-run (CPU)" if dry else "GPU", device=device, python=platform.python_version(),
        torch=torch.__version__, gpu=torch.cuda.get_device_name() if not dry else None,
    )  # fmt: skip
    t0 = time.perf_counter()
    report["gpu_tests"] = run_gpu_tests(dry)
    report["kernel"] = bench_kernel(device, [128, 256] if dry else [1024, 2048, 4096, 8192, 16384],
                                    "float32" if dry else "bfloat16")  # fmt: skip
    report["models"] = bench_models(device, "float32" if dry else "bfloat16", 8 if dry else 128, smollm=not dry)
    report["screenshots"] = screenshots(device, args.out, (640, 360) if dry else (1920, 1080))
    report["seconds"] = time.perf_counter() - t0
    report["ok"] = report["gpu_tests"]["ok"]
    return report


def markdown(report: dict) -> str:
    lines = [f"# gpu_check: {report.get('mode', 'compile-only')}", ""]
    if "rows" in report:
        lines += ["| arch | dtype | head_dim | tiles | traced | shared KB | limit KB | launcher |", "|---" * 8 + "|"]
        for r in report["rows"]:
            chosen = f"{r['chosen']['num_stages']} stage(s)" if r["fits"] else "refuses"
            lines.append(f"| sm_{r['arch']} | {r['dtype']} | {r['head_dim']} | {r['block']}x{r['block']} | "
                         f"{r['trace']} | {r['shared'] / 1024:.1f} | {r['limit'] / 1024:.0f} | {chosen} |")  # fmt: skip
        lines += ["", f"errors: {len(report['errors'])}; refused: {len(report['refused'])}; "
                  f"{report['seconds']:.0f} s"]  # fmt: skip
        return "\n".join(lines) + "\n"
    lines += [f"device: {report['device']} {report.get('gpu') or ''}, torch {report['torch']}", "",
              f"gpu tests: {report['gpu_tests']['summary']}", "",
              "| N | kernel | dtype | TFLOP/s | SDPA TFLOP/s | traced / untraced |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["kernel"]:
        lines.append(f"| {r['n']} | {r['kernel']} | {r['dtype']} | {r['tflops']:.3g} | {r['sdpa_tflops']:.3g} | "
                     f"{r['trace_overhead']:.2f}x |")  # fmt: skip
    lines += ["", "| model | dtype | generate tokens/s | speculate |", "|---|---|---|---|"]
    for r in report["models"]:
        st = r["speculate"]
        tps, speedup = st.get("tokens_per_s") or 0, st.get("speedup") or 0
        spec = f"{r['speculate_method']}: {tps:.1f} tokens/s, speedup {speedup:.2f}x"
        lines.append(f"| {r['model']} | {r['dtype']} | {r['generate_tokens_per_s']:.1f} | {spec} |")
    lines += ["", "screenshots: " + ", ".join(Path(f).name for f in report["screenshots"]),
              f"total: {report['seconds']:.0f} s"]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = {"gpu_check.json": json.dumps(report, indent=1, default=str), "gpu_check.md": markdown(report)}
    for name, text in files.items():
        tmp = out / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="run the same checks on the CPU with small sizes")
    mode.add_argument("--compile-only", action="store_true", help="compile cubins for --archs without a GPU")
    p.add_argument("--archs", type=ints, default=list(ARCHS), help="compute capabilities, e.g. 80,86,89,90")
    p.add_argument("--dtypes", type=lambda s: s.split(","), default=list(DTYPES))
    p.add_argument("--head-dims", type=ints, default=list(HEAD_DIMS))
    p.add_argument("--blocks", type=ints, default=list(BLOCKS), help="square tile sizes")
    p.add_argument("--traced-only", action="store_true", help="compile only the TRACE variant")
    p.add_argument("--out", type=Path, default=Path("gpu_check_report"), help="report directory")
    args = p.parse_args(argv)
    report = compile_only(args) if args.compile_only else full_check(args)
    write_report(report, args.out)
    print(markdown(report) if not args.compile_only else "", end="")
    print(f"gpu_check: {'OK' if report['ok'] else 'FAILED'}; report in {args.out}/gpu_check.md")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
