"""The one way a loss-scaling run is computed (Qt-free): the amp view, a tour's recording and ``explorer amp`` all
start their training here, from the options schema's values."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..jobs import Job
from ..models.checkpoint import LoadedModel
from ..session import Session
from .engine import AmpSettings, AmpTrainer, default_text, settings_from_values, text_tokens, trainable_copy
from .records import StepRecord


@dataclass
class AmpRunMeta:
    """What a loss-scaling run was: the model, its settings, the layer groups of the records' per-group rows (known
    once training starts) and why the run ended early (the scaler could not back off any more), if it did."""

    model: str
    settings: AmpSettings
    stopped: str | None = None
    groups: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The keys of an exported run, as before this was a dataclass: model, settings, stopped, groups."""
        out: dict[str, Any] = {"model": self.model, "settings": dict(vars(self.settings)), "stopped": self.stopped}
        if self.groups is not None:
            out["groups"] = self.groups
        return out


def start_training(lm: LoadedModel, settings: AmpSettings, text: str) -> AmpTrainer:
    """A trainer on a fresh trainable copy of ``lm``, seeded by the settings, training on ``text``."""
    tokens = text_tokens(lm.encode, text, settings.seq_len)
    torch.manual_seed(settings.seed)  # the copy's module initialisation draws from torch's generator
    return AmpTrainer(trainable_copy(lm, settings.device), tokens, settings)


def training_job(lm: LoadedModel, settings: AmpSettings, text: str) -> Job:
    """``settings.steps`` training steps of ``lm`` on ``text``; the metadata learns the groups as training starts
    and why it stopped before that step's record arrives."""
    meta = AmpRunMeta(model=str(lm.path), settings=settings)

    def records() -> Iterator[StepRecord]:
        trainer = start_training(lm, settings, text)
        meta.groups = list(trainer.groups)
        try:
            for record in trainer.steps():
                meta.stopped = trainer.stopped
                yield record
        finally:
            trainer.close()

    return Job(meta, records)


def amp_job(session: Session, values: dict[str, Any], *, deterministic: bool = False) -> Job:
    """The amp view's run (explorer.jobs): the session's target trained on the default text, on the CPU."""
    return training_job(session.target, settings_from_values(values), default_text())
