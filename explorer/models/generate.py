"""Plain autoregressive decoding with the static KV cache: greedy by default, or sampled with temperature / top-k.

``iter_generate`` yields one record per new token (with the full next-token distribution) so that views can
step through decoding; ``generate`` just collects the tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ExplorerError
from ..memory import check_fits, kv_cache_bytes
from .checkpoint import LoadedModel


@dataclass
class TokenStep:
    """One decoding step: the distribution the model produced and the token taken from it."""

    index: int  # 0 for the first new token
    token_id: int
    logits: np.ndarray | None  # float32 [vocab], raw (before temperature / top-k); None when not recorded
    probs: np.ndarray | None  # float32 [vocab], the distribution sampled from (softmax at T=1 when greedy)
    seconds: float  # wall time of the forward pass that produced these logits


def check_length(lm: LoadedModel, n_prompt: int, max_new_tokens: int) -> None:
    ctx = lm.config.max_position_embeddings
    if n_prompt == 0:
        raise ExplorerError("the prompt is empty")
    if n_prompt >= ctx:
        raise ExplorerError(f"prompt is {n_prompt} tokens, longer than {lm.name}'s context of {ctx} tokens")
    if n_prompt + max_new_tokens > ctx:
        raise ExplorerError(
            f"prompt ({n_prompt} tokens) + {max_new_tokens} new tokens exceeds {lm.name}'s context of {ctx}; "
            f"ask for at most {ctx - n_prompt} new tokens"
        )


def check_cache_memory(lm: LoadedModel, slots: int) -> None:
    """The KV cache is allocated at once for every slot: refuse, naming the figure, when it cannot fit."""
    c = lm.config
    need = kv_cache_bytes(c.num_layers, c.num_kv_heads, c.head_dim, slots, lm.dtype.itemsize)
    check_fits(need, f"a KV cache of {slots} tokens for {lm.name}", str(lm.device), "ask for fewer new tokens")


def check_finite_logits(logits: torch.Tensor, lm: LoadedModel, step: int) -> None:
    """NaN or Inf logits (overflow in float16, damaged weights) would silently pick token 0 forever."""
    if not bool(torch.isfinite(logits).all()):
        kind = "NaN" if bool(torch.isnan(logits).any()) else "infinite"
        raise ExplorerError(
            f"{lm.name} produced {kind} logits at new token {step} (dtype {str(lm.dtype).removeprefix('torch.')}); "
            "try --dtype float32, or check the checkpoint"
        )


def next_token_probs(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """The distribution sampling draws from: softmax(logits / T) restricted to the top k (greedy: T = 0)."""
    logits = logits.float()
    if temperature <= 0:
        return torch.softmax(logits, dim=-1)
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=-1)


@torch.inference_mode()
def iter_generate(
    lm: LoadedModel,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    stop_at_eos: bool = True,
    record: bool = True,
) -> Iterator[TokenStep]:
    """One :class:`TokenStep` per new token; ``record=False`` skips copying the distributions (fast path)."""
    check_length(lm, len(prompt_ids), max_new_tokens)
    gen = torch.Generator(device=lm.device)
    gen.manual_seed(0 if seed is None else seed)
    check_cache_memory(lm, len(prompt_ids) + max_new_tokens)
    cache = lm.model.new_cache(len(prompt_ids) + max_new_tokens)
    ids = torch.tensor([prompt_ids], device=lm.device)
    for i in range(max_new_tokens):
        t0 = time.perf_counter()
        logits = lm.model(ids, cache=cache, last_only=True)[0, -1]
        check_finite_logits(logits, lm, i)
        probs = next_token_probs(logits, temperature, top_k) if (record or temperature > 0) else None
        if temperature <= 0:
            token = int(torch.argmax(logits))
        else:
            token = int(torch.multinomial(probs, 1, generator=gen))
        seconds = time.perf_counter() - t0
        if record:
            yield TokenStep(i, token, logits.float().cpu().numpy(), probs.cpu().numpy(), seconds)
        else:
            yield TokenStep(i, token, None, None, seconds)
        if stop_at_eos and token in lm.eos_token_ids:
            return
        ids = ids.new_tensor([[token]])


def generate(
    lm: LoadedModel,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    stop_at_eos: bool = True,
) -> list[int]:
    """New token ids only. Greedy unless ``temperature`` > 0; stops after an end-of-sequence token."""
    steps = iter_generate(lm, prompt_ids, max_new_tokens, temperature, top_k, seed, stop_at_eos, record=False)
    return [step.token_id for step in steps]


@dataclass
class GenerateRecord:
    """Everything the `generate` view shows for one decoding step (plain data: safe to keep, export and replay)."""

    step: int
    context_ids: list[int]  # prompt + tokens chosen before this step
    n_prompt: int
    token_id: int
    token_text: str
    top_ids: np.ndarray  # int64 [k], most probable first
    top_probs: np.ndarray  # float32 [k], under the distribution the token was drawn from
    top_texts: list[str]
    chosen_prob: float
    chosen_rank: int  # 0 = the most probable token
    entropy_bits: float  # of the distribution the token was drawn from
    temperature: float
    top_k: int | None
    seconds: float

    def as_dict(self) -> dict:
        return {
            "step": self.step,
            "token_id": self.token_id,
            "token_text": self.token_text,
            "chosen_prob": self.chosen_prob,
            "chosen_rank": self.chosen_rank,
            "entropy_bits": self.entropy_bits,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "seconds": self.seconds,
            "top": [
                {"id": int(i), "text": t, "prob": float(p)}
                for i, t, p in zip(self.top_ids, self.top_texts, self.top_probs, strict=True)
            ],
        }


def entropy_bits(probs: np.ndarray) -> float:
    p = probs[probs > 0].astype(np.float64)
    return float(-(p * np.log2(p)).sum())


def generate_records(
    lm: LoadedModel,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    show: int = 10,
) -> Iterator[GenerateRecord]:
    """Decode and describe every step: the top-``show`` candidates, the chosen token, the entropy."""
    context = list(prompt_ids)
    for s in iter_generate(lm, prompt_ids, max_new_tokens, temperature, top_k, seed):
        probs = s.probs
        top = np.argsort(-probs, kind="stable")[:show]
        rank = int((probs > probs[s.token_id]).sum())
        yield GenerateRecord(
            step=s.index,
            context_ids=list(context),
            n_prompt=len(prompt_ids),
            token_id=s.token_id,
            token_text=lm.decode([s.token_id]),
            top_ids=top.astype(np.int64),
            top_probs=probs[top].astype(np.float32),
            top_texts=[lm.decode([int(i)]) for i in top],
            chosen_prob=float(probs[s.token_id]),
            chosen_rank=rank,
            entropy_bits=entropy_bits(probs),
            temperature=temperature,
            top_k=top_k,
            seconds=s.seconds,
        )
        context.append(s.token_id)
