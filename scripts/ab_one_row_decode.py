"""Single-stream decode speed of the one-row paths, interleaved in one process (docs/BENCHMARKS.md).

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/ab_one_row_decode.py [REPEATS]
Three variants of the same engine (bundled SmolLM2-135M, one chat prompt, 128 greedy tokens with
ignore_eos), taken in turn REPEATS times (default 4) so drift on a shared machine hits all alike:
- ``tiled``: per-op layers, every projection by the tiled GGUF kernel (the path before 2026-12-03);
- ``gemv1``: per-op layers, one-row steps by the one-row kernel (ggml_gemv1.c);
- ``fused``: the whole stack in one C call (decode_stack.c), the default.
Prints tok/s per run, the medians and the ratios to ``tiled``.
"""

import statistics
import sys
import time

from treadle.kernels import ggml
from treadle.llm import LLM
from treadle.sampling_params import SamplingParams

PROMPT = [{"role": "user", "content": "Write a long story about a dragon."}]


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    eng = LLM("default").engine
    one_row, tiled = ggml.BlockWeight.matmul, ggml.BlockWeight.matmul_tiled

    def run(n: int = 128) -> float:
        eng.add_request(f"r{time.perf_counter()}", PROMPT, SamplingParams(max_tokens=n, temperature=0.0,
                                                                          ignore_eos=True))
        t = time.perf_counter()
        while eng.has_unfinished_requests():
            eng.step()
        return n / (time.perf_counter() - t)

    variants = {"tiled": (tiled, False), "gemv1": (one_row, False), "fused": (one_row, True)}
    run(16)
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, (matmul, fused) in variants.items():
            ggml.BlockWeight.matmul, eng.model.fused_decode = matmul, fused
            rates[name].append(run())
    ggml.BlockWeight.matmul = one_row
    base = statistics.median(rates["tiled"])
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"{name:6s} tok/s {[round(x, 1) for x in r]}  median {med:.1f}  x{med / base:.2f} of tiled")


if __name__ == "__main__":
    main()
