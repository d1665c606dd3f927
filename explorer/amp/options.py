"""The options of mixed-precision training steps (``explorer amp``, the loss-scaling view)."""

from __future__ import annotations

from ..models.options import SEED
from ..options import Option, Schema

POLICIES = ("torch", "deepspeed", "megatron", "static", "none")
AMP_DTYPE_NAMES = ("float16", "bfloat16")
GRADS = ("parameter gradients", "activation gradients")
MAX_SCALE_LOG2 = 64  # far beyond any useful loss scale, and still finite in fp32


def _open_unit(value: float) -> str | None:
    return None if 0 < value < 1 else f"must be a number above 0 and below 1 (got {value:g})"


AMP = Schema(
    "amp",
    [
        Option("policy", str, "torch", "loss scaler: torch (torch.amp.GradScaler itself), deepspeed, megatron, static, "
               "none", choices=POLICIES, label="Scaler"),  # fmt: skip
        Option("dtype", str, "float16", "autocast dtype", choices=AMP_DTYPE_NAMES, label="Autocast"),
        Option("init_scale_log2", int, None, "initial loss scale as a power of two (default: the policy's own: 2^16; "
               "megatron 2^32; none 2^0)", lo=0, hi=MAX_SCALE_LOG2, none=True, label="Init scale 2^"),  # fmt: skip
        Option("init_scale", float, None, "initial loss scale (instead of --init-scale-log2)", lo=0, lo_open=True,
               hi=2.0**MAX_SCALE_LOG2, none=True, panel=False),  # fmt: skip
        Option("growth_interval", int, None, "clean steps before the scale grows (default: the policy's own: torch "
               "2000, deepspeed/megatron 1000)", lo=1, hi=100000, none=True, label="Growth interval"),  # fmt: skip
        Option("steps", int, 20, "training steps", lo=1, hi=2000, label="Steps"),
        Option("spike_step", int, 0, "multiply the loss by the spike factor at this step, counted from 1 as on screen "
               "(0: never)", lo=0,
               hi=2000, special="none", label="Spike at step"),  # fmt: skip
        Option("spike_factor", float, 1e6, "loss spike factor", lo=1.0, hi=1e38, decimals=0, label="Spike factor"),
        SEED,
        Option("reference", bool, True, "fp32 reference: also run an fp32 backward of the same batch each step to "
               "count the gradient values the fp16 backward lost to zero (about one more step's time)",
               label="fp32 reference gradients"),  # fmt: skip
        Option("grads", str, GRADS[0], "which gradients the histogram shows", choices=GRADS, display=True,
               cli=False, label="Show"),  # fmt: skip
        Option("growth_factor", float, 2.0, "scale growth factor", lo=1.0, hi=1024.0, panel=False),
        Option("backoff_factor", float, 0.5, "scale backoff factor on overflow", flag="--backoff", lo=0.0, hi=1.0,
               panel=False, check_fn=_open_unit),  # fmt: skip
        Option("hysteresis", int, 2, "deepspeed/megatron: overflows tolerated before a backoff", lo=1, hi=1000,
               panel=False),  # fmt: skip
        Option("min_scale", float, 1.0, "deepspeed/megatron minimum scale", lo=0, lo_open=True,
               hi=2.0**MAX_SCALE_LOG2, panel=False),  # fmt: skip
        Option("lr", float, 1e-4, "AdamW learning rate", lo=0.0, hi=10.0, panel=False),
        Option("batch", int, 2, "sequences per step", lo=1, hi=1024, panel=False),
        Option("seq_len", int, 32, "tokens per sequence", lo=2, hi=65536, panel=False),
        Option("train_layers", int, 0, "train only the last N decoder layers and the final norm (the rest frozen: no "
               "gradients, no optimizer state, so 1B models fit); 0 = the whole model", lo=0, hi=1024,
               special="all", label="Train last layers"),  # fmt: skip
    ],
)

# The view: GradScaler's rule made visible in a couple of dozen steps: from GradScaler's own default scale 2^16 it
# finds its level (halving on overflow) and grows every 4 clean steps (GradScaler's 2000 would never show growth).
VIEW = AMP.only(
    ["policy", "dtype", "init_scale_log2", "growth_interval", "steps", "spike_step", "spike_factor", "seed",
     "reference", "grads", "train_layers"],
    "amp view", init_scale_log2=16, growth_interval=4, steps=24,
)  # fmt: skip
