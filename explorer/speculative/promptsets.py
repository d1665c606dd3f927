"""Prompt sets: the prompts a run decodes, read from plain text (one prompt a line, ``\\n`` escapes), JSON lines
(``prompt`` + optional ``id`` and ``category``) or Spec-Bench's ``question.jsonl`` (``question_id``, ``category``,
``turns``: the first turn is the prompt, chat-templated when the model has a template). Qt-free."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExplorerError

ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    category: str = ""
    chat: bool = False  # a user turn (Spec-Bench): rendered with the model's chat template when it has one

    def as_dict(self) -> dict:
        return {"id": self.id, "category": self.category, "text": self.text, "chat": self.chat}


def unescape(line: str) -> str:
    r"""A plain-text prompt line: ``\n``, ``\t``, ``\r`` and ``\\`` become the characters; other backslashes stay."""
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line) and line[i + 1] in ESCAPES:
            out.append(ESCAPES[line[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _from_object(obj: dict, where: str, number: int) -> Prompt:
    """One JSON object: ``{"prompt": ...}`` or Spec-Bench's ``{"question_id", "category", "turns"}``."""
    if "turns" in obj:
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise ExplorerError(f"{where}: 'turns' must be a non-empty list of strings")
        pid, text, chat = obj.get("question_id", obj.get("id", number)), turns[0], True
    elif "prompt" in obj:
        text, pid, chat = obj["prompt"], obj.get("id", number), False
        if not isinstance(text, str):
            raise ExplorerError(f"{where}: 'prompt' must be a string")
    else:
        raise ExplorerError(f"{where}: an object needs 'prompt' (or Spec-Bench's 'turns'); it has {', '.join(obj)}")
    category = obj.get("category", "")
    if not isinstance(category, str):
        raise ExplorerError(f"{where}: 'category' must be a string")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)):
        raise ExplorerError(f"{where}: the id must be a string or an integer")
    return Prompt(str(pid), text, category, chat)


def _read_lines(path: Path) -> list[str]:
    """The file's lines; bytes that are not UTF-8 are named by file, line and column."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExplorerError(f"cannot read prompts file {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ExplorerError(f"prompts file {path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                            f"column {column})") from None  # fmt: skip


def _check_unicode(prompt: Prompt, where: str) -> None:
    """A JSON escape can spell a lone surrogate (``\\ud800``): a string no tokenizer, and no UTF-8 file, can take."""
    for name, value in (("prompt", prompt.text), ("id", prompt.id), ("category", prompt.category)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ExplorerError(f"prompts file {where}: the {name} is not valid Unicode (a lone surrogate "
                                f"\\u{ord(value[exc.start]):04x} at character {exc.start + 1})") from None  # fmt: skip


def read_prompt_set(path: str | Path) -> list[Prompt]:
    """The prompts of a file, in order; one line per problem: ``FILE, line N: ...``. A ``.jsonl`` file must be
    JSON objects throughout; a text file may mix plain lines with JSON strings or objects (older files)."""
    path = Path(path)
    lines = _read_lines(path)
    strict_json = path.suffix.lower() in JSON_SUFFIXES
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path.name}, line {lineno}"
        number = len(prompts) + 1
        head = line.lstrip()[:1]
        if strict_json or head in ("{", '"'):
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                if strict_json:
                    raise ExplorerError(f"{where}: not a JSON object ({exc.msg}, column {exc.colno})") from None
                value = None
            if isinstance(value, dict):
                prompt = _from_object(value, where, number)
            elif isinstance(value, str) and not strict_json:
                prompt = Prompt(str(number), value)
            elif strict_json:
                raise ExplorerError(f"{where}: each line must be a JSON object, not {type(value).__name__}")
            else:
                prompt = Prompt(str(number), unescape(line))
        else:
            prompt = Prompt(str(number), unescape(line))
        if not prompt.text:
            raise ExplorerError(f"{where}: the prompt is empty")
        _check_unicode(prompt, f"{path}, line {lineno}")
        if prompt.id in seen:
            raise ExplorerError(f"{where}: id {prompt.id!r} was already used on line {seen[prompt.id]}")
        seen[prompt.id] = lineno
        prompts.append(prompt)
    if not prompts:
        raise ExplorerError(f"no prompts in {path}")
    return prompts


def encode_prompt(model, prompt: Prompt) -> list[int]:
    """The prompt's token ids for ``model`` (a LoadedModel): a chat turn (Spec-Bench) through the model's chat
    template when it has one, else (and for every other prompt) the text as the tokenizer encodes it."""
    if prompt.chat and model.prompt_format.chat_template is not None:
        return model.prompt_ids(prompt.text, chat=True)
    return model.encode(prompt.text)
