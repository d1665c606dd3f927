"""Cost of the amp engine's instrumentation (without the optional fp32 reference backward, which costs about one
more step: --no-reference): a plain torch.amp.GradScaler training loop vs the instrumented
AmpTrainer (activation-gradient hooks, fp16 band counts and log2 histograms of activation and parameter gradients,
scaled and unscaled) on the same model, same batches, same dtype, alternating steps so that machine noise hits both
alike. Prints a Markdown table; the issue requires <= 25% overhead per step on the demo target (fp16).

    python benchmarks/bench_amp.py [--model DIR] [--steps 6] [--configs float16:2x32,bfloat16:2x32,bfloat16:4x128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from explorer.amp.engine import AmpSettings, AmpTrainer, default_text, sample_batch, text_tokens, trainable_copy
from explorer.models.checkpoint import default_model_dirs, load_model

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class PlainLoop:
    """What a user writes: autocast forward, GradScaler.scale(loss).backward(), step, update."""

    def __init__(self, model, tokens, dtype, batch, seq_len, seed):
        self.model, self.tokens, self.dtype, self.batch, self.seq_len = model, tokens, dtype, batch, seq_len
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
        self.scaler = torch.amp.GradScaler("cpu")
        self.rng = np.random.default_rng(seed)

    def step(self):
        x, y = sample_batch(self.tokens, self.batch, self.seq_len, self.rng)
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=self.dtype):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss.item()


def measure(lm, tokens, dtype: str, batch: int, seq_len: int, steps: int, warmup: int = 2) -> dict:
    plain = PlainLoop(trainable_copy(lm), tokens, DTYPES[dtype], batch, seq_len, seed=0)
    settings = AmpSettings(steps=steps, dtype=dtype, batch=batch, seq_len=seq_len, seed=0, reference=False)
    inst = AmpTrainer(trainable_copy(lm), tokens, settings, instrument=True)
    count_times = []
    count = inst._count

    def timed_count(scale):  # the counting part alone (hooks only stash references)
        t0 = time.perf_counter()
        out = count(scale)
        count_times.append(time.perf_counter() - t0)
        return out

    inst._count = timed_count
    t_plain, t_inst = [], []
    for i in range(warmup + steps):
        for fn, times in ((plain.step, t_plain), (inst.step, t_inst)):
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    inst.close()
    # min over the timed steps: the least-disturbed run of each loop (the machine may be shared)
    p, q = min(t_plain), min(t_inst)
    c = statistics.median(count_times[warmup:])
    return {
        "dtype": dtype,
        "batch": batch,
        "seq_len": seq_len,
        "plain": p,
        "inst": q,
        "overhead": q / p - 1,
        "count": c,
        "plain_median": statistics.median(t_plain),
        "inst_median": statistics.median(t_inst),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(default_model_dirs()["target"]))
    ap.add_argument("--steps", type=int, default=6, help="timed steps per loop (min), after 2 warm-up steps")
    ap.add_argument("--configs", default="float16:2x32,bfloat16:2x32,bfloat16:4x128")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model, dtype="float32", device="cpu")
    tokens = text_tokens(lm.encode, default_text(), 512)
    rows = []
    for cfg in args.configs.split(","):
        dtype, shape = cfg.split(":")
        batch, seq_len = (int(v) for v in shape.split("x"))
        rows.append(measure(lm, tokens, dtype, batch, seq_len, args.steps))
    print(
        f"model: {args.model}  CPU threads: {torch.get_num_threads()}  torch {torch.__version__}  "
        f"timed steps: {args.steps} per loop (min, alternating)"
    )
    print()
    print(
        "| autocast | batch x seq | plain GradScaler ms/step | instrumented ms/step | overhead | steps/s plain | "
        "steps/s instrumented | counting ms/step | medians plain / instr. ms | <= 25% |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['dtype']} | {r['batch']}x{r['seq_len']} | {1000 * r['plain']:.1f} | {1000 * r['inst']:.1f} | "
            f"{100 * r['overhead']:+.1f}% | {1 / r['plain']:.2f} | {1 / r['inst']:.2f} | {1000 * r['count']:.1f} | "
            f"{1000 * r['plain_median']:.0f} / {1000 * r['inst_median']:.0f} | "
            f"{'yes' if r['overhead'] <= 0.25 else 'NO'} |"
        )


if __name__ == "__main__":
    main()
