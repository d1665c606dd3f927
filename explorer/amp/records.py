"""What one mixed-precision training step emits: loss, scale, the scaler's decision and the gradient counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bands import BANDS


@dataclass
class StepRecord:
    """One training step. Per-group arrays have one row per ``AmpTrainer.groups`` entry ("embed", "layers.0", ...,
    "head" = final norm + lm head) and columns ``BANDS`` (counts) or ``HIST_BINS`` (log2|g| counts); ``*_scaled``
    are the gradients as backward produced them (multiplied by ``scale``), ``*_unscaled`` the same divided by it.
    The arrays are None when the trainer runs without instrumentation."""

    step: int
    loss: float  # next-token cross-entropy (before the spike factor)
    loss_factor: float  # the spike factor applied to the loss this step (1.0 normally)
    scale: float  # the loss scale used for this step
    next_scale: float  # the scale after the scaler's update
    found_inf: bool  # inf/NaN in the (scaled) parameter gradients
    skipped: bool  # the optimizer step was skipped
    event: str | None  # "growth", "backoff", "stop" (deepspeed at its minimum) or None
    growth_tracker: int  # clean steps counted toward the next growth, after the update
    hysteresis: int | None  # hysteresis left (deepspeed, megatron)
    first_overflow: str | None  # the module whose output gradient first held inf/NaN or > 65504, in backward order;
    # when no activation gradient did but found_inf, the parameter (name ending in .weight/.bias) whose gradient
    # was first accumulated with inf/NaN (its fp16 weight-gradient GEMM overflowed)
    seconds: float
    act_scaled: np.ndarray | None = None  # [groups, BANDS] activation gradients
    act_unscaled: np.ndarray | None = None
    act_hist_scaled: np.ndarray | None = None  # [groups, N_HIST]
    act_hist_unscaled: np.ndarray | None = None
    param_scaled: np.ndarray | None = None  # [groups, BANDS] parameter gradients
    param_unscaled: np.ndarray | None = None
    param_hist_scaled: np.ndarray | None = None
    param_hist_unscaled: np.ndarray | None = None
    # [groups]: parameter-gradient values that an fp32 backward of the same batch makes non-zero and the fp16
    # backward left exactly zero (lost before loss scaling could help), and that reference's log2|g| histogram
    param_lost: np.ndarray | None = None
    param_hist_reference: np.ndarray | None = None
    module_max: np.ndarray | None = None  # [modules]: max |scaled activation gradient| per hooked module (inf: inf/NaN)

    def to_json(self, groups: list[str] | None = None) -> dict:
        out = {
            k: getattr(self, k)
            for k in (
                "step",
                "loss",
                "loss_factor",
                "scale",
                "next_scale",
                "found_inf",
                "skipped",
                "event",
                "growth_tracker",
                "hysteresis",
                "first_overflow",
                "seconds",
            )
        }
        if self.act_scaled is None:
            return out
        for kind in ("act", "param"):
            for which in ("scaled", "unscaled"):
                arr = getattr(self, f"{kind}_{which}")
                out[f"{kind}_{which}"] = dict(zip(BANDS, arr.sum(0).tolist(), strict=True))
                out[f"{kind}_{which}_by_layer"] = arr.tolist()
                out[f"{kind}_hist_{which}"] = getattr(self, f"{kind}_hist_{which}").sum(0).tolist()
        if self.param_lost is not None:
            out["param_lost"] = int(self.param_lost.sum())
            out["param_lost_by_layer"] = self.param_lost.tolist()
            out["param_hist_reference"] = self.param_hist_reference.sum(0).tolist()
        return out


# ---------------------------------------------------------------- data and model
