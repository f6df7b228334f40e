"""Engine configuration: one frozen dataclass, validated at construction.

Each field is also a command-line flag (``treadle serve``/``generate``): its help text lives in
the field's metadata and :mod:`treadle.config_args` builds the flag, so a new option is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from treadle.config_args import AppendTuple

_DTYPES = ("float32", "bfloat16")
QUANTIZATIONS = ("none", "int8")


def parse_lora_module(value: str) -> tuple[str, str]:
    """``NAME=PATH`` (a ``--lora`` value) -> (name, path). Raises ValueError."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--lora expects NAME=PATH (a PEFT adapter folder), got {value!r}")
    return name, path


parse_lora_module.__name__ = "NAME=PATH"  # argparse names the expected form in its error message


@dataclass(frozen=True)
class EngineConfig:
    """Everything that shapes an engine instance.

    ``kv_cache_gb`` sizes the paged KV cache unless ``num_kv_blocks`` is given (tests use that).
    ``threads`` defaults to the CPUs this process may use (affinity and cgroup quota,
    ``treadle.cpus.usable_cpus``); replicas sharing a machine split them between them.
    """

    model: str = field(default="default", metadata={
        "help": "'default' (bundled SmolLM2-135M-Instruct) or a local HF folder"})
    dtype: str = field(default="float32", metadata={"help": "weight and activation dtype", "choices": _DTYPES})
    max_model_len: int | None = field(default=None, metadata={
        "help": "context length (default: the model's own)"})
    block_size: int = field(default=16, metadata={"help": "tokens per KV block"})
    kv_cache_gb: float = field(default=2.0, metadata={"help": "memory for the paged KV cache, in GB"})
    num_kv_blocks: int | None = field(default=None, metadata={
        "help": "KV-cache blocks (default: as many as --kv-cache-gb holds; overrides it when given)"})
    max_num_seqs: int = field(default=128, metadata={"help": "most sequences in one step"})
    max_num_batched_tokens: int = field(default=512, metadata={"help": "token budget of one step"})
    long_prefill_token_threshold: int = field(default=0, metadata={
        "help": "most prompt tokens one request prefills in a step, so long prompts share steps "
                "with decodes (0: no cap)"})
    prefill_tokens_per_decode_step: int = field(default=0, metadata={
        "help": "prefill/decode balance: most prompt tokens a step that also carries decodes may compute "
                "(smaller: better TPOT; 0: only the step budget limits them, best TTFT)"})
    enable_prefix_caching: bool = field(default=True, metadata={
        "help": "automatic prefix caching: reuse the KV blocks of a shared prompt prefix",
        "aliases": ("--prefix-cache",)})
    threads: int | None = field(default=None, metadata={
        "help": "torch threads (default: the CPUs this process may use: affinity and cgroup quota)"})
    # Decode steps with few rows read the GGUF blocks the weights came from (bit-identical
    # weights, ~5x fewer bytes per step); only for models converted from a Q4_1/Q8_0 GGUF.
    decode_kernel: bool = field(default=True, metadata={
        "help": "decode steps read the GGUF Q4_1/Q8_0 blocks the weights came from "
                "(--no-decode-kernel: plain fp32 matmuls only)"})
    attention_kernel: bool = field(default=True, metadata={
        "help": "decode rows attend in place in the paged KV cache with the C kernel (fp32; "
                "--no-attention-kernel: the torch gather path)"})
    fused_decode: bool = field(default=True, metadata={
        "help": "a decode-only step without LoRA runs every layer in one C call when both kernels "
                "are on (--no-fused-decode: per-op layers; same results to fp32 rounding)"})
    # Speed over exactness, opt-in (docs/ENGINE.md "Weight formats"): int8 per-channel weights with
    # int8 dynamic activations for every projection and the lm_head. Not the default: it is not exact.
    quantization: str = field(default="none", metadata={
        "help": "weight format: 'none' (fp32, exact; GGUF blocks where the cost rule picks them) or "
                "'int8' (experimental: int8 weights x int8 dynamic activations, fbgemm; ~1/3 of the CPU per "
                "projection, but far from fp32's greedy output on SmolLM2, see docs/BENCHMARKS.md)", "choices": QUANTIZATIONS})
    # Multi-LoRA serving (docs/LORA.md): adapters resident at once, largest rank accepted, and
    # (name, PEFT folder) pairs loaded at start (``treadle serve --lora NAME=PATH``, repeatable).
    max_loras: int = field(default=4, metadata={
        "help": "LoRA adapters resident at once; more are kept in CPU memory and swapped in (LRU)"})
    max_lora_rank: int = field(default=64, metadata={"help": "largest LoRA rank r an adapter may have"})
    lora_modules: tuple[tuple[str, str], ...] = field(default=(), metadata={
        "help": "serve the PEFT LoRA adapter in folder PATH as model NAME; repeatable (default: none)",
        "aliases": ("--lora",), "metavar": "NAME=PATH", "type": parse_lora_module, "action": AppendTuple})

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        for name in ("block_size", "max_num_seqs", "max_num_batched_tokens", "max_loras", "max_lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}")
        if self.quantization != "none" and self.dtype != "float32":
            raise ValueError(f"quantization={self.quantization!r} needs dtype='float32', got {self.dtype!r}")
        if self.prefill_tokens_per_decode_step < 0:
            raise ValueError(f"prefill_tokens_per_decode_step must be >= 0, got {self.prefill_tokens_per_decode_step}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if self.kv_cache_gb <= 0:
            raise ValueError(f"kv_cache_gb must be > 0, got {self.kv_cache_gb}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks must be >= 1, got {self.num_kv_blocks}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.long_prefill_token_threshold < 0:
            raise ValueError(f"long_prefill_token_threshold must be >= 0, got {self.long_prefill_token_threshold}")

    @property
    def num_threads(self) -> int:
        from treadle.cpus import usable_cpus

        return self.threads or usable_cpus()
