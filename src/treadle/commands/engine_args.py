"""Engine flags shared by every command that builds an engine (generate, serve, bench)."""

from __future__ import annotations

import argparse

from treadle.config import EngineConfig


def add_engine_args(p: argparse.ArgumentParser) -> None:
    d = EngineConfig()
    p.add_argument("--model", default="default", help="'default' (bundled SmolLM2-135M-Instruct) or a local HF folder")
    p.add_argument("--max-model-len", type=int, default=None, help="context length (default: the model's)")
    p.add_argument("--max-num-seqs", type=int, default=d.max_num_seqs, help="most sequences in one step")
    p.add_argument(
        "--max-num-batched-tokens", type=int, default=d.max_num_batched_tokens, help="token budget of one step"
    )
    p.add_argument("--kv-cache-gb", type=float, default=d.kv_cache_gb, help="memory for the paged KV cache")
    p.add_argument("--block-size", type=int, default=d.block_size, help="tokens per KV block")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--no-prefix-cache", action="store_true", help="turn automatic prefix caching off")
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16"])
    p.add_argument("--no-decode-kernel", action="store_true",
                   help="plain fp32 matmuls only (no GGUF-block decode kernel)")
    p.add_argument("--no-attention-kernel", action="store_true",
                   help="decode attention in torch (gather into a workspace) instead of the in-place C kernel")
    p.add_argument("--prefill-tokens-per-decode-step", type=int, default=d.prefill_tokens_per_decode_step,
                   help=EngineConfig.__dataclass_fields__["prefill_tokens_per_decode_step"].metadata["help"])
    p.add_argument("--quantization", default=d.quantization, choices=["none", "int8"],
                   help=EngineConfig.__dataclass_fields__["quantization"].metadata["help"])
    p.add_argument("--max-loras", type=int, default=d.max_loras,
                   help="LoRA adapters resident at once (more are kept in CPU memory and swapped in, LRU)")
    p.add_argument("--max-lora-rank", type=int, default=d.max_lora_rank, help="largest LoRA rank r accepted")


def engine_config_from_args(args: argparse.Namespace) -> EngineConfig:
    d = EngineConfig()
    return EngineConfig(
        model=args.model,
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        block_size=args.block_size,
        kv_cache_gb=args.kv_cache_gb,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        enable_prefix_caching=not args.no_prefix_cache,
        threads=args.threads,
        decode_kernel=not args.no_decode_kernel,
        quantization=getattr(args, "quantization", d.quantization),
        prefill_tokens_per_decode_step=getattr(args, "prefill_tokens_per_decode_step",
                                               d.prefill_tokens_per_decode_step),
        attention_kernel=not getattr(args, "no_attention_kernel", False),
        max_loras=getattr(args, "max_loras", d.max_loras),
        max_lora_rank=getattr(args, "max_lora_rank", d.max_lora_rank),
        lora_modules=tuple(parse_lora_flag(v) for v in getattr(args, "lora", None) or ()),
    )


def parse_lora_flag(value: str) -> tuple[str, str]:
    """``NAME=PATH`` (a ``--lora`` value) -> (name, path). Raises ValueError naming the flag."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--lora expects NAME=PATH (a PEFT adapter folder), got {value!r}")
    return name, path
