"""The options of tracing one attention head (``explorer attention``, the attention view)."""

from __future__ import annotations

from ..models.options import DTYPE_NAMES
from ..options import Option, Schema

BACKENDS = ("sdpa", "triton", "torch-tiled")  # what the model can plug in as its attention
KERNELS = ("auto", "triton", "torch")  # what traces one head: the Triton kernel, its torch twin, or the best one here

ATTENTION = Schema(
    "attention",
    [
        # Layer 3, head 1 of the demo target: sharp scores, big jumps of the running max.
        Option("layer", int, 3, "layer to trace", lo=0, hi=255, label="Layer"),
        Option("head", int, 1, "query head (its KV head follows from GQA)", lo=0, hi=255, label="Head"),
        Option("block_m", int, 64, "query rows per tile", lo=16, hi=256, power_of_two=True, label="Block M"),
        Option("block_n", int, 64, "keys per tile", lo=16, hi=256, power_of_two=True, label="Block N"),
        Option("causal", bool, True, "the model's own mask (causal, or its sliding window); off: every query sees "
               "every key", label="causal"),  # fmt: skip
        Option("dtype", str, "float32", "dtype of the model and of the kernel's inputs (accumulation is float32)",
               choices=DTYPE_NAMES, label="Dtype"),  # fmt: skip
        Option("backend", str, "auto", "kernel: the Triton kernel (interpreted on CPU), its torch twin, or auto",
               choices=KERNELS, label="Kernel"),  # fmt: skip
        Option("length", int, 128, "continue the prompt with the model's own greedy tokens up to this length before "
               "tracing, so that the walk spans several tiles (0, or a longer prompt: the prompt alone)",
               lo=0, hi=1024, unit="tokens", label="Length"),  # fmt: skip
        Option("units", str, "natural", "m in natural-log units, or in the kernel's base-2 units (m · log2 e)",
               choices=("natural", "base 2"), display=True, cli=False, label="m units"),  # fmt: skip
        Option("fa4", bool, False, "FlashAttention-4 rescales only when the max grows by more than 8 in log2 units",
               display=True, cli=False, label="FA-4 rescaling (τ = 8)"),  # fmt: skip
        Option("unsafe", bool, False, "mark the scores whose exp(s), without the max subtraction, is inf in float16",
               display=True, cli=False, label="unsafe softmax in fp16"),  # fmt: skip
    ],
)

# The view starts from smaller tiles than the command line: more tiles to walk on the demo prompt.
VIEW = ATTENTION.only(list(ATTENTION.options), "attention view", block_m=32, block_n=32)

# The command line traces the prompt as given unless --length asks for more.
CLI = ATTENTION.only([o.name for o in ATTENTION if o.cli], "attention", length=0)
