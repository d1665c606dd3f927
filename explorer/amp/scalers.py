"""Loss-scaling policies besides torch's own GradScaler (which the trainer uses directly): DeepSpeed's and
Megatron's dynamic scalers with hysteresis, a static scale and none; and each policy's defaults."""

from __future__ import annotations

from ..errors import ExplorerError
from .records import StepRecord


class LossScaleAtMinimum(ExplorerError):
    """DeepSpeed's stop: an overflow with the scale already at its minimum."""

    record: StepRecord | None = None


class ScalePolicy:
    """A loss scaler that is not GradScaler: ``scale`` is used for this step; ``update(found_inf)`` decides, changes
    the scale and returns whether the optimizer step is skipped."""

    name = "?"
    scale: float = 1.0
    growth_tracker: int = 0
    hysteresis: int | None = None

    def update(self, found_inf: bool) -> bool:
        raise NotImplementedError


class DeepSpeedScaler(ScalePolicy):
    """DeepSpeed's ``DynamicLossScaler`` (deepspeed/runtime/fp16/loss_scaler.py, ``update_scale``).

    Every overflow skips the step. With hysteresis left (> 1) an overflow only uses one up; once it is 1, each
    overflow divides the scale (by 1 / backoff), not below ``min_scale`` — and an overflow *at* the minimum raises
    "Current loss scale already at minimum". The scale grows when ``(iteration - last overflow iteration)`` is a
    multiple of ``window``; hysteresis is restored only then (consecutive_hysteresis off, DeepSpeed's default).
    """

    name = "deepspeed"

    def __init__(
        self,
        init_scale=2.0**16,
        growth_factor=2.0,
        backoff_factor=0.5,
        window=1000,
        hysteresis=2,
        min_scale=1.0,
        raise_at_min=True,
    ):
        self.scale, self.growth_factor, self.backoff_factor = float(init_scale), growth_factor, backoff_factor
        self.window, self.delayed_shift, self.min_scale = window, hysteresis, float(min_scale)
        self.raise_at_min = raise_at_min
        self.hysteresis = hysteresis
        self.cur_iter, self.last_overflow_iter = 0, -1

    def update(self, found_inf: bool) -> bool:
        if found_inf:
            if self.delayed_shift == 1 or self.hysteresis == 1:
                if self.scale == self.min_scale and self.raise_at_min:
                    self.last_overflow_iter = self.cur_iter
                    self.cur_iter += 1
                    raise LossScaleAtMinimum(
                        f"Current loss scale already at minimum ({self.min_scale:g}) - cannot decrease scale anymore "
                        f"(deepspeed policy, iteration {self.cur_iter - 1})"
                    )
                self.scale = max(self.scale * self.backoff_factor, self.min_scale)
            else:
                self.hysteresis -= 1
            self.last_overflow_iter = self.cur_iter
        elif (self.cur_iter - self.last_overflow_iter) % self.window == 0:
            self.hysteresis = self.delayed_shift
            self.scale *= self.growth_factor
        self.cur_iter += 1
        self.growth_tracker = (self.cur_iter - self.last_overflow_iter - 1) % self.window
        return found_inf


class MegatronScaler(ScalePolicy):
    """Megatron-LM's ``DynamicGradScaler`` (megatron/core/optimizer/grad_scaler.py).

    An overflow resets the growth tracker and uses one hysteresis; when none is left (tracker <= 0) the scale is
    multiplied by ``backoff`` and clamped at ``min_scale`` silently — every later overflow backs off again until a
    growth restores the hysteresis. ``growth_interval`` clean steps in a row multiply the scale by ``growth``.
    The step is skipped on every overflow.
    """

    name = "megatron"

    def __init__(
        self,
        init_scale=2.0**32,
        growth_factor=2.0,
        backoff_factor=0.5,
        growth_interval=1000,
        hysteresis=2,
        min_scale=1.0,
    ):
        self.scale, self.growth_factor, self.backoff_factor = float(init_scale), growth_factor, backoff_factor
        self.growth_interval, self.max_hysteresis, self.min_scale = growth_interval, hysteresis, float(min_scale)
        self.hysteresis, self.growth_tracker = hysteresis, 0

    def update(self, found_inf: bool) -> bool:
        if found_inf:
            self.growth_tracker = 0
            self.hysteresis -= 1
            if self.hysteresis <= 0:
                self.scale = max(self.scale * self.backoff_factor, self.min_scale)
        else:
            self.growth_tracker += 1
            if self.growth_tracker == self.growth_interval:
                self.growth_tracker = 0
                self.hysteresis = self.max_hysteresis
                self.scale *= self.growth_factor
        return found_inf


class StaticScaler(ScalePolicy):
    """A fixed scale; an overflowing step is skipped (its gradients are unusable) and the scale never changes."""

    name = "static"

    def __init__(self, init_scale=2.0**16):
        self.scale = float(init_scale)

    def update(self, found_inf: bool) -> bool:
        return found_inf


class NoScaler(ScalePolicy):
    """No loss scaling (scale 1) and no check: the optimizer steps whatever the gradients hold, as a plain fp16 loop
    without a scaler does (inf/NaN gradients then reach the weights)."""

    name = "none"

    def __init__(self, init_scale=1.0):
        self.scale = 1.0

    def update(self, found_inf: bool) -> bool:
        return False


POLICY_DEFAULTS = {  # init scale, growth interval
    "torch": (2.0**16, 2000),
    "deepspeed": (2.0**16, 1000),
    "megatron": (2.0**32, 1000),
    "static": (2.0**16, 0),
    "none": (1.0, 0),
}
