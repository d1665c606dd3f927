"""``explorer convert FILE.gguf --out DIR``: a GGUF file as a Hugging Face layout directory (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json) that transformers and explorer
both load. The directory appears complete or not at all."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ExplorerError
from ..models.options import DTYPE_NAMES

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="write a GGUF file as a Hugging Face layout directory (safetensors)")
    p.add_argument("gguf", metavar="FILE.gguf", help="the GGUF file")
    p.add_argument("--out", required=True, metavar="DIR", help="the directory to create (must not hold files)")
    p.add_argument("--to-dtype", default="bfloat16", choices=DTYPE_NAMES, dest="to_dtype",
                   help="dtype of the written weights (default: bfloat16)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save_file

    from ..atomic import atomic_dir
    from ..models.checkpoint import DTYPES
    from ..models.gguf import read_gguf

    out = Path(args.out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExplorerError(f"--out {out} exists and is not an empty directory")
    ckpt = read_gguf(Path(args.gguf), DTYPES[args.to_dtype], "cpu")
    raw = dict(ckpt.raw_config)
    if ckpt.rope_freqs is not None:
        raise ExplorerError("this GGUF stores Llama 3 rope frequency factors, which config.json cannot express; "
                            "open the .gguf file directly instead")  # fmt: skip
    raw.update(architectures=[ARCHITECTURES[raw["model_type"]]], torch_dtype=args.to_dtype,
               bos_token_id=ckpt.bos_token_id, eos_token_id=list(ckpt.eos_token_ids) or None)  # fmt: skip
    fmt = ckpt.prompt_format
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": fmt.bos_token, "eos_token": fmt.eos_token,
                  "add_bos_token": bool(fmt.add_bos_token), "add_eos_token": bool(fmt.add_eos_token),
                  "clean_up_tokenization_spaces": False}  # fmt: skip
    if fmt.chat_template:
        tok_config["chat_template"] = fmt.chat_template
    eos = list(ckpt.eos_token_ids)
    generation = {"bos_token_id": ckpt.bos_token_id, "eos_token_id": eos[0] if len(eos) == 1 else eos}
    tensors = {k: v.contiguous() for k, v in ckpt.tensors.items()}
    with atomic_dir(out) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2), encoding="utf-8")
        ckpt.tokenizer.save(str(tmp / "tokenizer.json"))
    n = sum(t.numel() for t in tensors.values())
    result = {"out": str(out.resolve()), "tensors": len(tensors), "parameters": n, "dtype": args.to_dtype,
              "torch": torch.__version__}  # fmt: skip
    print(json.dumps(result) if args.json else f"wrote {out} ({len(tensors)} tensors, {n / 1e6:.1f} M parameters, "
          f"{args.to_dtype})")  # fmt: skip
    return 0
