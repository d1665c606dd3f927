"""A prompt set over ranks (Qt-free): prompts are independent, so N local processes can each take a shard and the
launcher writes one run file, in the order one process would have written it (issue 24 item 6, first part).

:func:`run_over_ranks` runs the (prompt, configuration) pairs a run file does not hold yet: prompts are dealt to the
ranks round robin (a rank runs every configuration of its prompts, so its target-only baseline is decoded once per
prompt, as in one process), each rank sends every result as the run file's own two JSON objects (the steps and the
summary: plain data), and the launcher writes them through the run file's writer in the one-process order, holding
back a result that arrives before its predecessors. A run killed halfway leaves a complete prefix, which the next
run resumes. Records are the same as one process's except what the clock measures (timings, speedups).

No collectives are needed: the ranks share nothing but the launcher, so this runs on gloo ranks whatever the
device. Under torchrun the same worker runs per rank; merging its results is left to the caller for now.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import ExplorerError
from .launch import LaunchSpec, run_ranks

WORKER = "explorer.distributed.promptsets:prompt_worker"


def deal(pairs: list[tuple[int, int]], world: int) -> list[list[tuple[int, int]]]:
    """The pairs of each rank: prompt i (and all its configurations) to rank (rank of i among the prompts) % world."""
    prompts = sorted({p for p, _ in pairs})
    owner = {p: k % world for k, p in enumerate(prompts)}
    return [[pc for pc in pairs if owner[pc[0]] == r] for r in range(world)]


def prompt_worker(ctx, args: dict) -> dict:
    """Launcher worker: this rank's pairs with run_one, each result reported as ``prompt`` (plain JSON data)."""
    from ..models.checkpoint import load_model
    from ..speculative.heads import load_heads
    from ..speculative.promptsets import Prompt
    from ..speculative.runs import Configuration, run_one

    ctx.at(0, "loading the models")
    target = load_model(args["target"], dtype=args.get("dtype"), device=ctx.device)
    if args.get("ignore_eos"):
        target.eos_token_ids = ()
    draft = load_model(args["draft"], dtype=args.get("dtype"), device=ctx.device) if args.get("draft") else None
    heads = {method: load_heads(path, target) for method, path in (args.get("heads") or {}).items()}
    configs = [Configuration(c["key"], c["values"]) for c in args["configs"]]
    baseline: dict = {}
    mine = args["pairs"][ctx.rank]
    for k, (pi, ci) in enumerate(mine, start=1):
        prompt = Prompt(**args["prompts"][pi])
        ctx.at(k, f"prompt {prompt.id}, configuration {configs[ci].key}")
        result = run_one(target, draft, prompt, args["ids"][pi], configs[ci], ci, baseline, heads, args.get("curve"))
        ctx.report("prompt", result_payload((pi, ci), result))
    return {"pairs": len(mine)}


def result_payload(pair: tuple[int, int], result) -> dict:
    """A result as the run file's own two JSON objects (steps and summary), with its (prompt, configuration)."""
    return {"pair": list(pair), "summary": result.summary(), "steps": [s.as_dict() for s in result.steps or []]}


def shared_curve(target, configs: list) -> dict | None:
    """The verification-cost curve every rank sizes auto shapes on (the launcher's, as JSON data), when a
    configuration has a dimension to choose; ranks that measured their own, or read another cache key, would
    choose other shapes than one process."""
    from ..speculative.shape import curve_for, fixed_dims

    return curve_for(target) if any(fixed_dims(c.options()) is not None for c in configs) else None


def result_of(payload: dict):
    from ..speculative.runs import PromptResult, step_from_dict

    result = PromptResult.from_summary(payload["summary"])
    result.steps = [step_from_dict(s) for s in payload["steps"]]
    return result


def run_over_ranks(target, draft, prompts: list, configs: list, writer=None, *, workers: int, encode,
                   heads: dict | None = None, dtype: str | None = None, timeout_s: float = 600.0,
                   pids: list[int] | None = None) -> Iterator[Any]:  # fmt: skip
    """Like :func:`explorer.speculative.runs.run_prompt_set` (same order, same resume), on ``workers`` ranks that
    load the models from their paths. ``encode`` gives each prompt's ids (computed here, once); ``pids`` receives
    the ranks' process ids."""
    if workers < 1:
        raise ExplorerError(f"--workers must be at least 1 (got {workers})")
    done = writer.run.done() if writer is not None else set()
    pairs = [(pi, ci) for pi, p in enumerate(prompts) for ci in range(len(configs)) if (p.id, ci) not in done]
    if not pairs:
        return
    world = min(workers, len({p for p, _ in pairs}))
    heads_paths = {}
    for method, h in (heads or {}).items():
        if getattr(h, "path", None) is None:
            raise ExplorerError(f"--workers: the {method} heads live in memory only; save them to a directory first")
        heads_paths[method] = str(h.path)
    ids = {pi: list(encode(prompts[pi])) for pi in sorted({p for p, _ in pairs})}
    args = {
        "target": str(target.path), "draft": str(draft.path) if draft is not None else None, "dtype": dtype,
        "ignore_eos": not target.eos_token_ids, "heads": heads_paths,
        "configs": [c.as_dict() for c in configs], "prompts": [p.as_dict() for p in prompts],
        "ids": ids, "pairs": deal(pairs, world),
        # auto shapes: every rank sizes them on the launcher's cost curve, as one process would (JSON data)
        "curve": shared_curve(target, configs),
    }  # fmt: skip
    order = {pc: k for k, pc in enumerate(pairs)}
    waiting: dict[int, Any] = {}
    next_k = 0
    import torch

    # the launcher's thread count: a matmul's float sums depend on it, and p and q must come out bit for bit
    spec = LaunchSpec(world, timeout_s=timeout_s, threads=torch.get_num_threads())
    for msg in run_ranks(WORKER, args, spec, pids=pids):
        if msg.kind != "prompt":
            continue
        waiting[order[tuple(msg.payload["pair"])]] = msg.payload
        while next_k in waiting:
            result = result_of(waiting.pop(next_k))
            if writer is not None:
                writer.write(result)
            next_k += 1
            yield result
