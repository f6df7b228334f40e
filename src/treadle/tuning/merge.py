"""Fold a LoRA adapter into its base model and save a plain Hugging Face folder (any server can load it).

W' = W + (alpha/r) * B @ A per adapted projection (PEFT's ``merge_and_unload``); the tokenizer and chat
template files of the base folder are copied beside the weights. Used to evaluate an adapter with
``treadle serve --model MERGED`` before multi-LoRA serving exists, and to ship a full model.

Usage: ``python -m treadle.tuning.merge ADAPTER_DIR OUT_DIR [--model BASE]`` (BASE defaults to the
``model`` recorded in ADAPTER_DIR/tune_config.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json")


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, model: str | Path | None = None) -> Path:
    """Write base + adapter merged into ``out_dir`` (float32 safetensors); return ``out_dir``."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    from treadle.models.registry import resolve_model

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if model is None:
        model = json.loads((adapter_dir / "tune_config.json").read_text())["model"]
    base_dir, _ = resolve_model(model)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    merged = peft.PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            shutil.copy(base_dir / name, out_dir / name)
    return out_dir


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m treadle.tuning.merge", description=__doc__.splitlines()[0])
    p.add_argument("adapter")
    p.add_argument("out")
    p.add_argument("--model", default=None, help="base model (default: the one in tune_config.json)")
    a = p.parse_args()
    print(merge_adapter(a.adapter, a.out, a.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
