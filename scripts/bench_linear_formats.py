"""CPU time of the 120 projections of SmolLM2-135M (30 layers) per weight format and row count.

Usage: PYTHONPATH=src OMP_NUM_THREADS=1 python scripts/bench_linear_formats.py [THREADS]
The weights of all 30 layers are distinct tensors, so they stream from memory as in a real step.
Formats: dense fp32 (F.linear), gguf (BlockWeight.matmul on the bundled blocks: the one-row kernel at
one row, the tiled Q4_1 kernel above), int8 (fbgemm dynamic int8 on pre-packed per-channel weights).
At one row it also prints the tiled kernel (gguf-tiled) and the lm_head (Q8_0) by both kernels.
The fits in treadle.models.linear_formats.COSTS come from this script's CPU times (taken 2026-12-02,
when gguf was the tiled kernel at every row count).
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
    h = f.get_tensor("lm_head")
    head = ggml.BlockWeight(h, "Q8_0", h.shape[0], h.shape[1] // 34 * 32)
    dense = {k: torch.randn(b.n, b.k) for k, b in blocks.items()}
    int8 = {k: Int8DynamicLinear(w) for k, w in dense.items()}
    for m in (1, 16, 64, 256):
        xs = {k: torch.randn(m, k) for k in (576, 1536)}
        t = {"dense": cpu_ms(lambda xs=xs: [torch.nn.functional.linear(xs[w.shape[1]], w) for w in dense.values()]),
             "gguf": cpu_ms(lambda xs=xs: [b.matmul(xs[b.k], lib) for b in blocks.values()]),
             "int8": cpu_ms(lambda xs=xs: [q.apply(xs[dense[k].shape[1]]) for k, q in int8.items()])}
        if m == 1:
            t["gguf-tiled"] = cpu_ms(lambda xs=xs: [b.matmul_tiled(xs[b.k], lib) for b in blocks.values()])
            t["lm_head gguf"] = cpu_ms(lambda xs=xs: head.matmul(xs[576], lib), 20)
            t["lm_head gguf-tiled"] = cpu_ms(lambda xs=xs: head.matmul_tiled(xs[576], lib), 20)
        print(f"rows {m:4d}  " + "  ".join(f"{k} {v:7.1f} ms" for k, v in t.items()), flush=True)


if __name__ == "__main__":
    main()
