"""Mixed-precision training steps on a loaded model, with every loss-scaler decision and every gradient value counted
against the FP16 range (Qt-free; the ``amp`` view and ``explorer amp`` both read :class:`StepRecord`).

What runs is real training: next-token loss on a text, AdamW on fp32 master parameters (the trainable copy's own
parameters), ``torch.autocast`` in float16 (or bfloat16, the comparison that needs no scaler) and a dynamic loss
scaler. The ``torch`` policy *is* ``torch.amp.GradScaler``: the engine calls it the usual way and reads what it
decided (scale, found_inf from its per-device state, growth tracker). ``deepspeed``, ``megatron``, ``static`` and
``none`` are small classes that follow the published rules (see each class).

Counting (:class:`BandCounter`): every gradient value is placed in one FP16 band by what a cast to float16 would
make of it, exactly as ``numpy.float16`` rounds (round to nearest, ties to even):

* ``inf_nan``: the value is already inf or NaN;
* ``overflow``: finite, but the cast gives inf: |g| >= 65520 (values in (65504, 65520) round down to 65504 and are
  counted ``normal``) — this is the "above 65504" band of the FP16 range;
* ``normal``: the cast is a normal number, [2^-14, 65504] after rounding;
* ``subnormal``: the cast is a subnormal, [2^-24, 2^-14) after rounding;
* ``flushed``: non-zero, but the cast gives 0: 0 < |g| <= 2^-25;
* ``zero``: exactly zero.

A value that is *already* float16 (the real fp16 activation gradients the hooks see) casts to itself, so it can never
count as ``flushed`` or ``overflow``: the fp16 arithmetic that produced it already made those values exact zeros and
infs (counted ``zero`` and ``inf_nan``). The *unscaled* counts are for g / scale (computed exactly in float32,
which is what GradScaler's unscale does for power-of-two scales): the values training would have had to hold without
loss scaling — Micikevicius et al.'s point is the difference between ``flushed`` unscaled and scaled.

Histograms count finite non-zero values by floor(log2|g|) on fixed bins: bin 0 is everything below 2^-40, bins 1..61
are [2^k, 2^(k+1)) for k = -40..20, bin 62 everything from 2^21 up (finite). Zeros and inf/NaN are not in the
histogram (they are in the bands).

Speed: each flattened gradient vector (one per layer group) is counted with one ``torch.bincount`` of its float32
bit patterns' top 19 bits, which serves the scaled and, for a power-of-two scale, the unscaled values at once, plus
two element-wise compares (see :class:`BandCounter`); no Python loop touches elements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ExplorerError
from ..memory import check_fits, training_bytes
from ..models.checkpoint import ASSETS, parameter_count
from ..models.decoder import CausalLM
from .bands import BANDS, HIST_BINS, N_HIST, BandCounter, flushed_share
from .options import AMP
from .records import StepRecord
from .scalers import (
    POLICY_DEFAULTS,
    DeepSpeedScaler,
    LossScaleAtMinimum,
    MegatronScaler,
    NoScaler,
    ScalePolicy,
    StaticScaler,
)

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_TEXT_CHARS = 8192

# ---------------------------------------------------------------- settings and records


@dataclass
class AmpSettings:
    steps: int = 20
    policy: str = "torch"
    dtype: str = "float16"
    init_scale: float | None = None  # None: the policy's default (POLICY_DEFAULTS)
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int | None = None  # None: the policy's default (deepspeed/megatron call it the window)
    hysteresis: int = 2
    min_scale: float = 1.0
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch: int = 2
    seq_len: int = 32
    train_layers: int = 0  # > 0: only the last N decoder layers and the final norm train (the rest is frozen)
    spike: tuple[int, float] | None = None  # (step, factor): the loss × factor at that step (from 1, as on screen)
    seed: int = 0
    device: str = "cpu"
    # An fp32 forward + backward of the same batch each step (about the cost of the fp16 step again): the reference
    # that shows which gradient values the fp16 backward already lost to zero (no band count of fp16 values can).
    reference: bool = True

    def check(self) -> None:
        """The options schema's checks (one message format with the CLI and the view), then the combinations."""
        names = ("policy", "dtype", "init_scale", "growth_interval", "steps", "seed", "growth_factor",
                 "backoff_factor", "hysteresis", "min_scale", "lr", "batch", "seq_len", "train_layers")  # fmt: skip
        values = {n: getattr(self, n) for n in names}
        if self.spike is not None:
            values["spike_step"], values["spike_factor"] = self.spike
        AMP.check(values)
        if self.spike is not None and not 1 <= self.spike[0] <= self.steps:
            raise ExplorerError(f"the loss spike at step {self.spike[0]} would never happen: steps run 1..{self.steps}")

    def resolved(self) -> tuple[float, int]:
        d_scale, d_interval = POLICY_DEFAULTS[self.policy]
        scale = float(self.init_scale) if self.init_scale is not None else d_scale
        return scale, int(self.growth_interval) if self.growth_interval is not None else max(d_interval, 1)


def settings_from_values(values: dict[str, Any], device: str = "cpu") -> AmpSettings:
    """The checked settings of a run from the options schema's values (the view's panel, a tour, ``explorer amp``'s
    flags; an option not given takes the schema's default): the one place they are built."""
    v = {**AMP.defaults(), **values}
    settings = AmpSettings(
        steps=v["steps"], policy=v["policy"], dtype=v["dtype"],
        init_scale=2.0 ** v["init_scale_log2"] if v["init_scale_log2"] is not None else v["init_scale"],
        growth_factor=v["growth_factor"], backoff_factor=v["backoff_factor"], growth_interval=v["growth_interval"],
        hysteresis=v["hysteresis"], min_scale=v["min_scale"], lr=v["lr"], batch=v["batch"], seq_len=v["seq_len"],
        spike=(v["spike_step"], v["spike_factor"]) if v["spike_step"] >= 1 else None, seed=v["seed"], device=device,
        train_layers=v["train_layers"], reference=v["reference"],
    )  # fmt: skip
    settings.check()
    return settings


def default_text(limit: int = DEFAULT_TEXT_CHARS) -> str:
    """A few KB of the explorer's own Python sources (not the demo models' training corpus), frozen in a file so
    that editing the code never changes what the amp view trains on."""
    return (ASSETS / "text" / "amp_default.txt").read_text(encoding="utf-8")[:limit]


def text_tokens(encode: Callable[[str], list[int]], text: str, seq_len: int) -> np.ndarray:
    ids = np.asarray(encode(text), dtype=np.int64)
    if len(ids) < seq_len + 2:
        raise ExplorerError(
            f"the text has {len(ids)} tokens; a sequence length of {seq_len} needs at least {seq_len + 2}"
        )
    return ids


def sample_batch(tokens: np.ndarray, batch: int, seq_len: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Random windows of seq_len + 1 tokens: inputs and next-token targets (as train_demo.batches)."""
    starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch)
    rows = torch.from_numpy(np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64))
    return rows[:, :-1], rows[:, 1:]


def training_memory(cfg, batch: int, seq_len: int, train_layers: int = 0) -> int:
    """Bytes a training step needs, roughly: fp32 weights, gradients and AdamW's two moments (16 bytes per
    parameter), and the activations backward keeps (per layer ~12 hidden-wide and 3 MLP-wide values per token,
    the attention probabilities, and the logits three times). With ``train_layers`` N > 0 the frozen weights cost
    4 bytes each and only the last N layers keep activations for backward."""
    params = parameter_count(cfg)
    tokens = batch * seq_len
    per_layer = tokens * (12 * cfg.hidden_size + 3 * cfg.intermediate_size) + batch * cfg.num_heads * seq_len**2
    if train_layers <= 0:
        return training_bytes(params, cfg.num_layers * per_layer + 3 * tokens * cfg.vocab_size)
    layers = min(train_layers, cfg.num_layers)
    one_layer = (params - parameter_count(replace(cfg, num_layers=0))) // max(cfg.num_layers, 1)
    trained = layers * one_layer + cfg.hidden_size
    return 4 * (params - trained) + training_bytes(trained, layers * per_layer + 3 * tokens * cfg.vocab_size)


def check_training_memory(cfg, batch: int, seq_len: int, device: str, train_layers: int = 0) -> None:
    """Refuse, naming the figure, training that cannot fit in the free memory of ``device``."""
    check_fits(training_memory(cfg, batch, seq_len, train_layers), f"training with batch {batch} x {seq_len} tokens",
               device, "try a smaller --batch or --seq-len, or --train-layers N")  # fmt: skip


def freeze_all_but_last(model: CausalLM, n: int) -> None:
    """Train only the last ``n`` decoder layers and the final norm (and an untied LM head); 0 trains everything."""
    if n <= 0:
        return
    first = max(model.config.num_layers - n, 0)
    for name, p in model.named_parameters():
        group = group_of(name)
        keep = (group.startswith("layers.") and int(group.split(".")[1]) >= first) or group == "head"
        p.requires_grad_(keep and p is not model.model.embed_tokens.weight)


def trainable_copy(lm, device: str = "cpu") -> CausalLM:
    """A fresh, unfused, fp32, trainable copy of a LoadedModel's weights (the loaded one stays as it is)."""
    model = CausalLM(lm.config)
    state = {
        k: v.detach().to(device=device, dtype=torch.float32).contiguous() for k, v in lm.model.state_dict().items()
    }
    model.load_state_dict(state, strict=False)
    return model.to(device).float().train().requires_grad_(True)


def group_of(name: str) -> str:
    """'model.layers.3.mlp.up_proj.weight' -> 'layers.3'; embeddings -> 'embed'; final norm and lm head -> 'head'."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "model" and parts[1] == "layers":
        return f"layers.{parts[2]}"
    if name.startswith("model.embed_tokens"):
        return "embed"
    return "head"


# ---------------------------------------------------------------- the trainer


class AmpTrainer:
    """Mixed-precision training of ``model`` (a trainable fp32 CausalLM) on ``tokens``, one :class:`StepRecord` per
    :meth:`step`. With ``instrument=False`` it is the plain loop (same policy, same numbers, no counting)."""

    def __init__(self, model: CausalLM, tokens: np.ndarray, settings: AmpSettings, instrument: bool = True):
        settings.check()
        check_training_memory(model.config, settings.batch, settings.seq_len, settings.device, settings.train_layers)
        freeze_all_but_last(model, settings.train_layers)
        self.model, self.tokens, self.s, self.instrument = model, tokens, settings, instrument
        self.device = torch.device(settings.device)
        self.dtype = AMP_DTYPES[settings.dtype]
        if not torch.amp.is_autocast_available(self.device.type):
            raise ExplorerError(f"torch has no autocast for device {self.device.type!r}")
        n_layers = model.config.num_layers
        self.groups = ["embed", *(f"layers.{i}" for i in range(n_layers)), "head"]
        gi = {g: i for i, g in enumerate(self.groups)}
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        named = sorted(trained, key=lambda kv: gi[group_of(kv[0])])  # stable: keeps module order
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        sizes = {}
        for n, p in named:
            sizes[group_of(n)] = sizes.get(group_of(n), 0) + p.numel()
        self.param_sizes = tuple(sizes.get(g, 0) for g in self.groups)
        for p in self.params:
            if p.dtype != torch.float32:
                raise ExplorerError("mixed-precision training needs fp32 master parameters")
        self.opt = torch.optim.AdamW(self.params, lr=settings.lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay)
        scale, interval = settings.resolved()
        self.scaler: torch.amp.GradScaler | None = None
        self.policy: ScalePolicy | None = None
        if settings.policy == "torch":
            self.scaler = torch.amp.GradScaler(
                self.device.type,
                init_scale=scale,
                growth_factor=settings.growth_factor,
                backoff_factor=settings.backoff_factor,
                growth_interval=interval,
            )
        elif settings.policy in ("deepspeed", "megatron"):
            scaler_class = DeepSpeedScaler if settings.policy == "deepspeed" else MegatronScaler
            self.policy = scaler_class(
                scale,
                settings.growth_factor,
                settings.backoff_factor,
                interval,
                settings.hysteresis,
                settings.min_scale,
            )
        elif settings.policy == "static":
            self.policy = StaticScaler(scale)
        else:
            self.policy = NoScaler()
        self.rng = np.random.default_rng(settings.seed)
        self.step_index = 0
        self.stopped: str | None = None  # why the run ended early (see steps)
        self.counter = BandCounter(self.device)
        # activation-gradient hooks: every leaf module with an output (Linear, RMSNorm, Embedding)
        self.modules: list[str] = []
        self.module_group: list[int] = []
        self._stash: list[tuple[int, Tensor]] = []
        self._handles = []
        if instrument:
            for name, mod in model.named_modules():
                if isinstance(mod, nn.Linear | nn.Embedding) or type(mod).__name__ == "RMSNorm":
                    idx = len(self.modules)
                    self.modules.append(name)
                    self.module_group.append(gi[group_of(name)])
                    self._handles.append(mod.register_forward_hook(self._forward_hook(idx)))
            order = self._param_order = []
            for j, p in enumerate(self.params):
                self._handles.append(p.register_post_accumulate_grad_hook(lambda _p, j=j: order.append(j)))

    def _forward_hook(self, idx: int):
        stash = self._stash

        def on_grad(grad: Tensor) -> None:
            stash.append((idx, grad))

        def hook(mod, inputs, out):
            if isinstance(out, Tensor) and out.requires_grad:
                out.register_hook(on_grad)

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @property
    def scale(self) -> float:
        return float(self.scaler.get_scale()) if self.scaler is not None else self.policy.scale

    def step(self) -> StepRecord:
        s, i = self.s, self.step_index
        t0 = time.perf_counter()
        x, y = sample_batch(self.tokens, s.batch, s.seq_len, self.rng)
        x, y = x.to(self.device), y.to(self.device)
        factor = s.spike[1] if s.spike is not None and s.spike[0] == i + 1 else 1.0  # step i + 1 as counted on screen
        self._stash.clear()
        if instrument := self.instrument:
            self._param_order.clear()
        reference = self._reference_grads(x, y, factor) if self.instrument and s.reference else None
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.dtype):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        train_loss = loss * factor if factor != 1.0 else loss
        scale = self.scale
        if self.scaler is not None:
            self.scaler.scale(train_loss).backward()
        else:
            (train_loss * scale).backward()
        counts = self._count(scale, reference) if self.instrument else {}
        stop: LossScaleAtMinimum | None = None
        hysteresis = None
        if self.scaler is not None:
            sc = self.scaler
            sc.unscale_(self.opt)
            found_inf = bool(sum(v.item() for v in sc._found_inf_per_device(self.opt).values()))
            sc.step(self.opt)  # skips the optimizer step itself when found_inf
            sc.update()
            skipped, tracker = found_inf, int(sc._get_growth_tracker())
        else:
            grads = [p.grad for p in self.params if p.grad is not None]
            found = torch.zeros(1, device=self.device)
            torch._amp_foreach_non_finite_check_and_unscale_(
                grads, found, torch.full((1,), 1.0 / scale, device=self.device)
            )
            found_inf = bool(found.item())
            try:
                skipped = self.policy.update(found_inf)
            except LossScaleAtMinimum as exc:
                stop, skipped = exc, True
            if not skipped:
                self.opt.step()
            tracker, hysteresis = self.policy.growth_tracker, self.policy.hysteresis
        next_scale = self.scale
        event = "stop" if stop else ("growth" if next_scale > scale else ("backoff" if next_scale < scale else None))
        first = counts.pop("first", None)
        first = self.modules[first] if first is not None else None
        if instrument and first is None and found_inf:  # no activation overflowed: a weight-gradient GEMM did
            first = next(
                (self.param_names[j] for j in self._param_order if not bool(torch.isfinite(self.params[j].grad).all())),
                None,
            )
        rec = StepRecord(
            step=i,
            loss=float(loss.item()),
            loss_factor=float(factor),
            scale=scale,
            next_scale=next_scale,
            found_inf=found_inf,
            skipped=bool(skipped),
            event=event,
            growth_tracker=int(tracker),
            hysteresis=hysteresis,
            first_overflow=first,
            seconds=time.perf_counter() - t0,
            **counts,
        )
        self.step_index += 1
        if stop is not None:
            stop.record = rec
            raise stop
        return rec

    def _reference_grads(self, x: Tensor, y: Tensor, factor: float) -> Tensor:
        """The parameter gradients of the same loss in plain fp32 (no autocast, no scale), flattened in the order
        of ``self.params``; ``.grad`` and the activation-gradient stash are left as they were."""
        logits = self.model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) * factor
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        self._stash.clear()
        return torch.cat(
            [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, self.params, strict=True)]
        )

    def _count(self, scale: float, reference: Tensor | None = None) -> dict:
        G = len(self.groups)
        # parameter gradients: one vector, one segment per group
        grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params]
        flat = torch.cat(grads)
        sizes = self.param_sizes
        ps, pu, phs, phu = self.counter.count(flat, sizes, scale)
        out = dict(param_scaled=ps, param_unscaled=pu, param_hist_scaled=phs, param_hist_unscaled=phu)
        if reference is not None:
            # lost: non-zero in the fp32 backward, exactly zero in the fp16 one (underflowed before any count)
            lost = ((reference != 0) & (flat == 0)).to(torch.int64)
            bounds = np.cumsum((0, *sizes))
            cum = torch.cat([torch.zeros(1, dtype=torch.int64), lost.cumsum(0)]).cpu().numpy()
            out["param_lost"] = (cum[bounds[1:]] - cum[bounds[:-1]]).astype(np.int64)
            _, _, out["param_hist_reference"], _ = self.counter.count(reference, sizes, 1.0)
        # activation gradients: which module overflowed first (max |g| per tensor, in backward order), then the
        # counts with one segment per group
        stash = self._stash
        module_max = np.zeros(len(self.modules), np.float64)
        first = None
        if stash:
            maxes = torch.stack([m.float() for m in torch._foreach_norm([g for _, g in stash], float("inf"))])
            maxes = maxes.cpu().numpy()
            mods = [m for m, _ in stash]
            np.maximum.at(module_max, mods, np.nan_to_num(maxes, nan=np.inf))
            bad = np.nonzero(~(maxes < 65520.0))[0]  # inf, NaN, or a value an fp16 cast makes inf
            if len(bad):
                first = mods[bad[0]]
            by_group = sorted(range(len(stash)), key=lambda j: self.module_group[mods[j]])
            sizes = [0] * G
            for j in by_group:
                sizes[self.module_group[mods[j]]] += stash[j][1].numel()
            flat = torch.cat([stash[j][1].reshape(-1).float() for j in by_group])
            as_, au, ahs, ahu = self.counter.count(flat, tuple(sizes), scale)
            stash.clear()
        else:
            as_, au = (np.zeros((G, len(BANDS)), np.int64) for _ in range(2))
            ahs, ahu = (np.zeros((G, N_HIST), np.int64) for _ in range(2))
        out.update(
            act_scaled=as_,
            act_unscaled=au,
            act_hist_scaled=ahs,
            act_hist_unscaled=ahu,
            module_max=module_max,
            first=first,
        )
        return out

    def steps(self, steps: int | None = None) -> Iterator[StepRecord]:
        """Run ``steps`` (default: settings.steps) steps, one record each. A scaler that cannot back off any more
        (deepspeed at its minimum) ends the run: ``stopped`` says why before that step's record is yielded."""
        self.stopped = None
        for _ in range(steps if steps is not None else self.s.steps):
            try:
                yield self.step()
            except LossScaleAtMinimum as exc:
                self.stopped = str(exc)
                yield exc.record
                return

    def run(self, steps: int | None = None, on_step: Callable[[StepRecord], None] | None = None):
        """Run ``steps`` (default: settings.steps) steps; returns (records, stop message or None)."""
        records = []
        for rec in self.steps(steps):
            records.append(rec)
            if on_step:
                on_step(rec)
        return records, self.stopped


def summarize(records: list[StepRecord], trainer: AmpTrainer, stopped: str | None = None) -> dict:
    s = trainer.s
    seconds = sum(r.seconds for r in records)
    out = {
        "policy": s.policy,
        "dtype": s.dtype,
        "device": str(trainer.device),
        "init_scale": trainer.s.resolved()[0],
        "growth_interval": trainer.s.resolved()[1],
        "growth_factor": s.growth_factor,
        "backoff_factor": s.backoff_factor,
        "steps": len(records),
        "overflow_steps": sum(r.found_inf for r in records),
        "skipped_steps": sum(r.skipped for r in records),
        "growth_events": sum(r.event == "growth" for r in records),
        "backoff_events": sum(r.event == "backoff" for r in records),
        "first_overflow_step": next((r.step + 1 for r in records if r.found_inf), None),  # from 1, as on screen
        "final_scale": records[-1].next_scale if records else None,
        "min_scale": min((r.scale for r in records), default=None),
        "max_scale": max((r.scale for r in records), default=None),
        "first_loss": records[0].loss if records else None,
        "final_loss": records[-1].loss if records else None,
        "seconds": seconds,
        "steps_per_s": len(records) / seconds if seconds > 0 else None,
        "stopped": stopped,
        "bands": list(BANDS),
        "hist_bins": [str(b) for b in HIST_BINS],
        "groups": trainer.groups,
    }
    if records and records[0].act_scaled is not None:
        firsts: dict[str, int] = {}
        for r in records:
            if r.first_overflow:
                firsts[r.first_overflow] = firsts.get(r.first_overflow, 0) + 1
        out["first_overflow_modules"] = firsts
        for kind in ("act", "param"):
            for which in ("scaled", "unscaled"):
                out[f"{kind}_flushed_share_{which}"] = flushed_share(
                    np.sum([getattr(r, f"{kind}_{which}") for r in records], axis=0)
                )
    return out
