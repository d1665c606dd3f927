"""The generate view's run (Qt-free): decode from the session's target and describe every step, from the options
schema's values (the panel, a tour, ``--set``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..jobs import Job
from ..session import Session
from .generate import generate_records
from .options import GENERATE

SHOW_TOP = 10  # candidates each record carries (the view's bars)


@dataclass
class GenerationRunMeta:
    """What a decoding run was. ``decode`` (the target's detokenizer, for the view's text) is not part of it as
    exported."""

    model: str
    prompt: str
    prompt_ids: list[int]
    temperature: float
    top_k: int | None
    seed: int
    device: str
    dtype: str
    decode: Callable[[list[int]], str] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The keys of an exported run, as before this was a dataclass (everything but ``decode``)."""
        return {
            "model": self.model, "prompt": self.prompt, "prompt_ids": self.prompt_ids,
            "temperature": self.temperature, "top_k": self.top_k, "seed": self.seed, "device": self.device,
            "dtype": self.dtype,
        }  # fmt: skip


def generation_job(session: Session, values: dict[str, Any], *, deterministic: bool = False) -> Job:
    """``max_new`` decoding steps of the session's target on its prompt: greedy at temperature 0, else sampled
    (top-k 0: no cut)."""
    v = {**GENERATE.defaults(), **values}
    lm, prompt_ids = session.target, session.prompt_ids()
    temperature, top_k, max_new, seed = v["temperature"], v["top_k"] or None, v["max_new"], v["seed"]
    meta = GenerationRunMeta(
        model=str(lm.path), prompt=session.prompt, prompt_ids=prompt_ids, temperature=temperature, top_k=top_k,
        seed=seed, device=str(lm.device), dtype=str(lm.dtype).removeprefix("torch."), decode=lm.decode,
    )  # fmt: skip
    return Job(meta, lambda: generate_records(lm, prompt_ids, max_new, temperature, top_k, seed, show=SHOW_TOP))
