"""``explorer open RUN.jsonl``: a prompt-set run in the app (or, with ``--json``, its analysis); and the prompt-set
half of ``explorer speculate`` (``--prompts FILE --out RUN.jsonl --compare KEY=VALUE``), which writes run files."""

from __future__ import annotations

import argparse
import json
import socket
import sys

from ..errors import ExplorerError
from ..speculative.options import SPECULATE
from .common import add_model_options, check_device, reply_of

RUN_SUFFIXES = (".jsonl",)


def add_parser(sub) -> None:
    p = sub.add_parser("open", help="open a prompt-set run file (explorer speculate --prompts F --out RUN.jsonl)")
    p.add_argument("run", metavar="RUN.jsonl", help="the run file")
    p.add_argument("--json", action="store_true", help="print the run's analysis as JSON instead of opening the app")
    add_model_options(p, skip=("prompt", "draft", "chat", "system", "ignore_eos"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..speculative.analysis import analyse
    from ..speculative.runs import read_run

    opened = read_run(args.run)  # errors before any window opens
    if args.json:
        print(json.dumps(analyse(opened)))
        return 0
    from ..ui.xcb_check import check_xcb_libraries

    check_xcb_libraries()  # one line naming the missing X11 libraries, not Qt's abort
    from ..ui.promptset_app import open_run_window

    return open_run_window(opened, theme=getattr(args, "theme", None) or "light")


def screenshot_run_file(args: argparse.Namespace) -> int:
    """``explorer screenshot --view promptset --run RUN.jsonl``: the prompt-set view on a stored run."""
    from ..atomic import check_output
    from ..recording.video import parse_size
    from ..speculative.runs import read_run

    if args.run is None:
        raise ExplorerError("--view promptset shows a stored run: give --run RUN.jsonl")
    if args.view not in ("promptset", "speculative"):
        raise ExplorerError(f"--run goes with --view promptset (or speculative), not {args.view}")
    settings = {}
    for item in args.set:  # --set prompt=ID --set config=N
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ExplorerError(f"--set takes KEY=VALUE (prompt=ID or config=N), got {item!r}")
        value = value.strip().strip('"')
        settings[key.strip()] = int(value) if key.strip() == "config" and value.lstrip("-").isdigit() else value
    unknown = set(settings) - {"prompt", "config"}
    if unknown:
        raise ExplorerError(f"the promptset view has no setting {sorted(unknown)[0]!r} (its settings: prompt, config)")
    size = parse_size(args.size, even=False)
    check_output(args.out, (".png",), "--out")
    opened = read_run(args.run)
    config = settings.get("config", 0)
    if isinstance(config, bool) or not isinstance(config, int) or not 0 <= config < len(opened.configurations):
        raise ExplorerError(f"config must be an integer in 0..{len(opened.configurations) - 1} (got {config!r})")
    from ..ui.promptset_app import screenshot_run

    prompt = None if "prompt" not in settings else str(settings["prompt"])
    out = screenshot_run(opened, args.out, size, theme=args.theme or "light", prompt=prompt,
                         step=None if args.step is None else args.step - 1,
                         config=config)  # fmt: skip
    print(out)
    return 0


# ---------------------------------------------------------------------------------------------- speculate --prompts
def base_values(args: argparse.Namespace, method: str) -> tuple[dict, bool]:
    """The base configuration (speculate's option names) and whether --accept was given."""
    values = SPECULATE.from_args(args)
    explicit = getattr(args, "opt_accept", None) is not None
    values["method"] = method
    if not explicit:
        values["accept"] = "greedy" if values["temperature"] <= 0 else "sample"
    return values, explicit


def speculate_set(args: argparse.Namespace, method: str) -> int:
    """Every prompt of --prompts (or the one --prompt) under the base options and each --compare, streamed into
    --out (resumed when it holds the same run), one line per prompt and configuration on stdout (JSON with --json),
    then the aggregates."""
    from ..atomic import check_output
    from ..speculative.analysis import analyse
    from ..speculative.runs import Configuration, check_configurations, make_header, parse_compare

    base, explicit_accept = base_values(args, method)
    configs = [Configuration("base", base)]
    configs += [parse_compare(text, base, explicit_accept) for text in args.compare]
    check_configurations([c for c in configs if not c.uses_heads], has_draft=True)  # before any model loads
    prompts = read_prompts_of(args)
    rank = torchrun_rank_of(args)
    if rank is not None:  # one of torchrun's ranks: join its group before a model loads (--device cuda: its GPU)
        from ..distributed.torchrun_set import join

        join(args.device)
    if args.out and not rank:  # under torchrun rank 0 writes the run file, on its node
        check_output(args.out, RUN_SUFFIXES, flag="--out")
    target, draft = load_models(args, configs, method)
    heads = resolve_heads(target, configs, getattr(args, "heads", None))
    check_configurations(configs, has_draft=draft is not None, heads=heads)
    encode, encoding = prompt_encoder(args, target)
    header = make_header(prompts, configs, target, draft, base["seed"], args.prompts, encoding, heads)
    done = stream_run(args, header, (prompts, configs), (target, draft, heads), encode)
    if rank:
        return 0  # rank 0 prints and writes what every rank computed
    if args.json:
        print(json.dumps(analyse(done)))
        return 0
    print_aggregates(done, configs)
    if args.out:
        where = "" if rank is None else f" on {socket.gethostname()} (rank 0's node)"
        print(f"run written to {args.out}{where} (explorer open {args.out})", file=sys.stderr)
    return 0


def read_prompts_of(args: argparse.Namespace) -> list:
    """The prompts of --prompts FILE, else the one --prompt (or the default prompt)."""
    from ..session import DEFAULT_PROMPT
    from ..speculative.promptsets import Prompt, read_prompt_set

    if args.prompts is not None:
        return read_prompt_set(args.prompts)
    return [Prompt("1", args.prompt or DEFAULT_PROMPT)]


def load_models(args: argparse.Namespace, configs: list, method: str) -> tuple:
    """The target, and the draft model when a configuration drafts with one."""
    from ..models.checkpoint import default_model_dirs, load_model

    dirs = default_model_dirs()
    device = check_device(args.device)
    target = load_model(args.model or dirs["target"], dtype=args.dtype, device=device)
    needs_draft = any(c.uses_draft for c in configs)
    if needs_draft and args.draft is None and args.model is not None and method == "lookup":
        raise ExplorerError("a compared configuration drafts with a model: give --draft DIR")
    draft = load_model(args.draft or dirs["draft"], dtype=args.dtype, device=device) if needs_draft else None
    return target, draft


def resolve_heads(target, configs: list, heads_dir: str | None) -> dict:
    """method -> heads: each head method's own (--heads DIR when it holds that kind, else found beside the
    target), and prompt lookup's fallback where no n-gram matches (--heads DIR's): as the app resolves them."""
    from ..session import Session
    from ..speculative.runs import heads_for_configurations
    from .draft_heads import heads_dir_for, heads_kind

    methods = {c.values["method"] for c in configs}
    uses = [c.values["method"] for c in configs if c.uses_heads]
    kind = heads_kind(heads_dir) if heads_dir and (uses or "lookup" in methods) else None
    dirs = {m: heads_dir_for(target, m, heads_dir if kind == m else None) for m in uses}
    lookup_kind = kind if "lookup" in methods else None
    if lookup_kind is not None:
        dirs.setdefault(lookup_kind, heads_dir)
    session = Session(target_dir=target.path, draft_dir=None, target=target, heads_dirs=dirs)
    return heads_for_configurations(session, configs, lookup_kind=lookup_kind)


def prompt_encoder(args: argparse.Namespace, target) -> tuple:
    """Prompt -> ids (--chat templates every prompt; a Spec-Bench turn is templated whenever the model has a
    template), and the encoding settings the run's header records. Applies --ignore-eos to the target."""
    chat_all, system = bool(getattr(args, "chat", None)), getattr(args, "system", None)
    ignore_eos = bool(getattr(args, "ignore_eos", None))
    if ignore_eos:
        target.eos_token_ids = ()

    def encode(p) -> list[int]:
        chat = chat_all or (p.chat and target.prompt_format.chat_template is not None)
        return target.prompt_ids(p.text, chat=chat, system=system if chat else None)

    return encode, {"chat": chat_all, "system": system, "ignore_eos": ignore_eos}


def stream_run(args: argparse.Namespace, header: dict, work: tuple, models: tuple, encode):
    """Run the pairs of ``work`` (prompts, configurations) not done yet with ``models`` (target, draft, heads),
    writing them into --out, with one line each on stdout; the whole run."""
    from ..speculative.runs import Run, RunWriter

    (prompts, configs), (target, draft, heads) = work, models
    writer = RunWriter(args.out, header) if args.out and not torchrun_rank_of(args) else None
    done = writer.run if writer is not None else Run(None, header)
    if writer is not None and done.results:
        print(f"resuming {args.out}: {len(done.results)} of {len(prompts) * len(configs)} done", file=sys.stderr)
    try:
        for r in prompt_results(args, (prompts, configs), (target, draft, heads), writer, encode, header):
            if writer is None:
                done.results.append(r)
            print_result(args, r, configs[r.config].key, reply_of(target, r.token_ids))
    finally:
        if writer is not None:
            writer.close()
    return done


def prompt_results(args: argparse.Namespace, work: tuple, models: tuple, writer, encode, header: dict):
    """The results of the pairs not done yet: in this process, with --workers N on N local ranks, or over
    torchrun's ranks (rank 0 gets them all)."""
    from ..speculative.runs import run_prompt_set

    (prompts, configs), (target, draft, heads) = work, models
    workers = getattr(args, "workers", 1) or 1
    if torchrun_rank_of(args) is not None:
        from ..distributed.torchrun_set import run_set

        return run_set(target, draft, prompts, configs, writer, encode=encode, header=header,
                       heads=heads, device=args.device)  # fmt: skip
    if workers == 1:
        return run_prompt_set(target, draft, prompts, configs, writer, encode=encode, heads=heads)
    if workers < 1 or workers > 64:
        raise ExplorerError(f"--workers must be an integer in 1..64 (got {workers})")
    if str(target.device).startswith("cuda"):
        raise ExplorerError("--workers runs its ranks on the CPU for now; leave out --device cuda or --workers")
    from ..distributed.promptsets import run_over_ranks

    return run_over_ranks(target, draft, prompts, configs, writer, workers=workers, encode=encode, heads=heads,
                          dtype=getattr(args, "dtype", None))  # fmt: skip


def torchrun_rank_of(args: argparse.Namespace) -> int | None:
    """This process's rank when torchrun started it (a prompt set over its ranks), else None; the options that
    make no sense there are one line each, before any rank waits on another."""
    from ..distributed.torchrun_set import torchrun_rank

    rank = torchrun_rank()
    if rank is None:
        return None
    if not (args.prompts is not None or args.out or args.compare):
        raise ExplorerError("under torchrun, explorer speculate runs a prompt set: give --prompts FILE --out RUN.jsonl")
    if (getattr(args, "workers", 1) or 1) != 1:
        raise ExplorerError("under torchrun the ranks are torchrun's: leave out --workers (or run without torchrun)")
    return rank


def print_result(args: argparse.Namespace, r, key: str, text: str) -> None:
    """One line per prompt and configuration; with --json ``text`` is the reply without control tokens."""
    s = r.stats
    if args.json:
        print(json.dumps({"prompt": r.prompt, "category": r.category, "config": key, "stats": s, "text": text,
                          "prompt_ids": r.prompt_ids, "token_ids": r.token_ids}), flush=True)  # fmt: skip
    else:
        div = s["first_divergence"]
        print(f"{r.prompt:>8}  {key:<16} alpha {s['alpha']:.2f}  tokens/step "
              f"{s['new_tokens'] / max(s['steps'], 1):.2f}  speedup {s['speedup'] or 0:.2f}x  "
              f"first divergence {'none' if div is None else div}", flush=True)  # fmt: skip


def print_aggregates(done, configs: list) -> None:
    """Per configuration and category: acceptance, tokens per step, speedup."""
    from ..speculative.analysis import categories

    for i, c in enumerate(configs):
        results = [r for r in done.results if r.config == i]
        print(f"{c.key} ({c.describe()}):")
        per = categories(results)
        if len(per) == 2:  # one category: its line would repeat "all"
            per = {"all": per["all"]}
        for name, k in per.items():
            sp = "n/a" if k.speedup is None else f"{k.speedup:.2f}x"
            print(f"  {name:<16} {k.prompts:>4} prompts  alpha {k.alpha:.2f}  mean accepted {k.mean_accepted:.2f} "
                  f"(+bonus {k.mean_with_bonus:.2f})  tokens/step {k.tokens_per_step:.2f}  speedup {sp}")
