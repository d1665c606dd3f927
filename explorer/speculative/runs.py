"""Prompt-set runs: every prompt under every configuration, streamed into a run file that can be reopened,
replayed step by step without a model, and resumed after an interruption. Qt-free.

The run file is JSON lines. Line 1 is the header (``kind: "explorer-run"``, ``version``, the configurations, model
identities, seed and the prompts). Then, per prompt and configuration, a ``steps`` line (every StepRecord, for
replay) followed by a ``result`` line (token ids, stats and the compact per-step / per-decision rows the analysis
reads). A pair is done when its result line is complete: the file is only ever appended to, and on resuming
anything after the last complete result line (a half-written line, an orphaned steps line) is cut off.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExplorerError
from .engine import TimedSpeculation, target_only
from .options import SPECULATE
from .promptsets import Prompt, encode_prompt
from .records import Decision, DraftTree, SpecOptions, StepRecord

RUN_KIND = "explorer-run"
RUN_VERSION = 1
# Step rows: [accepted drafts, drafted depth, drafted nodes, ended by a rejection (0/1), new tokens]
# Decision rows: [step, depth, token, draft q, target p, accepted (0/1), token the output has there (-1: none),
#                 token before it (the parent's, or the step's root)]
DECISION_COLUMNS = ("step", "depth", "token", "q", "p", "accepted", "chosen", "prev")
TIMING_KEYS = ("seconds", "tokens_per_s", "draft_seconds", "verify_seconds", "target_only_tokens_per_s", "speedup",
               "c", "theoretical_speedup")  # fmt: skip


# ---------------------------------------------------------------------------------------------- configurations
@dataclass
class Configuration:
    """One way of speculating: the options-schema values (``speculate``'s names) and a key naming it."""

    key: str
    values: dict[str, Any]

    def options(self) -> SpecOptions:
        return SpecOptions.from_values(self.values, detail=True)

    @property
    def max_new(self) -> int:
        return int(self.values["max_new"])

    @property
    def uses_draft(self) -> bool:
        """Drafts with a draft model (chain, tree); lookup needs nothing, head methods need heads."""
        return self.values.get("method", "chain") in ("chain", "tree")

    @property
    def uses_heads(self) -> bool:
        return self.values.get("method", "chain") not in ("chain", "tree", "lookup")

    def describe(self) -> str:
        """Short words for a column header: ``chain γ=3``, ``tree 5/4/24``, ``lookup γ=3``, ``eagle auto``,
        ``tree 3/auto/6`` (+ accept, T): 0 is a shape dimension the chooser sizes (explorer/speculative/shape.py)."""
        v = self.values
        m = v.get("method", "chain")

        def dim(name: str) -> str:
            return str(v[name]) if v.get(name) else "auto"

        if m in ("tree", "eagle"):
            dims = [dim(n) for n in ("tree_depth", "tree_topk", "tree_budget")]
            what = f"{m} auto" if dims == ["auto"] * 3 else f"{m} {'/'.join(dims)}"
        elif m == "medusa":
            what = "medusa " + (v.get("medusa_tree") or "auto")
        elif m == "auto":
            what = "auto"
        else:
            what = f"{m} γ={dim('gamma')}"
        if v.get("accept", "greedy") != "greedy":
            what += f" {v['accept']}"
        if v.get("temperature", 0):
            what += f" T={v['temperature']:g}"
        return what

    def as_dict(self) -> dict:
        return {"key": self.key, "values": self.values}


def accept_for(temperature: float) -> str:
    return "greedy" if temperature <= 0 else "sample"


def parse_compare(text: str, base: dict[str, Any], explicit_accept: bool = False) -> Configuration:
    """``KEY=VALUE[,KEY=VALUE]`` over the base values, checked by the speculate schema; a changed temperature
    changes the acceptance rule too unless one is given (or was given for the base)."""
    values = dict(base)
    pairs = [p for p in text.split(",") if p.strip()]
    if not pairs:
        raise ExplorerError(f"--compare takes KEY=VALUE[,KEY=VALUE] (speculate's option names), got {text!r}")
    given = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if key == "max_new_tokens":
            key = "max_new"
        if not sep or not key:
            raise ExplorerError(f"--compare takes KEY=VALUE[,KEY=VALUE], got {pair.strip()!r} in {text!r}")
        if key not in SPECULATE:
            names = ", ".join(SPECULATE.options)
            raise ExplorerError(f"--compare {text}: speculate has no option {key!r} (its options: {names})")
        value = SPECULATE[key].parse(raw)
        problem = SPECULATE[key].problem(value)
        if problem:
            raise ExplorerError(f"--compare {text}: {key} {problem}")
        given[key] = value
    values.update(given)
    if "accept" not in given and not explicit_accept:
        values["accept"] = accept_for(values["temperature"])
    if values["method"] != "tree" and any(k in given for k in ("tree_depth", "tree_topk", "tree_budget")):
        if "method" not in given:
            values["method"] = "tree"  # as on the command line: a tree option asks for a tree
    key = ",".join(f"{k}={given[k]}" for k in given)
    return Configuration(key, values)


def check_configurations(configs: list[Configuration], has_draft: bool, heads: dict | None = None) -> None:
    """Each configuration's options and combinations (``heads``: method -> the heads loaded for it)."""
    keys = [c.key for c in configs]
    for c in configs:
        h = (heads or {}).get(c.values.get("method"))
        try:
            c.options().check(has_draft or not c.uses_draft, heads_kind=h.kind if h is not None else None)
        except ExplorerError as exc:
            raise ExplorerError(f"configuration {c.key}: {exc}") from None
        if keys.count(c.key) > 1:
            raise ExplorerError(f"configuration {c.key} is given twice")


def heads_for_configurations(session, configs: list[Configuration], lookup_kind: str | None = None) -> dict:
    """method -> the draft heads the configurations draft with, loaded by ``session.heads_for`` (its
    ``heads_dirs``, else found beside the target): each head method's own, and with ``lookup_kind`` the heads of
    that kind that prompt lookup falls back on where no n-gram matches. What ``run_prompt_set`` takes as heads."""
    heads: dict = {}
    for c in configs:
        method = c.values.get("method", "chain")
        if method in heads:
            continue
        if c.uses_heads:
            heads[method] = session.heads_for(method)
        elif method == "lookup" and lookup_kind is not None:
            heads[method] = session.heads_for(lookup_kind)
    return heads


# ---------------------------------------------------------------------------------------------- identities
def model_identity(lm) -> dict | None:
    """Name, path and a fingerprint of a model directory (config, tokenizer, and the weights' sizes, first and
    last MiB): enough to refuse resuming a run with other weights, without reading gigabytes."""
    if lm is None:
        return None
    path = Path(lm.path)
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        p = path / name
        if p.is_file():
            h.update(name.encode() + p.read_bytes())
    for p in sorted(path.glob("*.safetensors")):
        size = p.stat().st_size
        h.update(f"{p.name}:{size}".encode())
        with p.open("rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read())
    return {"name": lm.name, "path": str(path), "fingerprint": h.hexdigest()[:16]}


def make_header(prompts: list[Prompt], configs: list[Configuration], target, draft, seed: int,
                prompts_file: str | None = None, encoding: dict | None = None, heads=None) -> dict:  # fmt: skip
    """``encoding``: how prompts became ids beyond each prompt's own chat flag (--chat, --system, --ignore-eos);
    ``heads``: method -> the draft heads (explorer.speculative.heads.Heads) the configurations draft with."""
    return {
        "kind": RUN_KIND,
        "version": RUN_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "prompts_file": prompts_file,
        "seed": seed,
        "target": model_identity(target),
        "draft": model_identity(draft) if any(c.uses_draft for c in configs) else None,
        **({"heads": {m: {"kind": h.kind, "name": h.name, "path": str(h.path)} for m, h in heads.items()}}
           if heads else {}),  # fmt: skip
        "configurations": [c.as_dict() for c in configs],
        "encoding": encoding or {},
        "prompts": [p.as_dict() for p in prompts],
    }


SAME_RUN_KEYS = ("version", "seed", "target", "draft", "heads", "configurations", "encoding", "prompts")


# ---------------------------------------------------------------------------------------------- results
@dataclass
class PromptResult:
    """One prompt under one configuration: what the table, the analysis and the replay need."""

    prompt: str  # the prompt's id
    category: str
    config: int  # index into the run's configurations
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    stats: dict
    target_only: dict  # {"tokens": [...], "seconds": s} (the baseline this configuration was compared with)
    step_rows: np.ndarray  # int64 [steps, 5], see the module's notes
    decisions: np.ndarray  # float64 [n, 8], DECISION_COLUMNS
    texts: dict[int, str]  # token id -> text, for every token in the decision rows
    steps: list[StepRecord] | None = None  # live runs; loaded from the file on demand otherwise
    steps_at: int | None = field(default=None, repr=False)  # byte offset of the steps line in the run file
    _totals: tuple | None = field(default=None, repr=False, compare=False)

    def totals(self) -> tuple[int, int, int, int, int]:
        """Sums over the steps: (steps, accepted drafts, positions decided, drafted nodes, new tokens)."""
        if self._totals is None:
            rows = self.step_rows
            accepted = int(rows[:, 0].sum())
            self._totals = (len(rows), accepted, accepted + int(rows[:, 3].sum()), int(rows[:, 2].sum()),
                            int(rows[:, 4].sum()))  # fmt: skip
        return self._totals

    def summary(self) -> dict:
        """The result line (without the steps)."""
        return {
            "kind": "result",
            "prompt": self.prompt,
            "category": self.category,
            "config": self.config,
            "prompt_ids": self.prompt_ids,
            "token_ids": self.token_ids,
            "text": self.text,
            "stats": self.stats,
            "target_only": self.target_only,
            "step_rows": self.step_rows.tolist(),
            # q and p to 6 decimals (the steps line keeps them exact): half the bytes a reopened run parses
            "decisions": [[int(x) if i not in (3, 4) else round(float(x), 6) for i, x in enumerate(r)]
                          for r in self.decisions],  # fmt: skip
            "texts": {str(k): v for k, v in self.texts.items()},
        }

    @classmethod
    def from_summary(cls, d: dict, steps_at: int | None = None) -> PromptResult:
        return cls(
            prompt=str(d["prompt"]),
            category=d.get("category", ""),
            config=int(d["config"]),
            prompt_ids=d["prompt_ids"],
            token_ids=d["token_ids"],
            text=d.get("text", ""),
            stats=d["stats"],
            target_only=d.get("target_only") or {},
            step_rows=np.asarray(d["step_rows"], dtype=np.int64).reshape(-1, 5),
            decisions=np.asarray(d["decisions"], dtype=np.float64).reshape(-1, len(DECISION_COLUMNS)),
            texts={int(k): v for k, v in d.get("texts", {}).items()},
            steps_at=steps_at,
        )


def step_rows(steps: list[StepRecord]) -> np.ndarray:
    rows = [
        [len(s.accepted), int(s.tree.depth.max()) if len(s.tree.tokens) else 0, len(s.tree.tokens),
         int(s.rejected is not None), len(s.new_tokens)]
        for s in steps
    ]  # fmt: skip
    return np.asarray(rows, dtype=np.int64).reshape(-1, 5)


def decision_rows(steps: list[StepRecord]) -> np.ndarray:
    """One row per decision taken (DECISION_COLUMNS); q is the draft's own probability of the token (for a tree
    or lookup node too, whose acceptance treats it as certain)."""
    rows = []
    for s in steps:
        t = s.tree
        for d in s.decisions:
            depth = int(t.depth[d.node])
            parent = int(t.parent[d.node])
            prev = s.root_token if parent < 0 else int(t.tokens[parent])
            chosen = s.new_tokens[depth - 1] if len(s.new_tokens) >= depth else -1
            rows.append([s.step, depth, d.token, float(t.q[d.node]), d.p, int(d.accepted), chosen, prev])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(DECISION_COLUMNS))


def token_texts(decode: Callable[[list[int]], str], decisions: np.ndarray) -> dict[int, str]:
    ids = {int(x) for x in decisions[:, [2, 6, 7]].ravel() if x >= 0}
    return {i: decode([i]) for i in sorted(ids)}


# ---------------------------------------------------------------------------------------------- replay
def step_from_dict(d: dict) -> StepRecord:
    """A StepRecord from its ``as_dict`` form (the run file's steps line): equal to the live one."""
    t = d["tree"]
    tree = DraftTree(
        tokens=np.asarray(t["tokens"], dtype=np.int64),
        parent=np.asarray(t["parent"], dtype=np.int64),
        depth=np.asarray(t["depth"], dtype=np.int64),
        q=np.asarray(t["q"], dtype=np.float32),
        texts=list(t["texts"]),
        source=None if t.get("source") is None else np.asarray(t["source"], dtype=np.int64),  # heads: which one
    )

    def arr(v, dtype):
        return None if v is None else np.asarray(v, dtype=dtype)

    decisions = [
        Decision(
            node=x["node"], token=x["token"], p=x["p"], q=x["q"], ratio=x["ratio"], u=x["u"], accepted=x["accepted"],
            entropy=x["entropy"], p_top_ids=arr(x["p_top_ids"], np.int64),
            p_top_probs=arr(x["p_top_probs"], np.float32), q_top_ids=arr(x["q_top_ids"], np.int64),
            q_top_probs=arr(x["q_top_probs"], np.float32),
        )  # fmt: skip
        for x in d["decisions"]
    ]
    residual = d.get("residual_top")
    return StepRecord(
        step=d["step"],
        context_len=d["context_len"],
        root_token=d["root_token"],
        tree=tree,
        p=np.asarray(d["p"], dtype=np.float32),
        target_argmax=np.asarray(d["target_argmax"], dtype=np.int64),
        mask=None if d["mask"] is None else np.asarray(d["mask"], dtype=bool).reshape(len(tree.tokens) + 1, -1),
        position_ids=np.asarray(d["position_ids"], dtype=np.int64),
        decisions=decisions,
        accepted=list(d["accepted"]),
        rejected=d["rejected"],
        residual_top_ids=None if residual is None else np.asarray([r[0] for r in residual], dtype=np.int64),
        residual_top_probs=None if residual is None else np.asarray([r[1] for r in residual], dtype=np.float32),
        residual_token=d["residual_token"],
        bonus_token=d["bonus_token"],
        new_tokens=list(d["new_tokens"]),
        origins=list(d["origins"]),
        target_slots_verified=d["target_slots_verified"],
        target_slots_kept=list(d["target_slots_kept"]),
        draft_slots_kept=list(d["draft_slots_kept"]),
        draft_calls=d["draft_calls"],
        draft_seconds=d["draft_seconds"],
        verify_seconds=d["verify_seconds"],
        forward_seconds=d.get("forward_seconds", 0.0),
        shape=d.get("shape"),  # the chooser's shape (runs written before auto shapes have none)
    )


# ---------------------------------------------------------------------------------------------- the run file
class RunFileError(ExplorerError):
    pass


@dataclass
class Run:
    """An opened (or running) run: the header and the results done so far, in file order."""

    path: Path | None
    header: dict
    results: list[PromptResult] = field(default_factory=list)
    complete_bytes: int = 0  # the file's length up to the last complete result line

    @property
    def configurations(self) -> list[Configuration]:
        return [Configuration(c["key"], c["values"]) for c in self.header["configurations"]]

    @property
    def prompts(self) -> list[Prompt]:
        return [Prompt(p["id"], p["text"], p.get("category", ""), p.get("chat", False)) for p in self.header["prompts"]]

    def done(self) -> set[tuple[str, int]]:
        return {(r.prompt, r.config) for r in self.results}

    def load_steps(self, result: PromptResult) -> list[StepRecord]:
        """The result's steps: kept from a live run, else read from the run file (one line, by its offset)."""
        if result.steps is not None:
            return result.steps
        if self.path is None or result.steps_at is None:
            raise ExplorerError(f"the steps of prompt {result.prompt} are not stored")
        with self.path.open("rb") as f:
            f.seek(result.steps_at)
            line = f.readline()
        try:
            d = json.loads(line)
            if d.get("kind") != "steps" or str(d["prompt"]) != result.prompt or d["config"] != result.config:
                raise ValueError("not this prompt's steps")
            result.steps = [step_from_dict(s) for s in d["steps"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise RunFileError(f"{self.path}: the steps of prompt {result.prompt} are unreadable ({exc})") from None
        return result.steps


def _check_header(header: Any, where: str) -> dict:
    if not isinstance(header, dict) or header.get("kind") != RUN_KIND:
        raise RunFileError(f"{where}: not an explorer run file (its first line is no explorer-run header)")
    if header.get("version") != RUN_VERSION:
        raise RunFileError(f"{where}: run file version {header.get('version')!r}; this explorer reads {RUN_VERSION}")
    for key in ("configurations", "prompts", "seed"):
        if key not in header:
            raise RunFileError(f"{where}: the header has no {key!r}")
    return header


def read_run(path: str | Path) -> Run:
    """Open a run file: the header and every complete result (steps stay on disk until asked for). A cut-off
    last line (an interrupted run) is ignored; anything else malformed is one error line naming the line.

    The file is memory-mapped and steps lines are skipped by their first bytes, never copied: opening a
    1,000-prompt run reads only its small result lines."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except OSError as exc:
        raise RunFileError(f"cannot read run file {path}: {exc.strerror}") from None
    try:
        return _parse_run(path, data, size)
    finally:
        if size:
            data.close()


def _parse_run(path: Path, data, size: int) -> Run:
    first_end = data.find(b"\n")
    first = bytes(data[: first_end if first_end >= 0 else size])
    if not first.strip():
        raise RunFileError(f"{path}: empty file, not an explorer run")
    try:
        header = json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunFileError(f"{path}, line 1: not JSON: not an explorer run file") from None
    run = Run(path, _check_header(header, str(path)))
    if first_end < 0:
        return run  # only a header, cut off: nothing complete yet
    n_configs = len(header["configurations"])
    run.complete_bytes = first_end + 1
    steps_at: dict[tuple[str, int], int] = {}
    start, lineno = first_end + 1, 1
    while start < size:
        end = data.find(b"\n", start)
        lineno += 1
        if end < 0:
            break  # a line cut off while writing
        if data[start : start + 16] == b'{"kind": "steps"':
            # steps lines are parsed on demand; only where they start matters now
            cut = data.find(b', "steps": ', start, min(end, start + 4096))
            try:
                head = json.loads(bytes(data[start:cut]) + b"}") if cut >= 0 else None
                pid, config = head["prompt"], int(head["config"])
            except (ValueError, KeyError, TypeError):
                raise RunFileError(f"{path}, line {lineno}: a malformed steps line") from None
            steps_at[(str(pid), config)] = start
            start = end + 1
            continue
        line = bytes(data[start:end])
        start = end + 1
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            if d.get("kind") != "result":
                raise ValueError(f"unknown kind {d.get('kind')!r}")
            if not 0 <= int(d["config"]) < n_configs:
                raise ValueError(f"configuration {d['config']} does not exist")
            result = PromptResult.from_summary(d, steps_at.get((str(d["prompt"]), int(d["config"]))))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RunFileError(f"{path}, line {lineno}: not a run record ({exc})") from None
        run.results.append(result)
        run.complete_bytes = end + 1
    return run


class RunWriter:
    """Appends to a run file, line by line; a result line is flushed (and synced) as soon as it is complete."""

    def __init__(self, path: str | Path, header: dict, resume: bool = True):
        """A new file gets the header. An existing one is resumed when it holds the same run (same prompts,
        configurations, models and seed), after cutting off an unfinished tail; else it is refused."""
        self.path = Path(path)
        self.run = Run(self.path, header)
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise ExplorerError(f"{self.path} exists; remove it or resume it")
            old = read_run(self.path)
            for key in SAME_RUN_KEYS:
                if old.header.get(key) != header.get(key):
                    raise ExplorerError(
                        f"{self.path} holds another run (its {key} differ); resume it with the same prompts, "
                        "models and options, or write to another --out"
                    )
            self.run = old
            with self.path.open("r+b") as f:
                f.truncate(old.complete_bytes)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(header) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)  # never a file without its header
            self.run.complete_bytes = self.path.stat().st_size
        self._file = self.path.open("ab")

    def write(self, result: PromptResult) -> None:
        # One json.dumps per step: the C encoder holds the GIL for a whole call, and a GUI thread may be waiting.
        steps = ", ".join(json.dumps(s.as_dict()) for s in result.steps or [])
        head = json.dumps({"kind": "steps", "prompt": result.prompt, "config": result.config})[:-1]
        start = self._file.tell()
        self._file.write((head + ', "steps": [' + steps + "]}\n").encode("utf-8"))
        self._file.write((json.dumps(result.summary()) + "\n").encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())
        result.steps_at = start
        self.run.results.append(result)
        self.run.complete_bytes = self._file.tell()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- running
def run_one(target, draft, prompt: Prompt, prompt_ids: list[int], config: Configuration, index: int,
            baseline: dict, heads=None, curve: dict | None = None) -> PromptResult:  # fmt: skip
    """Speculate one prompt under one configuration; the target-only baseline (speed, first divergence) is
    decoded once per prompt and decoding settings and shared by the configurations that agree on them."""
    opt = config.options()
    max_new = config.max_new
    h = (heads or {}).get(config.values.get("method"))  # a head method's heads, or lookup's fallback
    # timing off: an auto shape follows the cached cost curve and the run's acceptance, not its clock, so that a
    # resumed run reproduces its steps exactly (explorer/speculative/shape.py)
    # (``curve``: the launcher's, for ranks of one run: each rank's own cache key could differ)
    run = TimedSpeculation(target, draft if config.uses_draft else None, prompt_ids, max_new, opt, h,
                           timing=False, curve=curve).run()  # fmt: skip
    key = (tuple(prompt_ids), max_new, opt.temperature, opt.top_k, opt.seed)
    if key not in baseline:
        baseline[key] = target_only(target, prompt_ids, max_new, opt)
    base = baseline[key]
    steps, new = run.steps, run.new_tokens
    decisions = decision_rows(steps)
    return PromptResult(
        prompt=prompt.id, category=prompt.category, config=index, prompt_ids=list(prompt_ids), token_ids=new,
        text=target.decode(new), stats=run.stats(base), target_only=base.as_dict(), step_rows=step_rows(steps),
        decisions=decisions, texts=token_texts(target.decode, decisions), steps=steps,
    )  # fmt: skip


def run_prompt_set(target, draft, prompts: list[Prompt], configs: list[Configuration],
                   writer: RunWriter | None = None, should_stop: Callable[[], bool] | None = None,
                   encode: Callable[[Prompt], list[int]] | None = None, heads=None,
                   ) -> Iterator[PromptResult]:  # fmt: skip
    """Every prompt under every configuration (prompt by prompt, so that the table fills row by row), skipping
    the pairs the writer's file already holds; each result is written before it is yielded. ``encode`` turns a
    prompt into ids (default: :func:`encode_prompt`)."""
    encode = encode or (lambda p: encode_prompt(target, p))
    done = writer.run.done() if writer is not None else set()
    baseline: dict = {}
    for prompt in prompts:
        prompt_ids = None
        for index, config in enumerate(configs):
            if (prompt.id, index) in done:
                continue
            if should_stop is not None and should_stop():
                return
            if prompt_ids is None:
                prompt_ids = encode(prompt)
            result = run_one(target, draft, prompt, prompt_ids, config, index, baseline, heads)
            if writer is not None:
                writer.write(result)
            yield result


def without_timings(stats: dict) -> dict:
    """The stats that do not depend on the wall clock (what a resumed run must reproduce exactly)."""
    def timed(k: str) -> bool:
        return k in TIMING_KEYS or "seconds" in k or "speedup" in k or k.endswith("_per_s")

    return {k: v for k, v in stats.items() if not timed(k)}


def run_decoder(header: dict, known: dict[int, str] | None = None) -> Callable[[list[int]], str]:
    """Token ids to text for replaying a run without its model: the target's tokenizer.json when it is still
    where the run found it, else the token texts the run stored (``⟨id⟩`` for any other token)."""
    target = header.get("target") or {}
    path = Path(target.get("path", "")) / "tokenizer.json"
    if target.get("path") and path.is_file():
        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path))
            return lambda ids: tok.decode([int(i) for i in ids], skip_special_tokens=False)
        except Exception:  # noqa: BLE001 - an unreadable tokenizer only costs the texts
            pass
    table = dict(known or {})
    return lambda ids: "".join(table.get(int(i), f"⟨{int(i)}⟩") for i in ids)
