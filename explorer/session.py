"""What is loaded and asked for: the models, the prompt, device and dtype. Qt-free; the GUI edits one of these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .attention.backends import use_backend
from .errors import ExplorerError
from .models.checkpoint import LoadedModel, default_device, default_model_dirs, load_model
from .models.options import DEFAULT_PROMPT  # declared there: the CLI's help reads it without loading torch


@dataclass
class Session:
    target_dir: Path = field(default_factory=lambda: default_model_dirs()["target"])
    draft_dir: Path | None = field(default_factory=lambda: default_model_dirs()["draft"])
    prompt: str = DEFAULT_PROMPT
    chat: bool = False  # wrap the prompt in the target's chat template (a user turn, the assistant's turn opened)
    system: str | None = None  # the chat's system prompt
    ignore_eos: bool = False  # decode past the eos ids of generation_config.json
    device: str = field(default_factory=default_device)
    dtype: str | None = None  # None: float32 on CPU, bf16/fp16 on CUDA
    attention_backend: str = "sdpa"
    target: LoadedModel | None = None
    draft: LoadedModel | None = None
    heads_dirs: dict[str, Path] = field(default_factory=dict)  # kind -> heads directory (default: found beside)
    _heads: dict = field(default_factory=dict, repr=False)  # (id(target), kind) -> loaded Heads

    def load_pair(self) -> tuple[LoadedModel, LoadedModel | None]:
        """Load the target and, if one is named, the draft with the chosen attention backend, without touching
        this session (safe in a worker thread); refuses a draft with another tokenizer."""
        target = load_model(self.target_dir, dtype=self.dtype, device=self.device)
        if self.ignore_eos:
            target.eos_token_ids = ()
        use_backend(target.model, self.attention_backend)
        draft = None
        if self.draft_dir is not None:
            draft = load_model(self.draft_dir, dtype=self.dtype, device=self.device)
            check_same_tokenizer(target, draft)
            use_backend(draft.model, self.attention_backend)
        return target, draft

    def load(self) -> None:
        """Load (or reload) the target and the draft into this session."""
        self.target, self.draft = self.load_pair()

    def heads_for(self, method: str):
        """The draft heads a head method (medusa, eagle, mtp) drafts with, loaded once per target: from
        ``heads_dirs[method]`` if set, else found beside the target (``DIR/heads-KIND``, ``demo-heads-KIND``).
        None for the other methods; a clear error when none are found."""
        from .speculative.heads import KINDS, find_heads, load_heads

        if method not in KINDS:
            return None
        if self.target is None:
            raise ExplorerError("no model is loaded")
        key = (id(self.target), method)
        if key not in self._heads:
            path = self.heads_dirs.get(method) or find_heads(self.target.path).get(method)
            if path is None:
                raise ExplorerError(
                    f"no {method} heads for {self.target.name} (train them: explorer train-heads --model "
                    f"{self.target.path} --kind {method} --out {self.target.path}/heads-{method})"
                )
            self._heads = {k: v for k, v in self._heads.items() if k[0] == id(self.target)}
            self._heads[key] = load_heads(path, self.target)
        return self._heads[key]

    def prompt_ids(self) -> list[int]:
        if self.target is None:
            raise ExplorerError("no model is loaded")
        return self.target.prompt_ids(self.prompt, chat=self.chat, system=self.system or None)


def check_same_tokenizer(target: LoadedModel, draft: LoadedModel) -> None:
    """A draft can serve a target only if both tokenize identically; vocab sizes alone say nothing (padding)."""
    if target.tokenizer.get_vocab() != draft.tokenizer.get_vocab():
        raise ExplorerError(
            f"draft {draft.name} and target {target.name} use different tokenizers "
            f"({draft.tokenizer.get_vocab_size()} vs {target.tokenizer.get_vocab_size()} tokens); "
            "speculative decoding needs one shared tokenizer"
        )
