"""Decode-time matmuls straight from GGUF Q4_1 / Q8_0 blocks (see ``ggml_gemv.c``).

A single-stream decode step is memory-bound: it streams every weight once per token. fp32 weights
are 4 bytes each; Q4_1 blocks are 0.625 bytes and Q8_0 1.06, so reading the GGUF blocks the model
was converted from cuts the bytes per step by ~5x while rebuilding bit-identical fp32 weights.
``q*_gemm`` (one weight row at a time, at most ``max_rows()`` token rows) is the reference;
``q*_gemm_tiled`` serves two or more rows (weight rows rebuilt 4 at a time into an fp32 scratch,
multiplied against 3 token rows at a time) with the same summation order per output, so both give
the same bits, and a row's result does not depend on the other rows of a multi-row step.
``q*_gemv1`` (``ggml_gemv1.c``) serves steps of one row: the block scale is factored out of each
block's dot product, so the 4-bit values are only converted, never rebuilt into weights (faster at
one row: docs/BENCHMARKS.md "One-row decode"). It sums in another order, so a one-row step's result
differs from the same row's in a multi-row step by fp32 rounding (relative ~1e-6), as a dense
step's does. Which format a step uses (blocks or the fp32 GEMM) is the cost rule in
``treadle.models.linear_formats``.

The same library holds the decode attention (``paged_attention.c``), the few-row LoRA product
(``lora.c``, used by ``treadle.models.linear.add_lora``) and the whole decoder stack for decode-only
rows (``decode_stack.c``, used by ``treadle.models.decode_stack``).

The C file is compiled once per machine (gcc, ~1 s) into ``$TREADLE_CACHE/kernels`` and loaded
with ctypes after torch, so its OpenMP calls share torch's libgomp thread pool. Without gcc or
AVX2/FMA/F16C, ``load()`` returns None and every step uses fp32 matmuls.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

import torch

from treadle.models.registry import cache_root

log = logging.getLogger("treadle.kernels")
_SRCS = [Path(__file__).with_name(n) for n in ("ggml_gemv.c", "ggml_gemv1.c", "paged_attention.c", "lora.c",
                                                       "decode_stack.c")]  # one library
_HEADERS = [Path(__file__).with_name("simd.h")]  # included by the sources: part of the build's hash
_FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-ffp-contract=off", "-shared", "-fPIC"]
BLOCK_BYTES = {"Q4_1": 20, "Q8_0": 34}
GEMV1_MAX_K = 16384  # gemv1_max_k() of ggml_gemv1.c (test-pinned): the one-row kernel's widest input
_lib: ctypes.CDLL | None = None
_tried = False


def _cpu_ok() -> bool:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return {"avx2", "fma", "f16c"} <= flags


def build(force: bool = False) -> Path | None:
    """Compile the kernel if needed; return the shared library's path, or None if unavailable."""
    if not _cpu_ok() or shutil.which("gcc") is None:
        return None
    sources = b"".join(p.read_bytes() for p in (*_SRCS, *_HEADERS))
    tag = hashlib.sha256(sources + " ".join(_FLAGS).encode()).hexdigest()[:12]
    out = cache_root() / "kernels" / f"treadle_kernels-{tag}.so"
    if out.is_file() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = ["gcc", *_FLAGS, *map(str, _SRCS), "-o", str(tmp), "-lm"]  # "simd.h" is found beside the sources
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        log.warning("could not build the GGUF decode kernel: %s", proc.stderr.strip()[:500])
        return None
    os.replace(tmp, out)
    return out


def load() -> ctypes.CDLL | None:
    """The loaded kernel library (built on first use), or None. Set TREADLE_NO_KERNELS=1 to disable."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("TREADLE_NO_KERNELS"):
        return None
    path = build()
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    for name in ("q4_1_gemm", "q8_0_gemm", "q4_1_gemm_tiled", "q8_0_gemm_tiled", "q4_1_gemv1", "q8_0_gemv1"):
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.max_rows.restype = ctypes.c_int
    lib.gemv1_max_k.restype = ctypes.c_int
    lib.decode_stack_fields.restype = ctypes.c_int
    fn = lib.decode_stack
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_long] + \
        [ctypes.c_void_p] * 3 + [ctypes.c_float] * 2
    fn = lib.paged_decode_attention
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 4 + [ctypes.c_long] + [ctypes.c_int] * 2 + [ctypes.c_float]
    lib.paged_attention_max_head_dim.restype = ctypes.c_int
    fn = lib.lora_add
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int, ctypes.c_void_p] + [ctypes.c_int] * 4
    lib.lora_max_rows.restype = ctypes.c_int
    lib.lora_max_rank.restype = ctypes.c_int
    _lib = lib
    return lib


class BlockWeight:
    """One weight matrix ``[N, K]`` as GGUF blocks (uint8 ``[N, K / 32 * block_bytes]``)."""

    def __init__(self, blocks: torch.Tensor, qtype: str, n: int, k: int) -> None:
        if qtype not in BLOCK_BYTES:
            raise ValueError(f"qtype must be one of {sorted(BLOCK_BYTES)}, got {qtype!r}")
        if k % 32 or blocks.shape != (n, k // 32 * BLOCK_BYTES[qtype]) or blocks.dtype != torch.uint8:
            raise ValueError(f"blocks of shape {tuple(blocks.shape)} do not hold a {qtype} [{n}, {k}] matrix")
        self.blocks = blocks.contiguous()
        self.qtype, self.n, self.k = qtype, n, k
        self._fn = None

    def matmul(self, x: torch.Tensor, lib: ctypes.CDLL) -> torch.Tensor:
        """``x @ W.T`` for ``x`` of shape ``[M, K]`` (float32, any M): one row by the one-row kernel,
        more by the tiled kernel."""
        if x.shape[0] != 1 or self.k > GEMV1_MAX_K:
            return self.matmul_tiled(x, lib)
        x = x.contiguous()
        y = torch.empty(1, self.n, dtype=torch.float32)
        fn = lib.q4_1_gemv1 if self.qtype == "Q4_1" else lib.q8_0_gemv1
        fn(self.blocks.data_ptr(), x.data_ptr(), y.data_ptr(), 1, self.n, self.k)
        return y

    def matmul_tiled(self, x: torch.Tensor, lib: ctypes.CDLL) -> torch.Tensor:
        """``x @ W.T`` by the tiled kernel, whatever the row count (a row's bits do not depend on M)."""
        x = x.contiguous()
        y = torch.empty(x.shape[0], self.n, dtype=torch.float32)
        fn = lib.q4_1_gemm_tiled if self.qtype == "Q4_1" else lib.q8_0_gemm_tiled
        fn(self.blocks.data_ptr(), x.data_ptr(), y.data_ptr(), x.shape[0], self.n, self.k)
        return y

    def matmul_reference(self, x: torch.Tensor, lib: ctypes.CDLL) -> torch.Tensor:
        """The same product by the one-row-at-a-time kernel (``M <= max_rows()``); tests compare the two."""
        if x.shape[0] > lib.max_rows():
            raise ValueError(f"matmul_reference takes at most {lib.max_rows()} rows, got {x.shape[0]}")
        x = x.contiguous()
        y = torch.empty(x.shape[0], self.n, dtype=torch.float32)
        fn = lib.q4_1_gemm if self.qtype == "Q4_1" else lib.q8_0_gemm
        fn(self.blocks.data_ptr(), x.data_ptr(), y.data_ptr(), x.shape[0], self.n, self.k)
        return y
