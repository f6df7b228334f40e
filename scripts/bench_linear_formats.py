"""CPU time of the 120 projections of SmolLM2-135M (30 layers) per weight format and row count.

Usage: PYTHONPATH=src OMP_NUM_THREADS=1 python scripts/bench_linear_formats.py [THREADS]
The weights of all 30 layers are distinct tensors, so they stream from memory as in a real step.
Formats: dense fp32 (F.linear), gguf (the tiled Q4_1 kernel on the bundled blocks), int8 (fbgemm
dynamic int8 on pre-packed per-channel weights). The fits in treadle.models.linear_formats.COSTS
come from this script's CPU times.
"""

import sys
import time

import torch
from safetensors import safe_open

from treadle.kernels import ggml
from treadle.models.linear_formats import Int8DynamicLinear
from treadle.models.registry import default_model_path


def cpu_ms(fn, reps: int = 3) -> float:  # noqa: ANN001
    fn()
    t = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - t) / reps * 1e3


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    lib = ggml.load()
    f = safe_open(str(default_model_path() / "gguf_blocks.safetensors"), "pt")
    names = [k for k in f.keys() if k != "lm_head"]
    blocks = {k: ggml.BlockWeight(f.get_tensor(k), "Q4_1", f.get_tensor(k).shape[0],
                                  f.get_tensor(k).shape[1] // 20 * 32) for k in names}
    dense = {k: torch.randn(b.n, b.k) for k, b in blocks.items()}
    int8 = {k: Int8DynamicLinear(w) for k, w in dense.items()}
    for m in (1, 16, 64, 256):
        xs = {k: torch.randn(m, k) for k in (576, 1536)}
        t = {"dense": cpu_ms(lambda xs=xs: [torch.nn.functional.linear(xs[w.shape[1]], w) for w in dense.values()]),
             "gguf": cpu_ms(lambda xs=xs: [b.matmul(xs[b.k], lib) for b in blocks.values()]),
             "int8": cpu_ms(lambda xs=xs: [q.apply(xs[dense[k].shape[1]]) for k, q in int8.items()])}
        print(f"rows {m:4d}  " + "  ".join(f"{k} {v:7.1f} ms" for k, v in t.items()), flush=True)


if __name__ == "__main__":
    main()
