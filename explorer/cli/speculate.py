"""``explorer speculate``: speculative decoding with every step's tree, decisions and KV bookkeeping."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ExplorerError
from ..speculative.options import HEAD_METHODS, SPECULATE
from .common import add_model_options, check_device, given, prepare_prompt, print_exchange, reply_of
from .draft_heads import heads_kind, load_heads_for
from .open import torchrun_rank_of

TREE_OPTIONS = ("tree_depth", "tree_topk", "tree_budget")


USAGE = ("%(prog)s [--model M] [--draft M | --lookup | --heads DIR | --method M]\n"
         "                          [--prompt TEXT | --prompts FILE] [options]")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "speculate", help="speculative decoding (draft chain, token tree or prompt lookup) with every decision",
        usage=USAGE, add_help=False,
    )  # fmt: skip
    common = p.add_argument_group("common options")
    common.add_argument("-h", "--help", action="help", help="show this help and exit")
    add_model_options(common, only=("model", "draft", "prompt", "chat"))
    common.add_argument("--prompts", metavar="FILE", help="a prompt set: one prompt a line (\\n escapes), JSON lines "
                        "with prompt (+ id, category), or Spec-Bench's question.jsonl")  # fmt: skip
    SPECULATE.add_arguments(common, names=("method",))
    common.add_argument("--lookup", action="store_true", help="prompt lookup drafting, no draft model (= --method "
                        "lookup)")  # fmt: skip
    common.add_argument("--heads", metavar="DIR", help="heads on the target (explorer train-heads) that draft; with "
                        "--lookup, where no n-gram matches (default: the heads found beside the target)")  # fmt: skip
    SPECULATE.add_arguments(common, names=("max_new",))
    common.add_argument("--json", action="store_true", help="one JSON line per prompt: prompt, stats (the "
                        "summary), text, prompt_ids, token_ids, then every step (see --no-steps)")  # fmt: skip
    drafting = p.add_argument_group("drafting and acceptance")
    SPECULATE.add_arguments(drafting, names=("gamma", "tree_depth", "tree_topk", "tree_budget", "medusa_tree",
                                             "accept", "temperature", "top_k", "seed"))  # fmt: skip
    measuring = p.add_argument_group("timing, prompt sets and output")
    measuring.add_argument("--runs", type=int, default=3, metavar="N", help="timed pairs of target-only and "
                           "speculative runs after a warm-up; the speedup is their median (default 3)")  # fmt: skip
    measuring.add_argument("--costs", action="store_true", help="also measure verifying 1..32 tokens: the "
                           "drafting cost per token and the break-even acceptance of this run")  # fmt: skip
    measuring.add_argument("--remeasure-costs", action="store_true", help="measure the cost curve of auto "
                           "shapes again")  # fmt: skip
    measuring.add_argument("--out", metavar="RUN.jsonl", help="stream every prompt's steps and stats into this run "
                           "file, resumed if it holds the same run (explorer open RUN.jsonl)")  # fmt: skip
    measuring.add_argument("--compare", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                           help="also run the prompts with these options changed (repeat for more configurations)")
    measuring.add_argument("--no-steps", action="store_true", help="with --json: leave out steps (the summary only)")
    measuring.add_argument("--workers", type=int, default=1, metavar="N", help="a prompt set on N local processes "
                           "(CPU), each taking a share of the prompts: the run file is the one a single process "
                           "writes, timings aside (default 1; several machines or GPUs: torchrun, docs/ddp.md)")
    advanced = p.add_argument_group("advanced")
    add_model_options(advanced, only=("system", "ignore_eos", "device", "dtype"))
    p.set_defaults(func=run)


def method_of(args: argparse.Namespace) -> str:
    """--method, else --lookup, else a tree when a tree option was given, else the chain."""
    tree = any(given(SPECULATE, args, n) for n in TREE_OPTIONS)
    method = getattr(args, "opt_method", None)
    if method is None and getattr(args, "heads", None) and not args.lookup:
        method = heads_kind(args.heads)
    if args.lookup and method not in (None, "lookup"):
        raise ExplorerError(f"--lookup and --method {method} contradict each other")
    method = method or ("lookup" if args.lookup else "tree" if tree else "auto")
    if method not in ("tree", "eagle") and tree:
        raise ExplorerError(f"--tree-depth, --tree-topk and --tree-budget go with tree or eagle drafting, not {method}")
    if method == "lookup" and args.draft:
        raise ExplorerError("prompt lookup drafts without a draft model; it cannot be combined with --draft")
    if method in HEAD_METHODS and args.draft:
        raise ExplorerError(f"{method} drafts with heads on the target; it cannot be combined with --draft")
    return method


def run(args: argparse.Namespace) -> int:
    from ..distributed.torchrun_set import first_rank_decides
    from ..models.checkpoint import default_model_dirs, load_model
    from ..session import DEFAULT_PROMPT
    from ..speculative.engine import run_speculation
    from ..speculative.records import SpecOptions

    if args.prompt is not None and args.prompts is not None:
        raise ExplorerError("give --prompt TEXT or --prompts FILE, not both")
    prompt_set = args.prompts is not None or args.out or args.compare
    torchrun_rank_of(args)  # under torchrun: a prompt set, its ranks torchrun's (explorer/cli/open.py)
    method = method_of(args)
    o = SPECULATE.from_args(args)
    chosen = None
    if method == "auto" or args.remeasure_costs:  # explorer/speculative/shape.py: the method expected to pay most
        # (under torchrun rank 0 alone measures and chooses: explorer/distributed/torchrun_set.py)
        method, chosen, lookup_heads = first_rank_decides(lambda: auto_method(args, method, o), args.device)
        if lookup_heads and not args.heads:  # auto: prompt lookup first, these heads where it does not pay more
            args.heads = lookup_heads
    if prompt_set:  # a prompt set: explorer/cli/open.py
        from .open import speculate_set

        return speculate_set(args, method)
    prompts = [args.prompt or DEFAULT_PROMPT]  # --prompts FILE went to speculate_set, which reads prompt sets
    accept = getattr(args, "opt_accept", None) or ("greedy" if o["temperature"] <= 0 else "sample")
    options = SpecOptions.from_values(o, method=method, accept=accept, detail=args.json and not args.no_steps)
    if args.runs < 1:
        raise ExplorerError(f"--runs must be an integer >= 1 (got {args.runs})")
    uses_heads = method in HEAD_METHODS
    options.check(has_draft=method not in ("lookup", *HEAD_METHODS), heads_kind=method if uses_heads else None)
    dirs = default_model_dirs()
    device = check_device(args.device)
    target = load_model(args.model or dirs["target"], dtype=args.dtype, device=device)
    heads = load_heads_for(target, method, args.heads) if uses_heads else None
    if method == "lookup" and args.heads:  # heads guess where no n-gram matches
        heads = load_heads_for(target, heads_kind(args.heads), args.heads)
    if heads is not None:
        options.check(has_draft=False, heads_kind=heads.kind)
    draft = None
    if method not in ("lookup", *HEAD_METHODS):
        draft = load_model(args.draft or dirs["draft"], dtype=args.dtype, device=device)
    for prompt in prompts:
        ids = prepare_prompt(target, prompt, args)
        result = run_speculation(target, draft, ids, o["max_new"], options, heads=heads, runs=args.runs,
                                 costs=args.costs)  # fmt: skip
        text = reply_of(target, result.token_ids)
        result.stats["method_choice"] = chosen
        if args.json:
            print_result_json(prompt, text, result, steps=not args.no_steps)
            continue
        s = result.stats
        div = "none" if s["first_divergence"] is None else s["first_divergence"]
        print_exchange(prompt, text, args)
        print(
            f"[{s['new_tokens']} tokens in {s['steps']} steps, {s['method']}/{s['accept']}: alpha {s['alpha']:.2f}, "
            f"mean accepted {s['mean_accepted_without_bonus']:.2f} (+bonus {s['mean_accepted_with_bonus']:.2f}), "
            f"{s['tokens_per_s']:.1f} tokens/s vs target-only {s['target_only_tokens_per_s']:.1f} "
            f"= {s['speedup']:.2f}x (median of {s['runs']}, {s['speedup_min']:.2f}-{s['speedup_max']:.2f}; "
            f"cost model {s['theoretical_speedup']:.2f}x, c {s['c']:.2f}); "
            f"first divergence from plain greedy: {div if o['temperature'] <= 0 else 'n/a (sampling)'}]",
            file=sys.stderr,
        )
        print_shape(chosen, s.get("shape"))
    return 0


def auto_method(args: argparse.Namespace, method: str, values: dict) -> tuple[str, str | None, str | None]:
    """``auto``: prompt lookup first with the heads found beside the target expected to pay most here, else the
    draft model's chain, else prompt lookup alone (explorer/speculative/shape.py, choose_method), why, and the
    directory of those heads (None: none); ``--remeasure-costs`` measures this machine's verification-cost curve
    again first."""
    from ..models.checkpoint import default_model_dirs, load_model
    from ..speculative.heads import find_heads, load_heads
    from ..speculative.records import SpecOptions
    from ..speculative.shape import choose_method, curve_for

    dirs = default_model_dirs()
    target = load_model(args.model or dirs["target"], dtype=args.dtype, device=check_device(args.device))
    curve = curve_for(target, remeasure=args.remeasure_costs)
    if method != "auto":
        return method, None, None
    found = find_heads(target.path)
    heads = {kind: load_heads(path, target) for kind, path in found.items()}
    has_draft = bool(args.draft) or not args.model  # the demo pair's draft goes with the demo target
    options = SpecOptions.from_values(values, method="eagle")
    method, why, kind = choose_method(options, target, heads, True if has_draft else None, curve)
    return method, why, str(found[kind]) if kind else None


def print_shape(chosen: str | None, report: dict | None) -> None:
    """The method auto chose and the shape the run drafted with, why, and a fallback to plain decoding."""
    if chosen:
        print(f"[{chosen}]", file=sys.stderr)
    if not report:
        return
    near = ", ".join(f"{name} {n['shape']['label']} {n['expected_speedup']:.2f}x"
                     for name, n in report["neighbours"].items() if n is not None and name != "chosen")  # fmt: skip
    print(f"[shape: {report['shape']['label']} (auto: {report['expected_tokens_per_step']:.2f} tokens/step expected "
          f"in {report['ms_per_step']:.2f} ms, {report['expected_speedup']:.2f}x; {near}); "
          f"{len(report['changes'])} choice(s) during the run]", file=sys.stderr)  # fmt: skip
    if report["fallback"]:
        print(f"[{report['fallback']}]", file=sys.stderr)


def print_result_json(prompt: str, text: str, result, steps: bool) -> None:
    """One JSON line: the summary (stats) first, the per-step records (by far the largest part) last."""
    from ..speculative.describe import export_step

    out = {"prompt": prompt, "stats": result.stats, "text": text, "prompt_ids": result.prompt_ids,
           "token_ids": result.token_ids}  # fmt: skip
    if steps:
        out["steps"] = [export_step(s) for s in result.steps]  # counted from 1, as on screen
    print(json.dumps(out))
