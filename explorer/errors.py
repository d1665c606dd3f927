"""One exception type for every problem a user can cause, so the CLI and GUI can show one clear line."""


class ExplorerError(Exception):
    """Bad input (model directory, tokenizer, prompt, trace file...). The message is shown as-is to the user."""
