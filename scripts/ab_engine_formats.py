"""A/B of engine configurations in one process, interleaved: output tok/s and CPU ms per output token.

Usage: PYTHONPATH=src OMP_NUM_THREADS=1 AB_THREADS=1 python scripts/ab_engine_formats.py KINDS LEVELS TOKENS ROUNDS
  KINDS: comma list of base (the GGUF kernel only for <= 8 rows, torch gather attention: the engine
  before issue 17), new (the default now), int8 (--quantization int8), fp32 (no GGUF kernel).
  LEVELS: streams, e.g. 1,16,64 (short ShareGPT chat prompts of <= 64 tokens); TOKENS: output tokens
  per stream (ignore_eos); ROUNDS: interleaved repeats (medians printed).
CPU ms per output token at 1 thread is the figure that survives a shared machine (wall tok/s does not).
"""

import os
import statistics
import sys

from treadle.bench.format_bench import decode_rate, short_prompts
from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine


def run(engine: LLMEngine, prompts: list[list[int]], tokens: int) -> tuple[float, float]:
    r = decode_rate(engine, prompts, tokens)
    return r["tok_s"], r["cpu_ms_per_token"]


def make(kind: str) -> LLMEngine:
    e = LLMEngine(EngineConfig(threads=int(os.environ.get("AB_THREADS", "1")), kv_cache_gb=2.0,
                               quantization="int8" if kind == "int8" else "none",
                               attention_kernel=kind != "base", decode_kernel=kind != "fp32"))
    if kind == "base":  # the rule before the cost model: blocks only for steps of <= 8 rows
        for layer in e.model.layers:
            for m in layer.linears.values():
                m.max_rows = 8
        e.model.head.max_rows = 8
    return e


def main() -> None:
    kinds = sys.argv[1].split(",")
    levels = [int(x) for x in sys.argv[2].split(",")]
    tokens, rounds = int(sys.argv[3]), int(sys.argv[4])
    engines = {k: make(k) for k in kinds}
    tok = next(iter(engines.values())).tokenizer
    short = short_prompts(tok, max(levels), 64)
    for e in engines.values():
        run(e, short[:4], 4)  # warm-up
    res: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for lvl in levels:
            for k, e in engines.items():
                res.setdefault((k, lvl), []).append(run(e, short[:lvl], tokens))
                print(k, lvl, res[(k, lvl)][-1], flush=True)
    for (k, lvl), v in sorted(res.items(), key=lambda x: (x[0][1], x[0][0])):
        print(f"{lvl:3d} streams {k:6s} tok/s {statistics.median(a for a, _ in v):7.1f}  "
              f"CPU ms/token {statistics.median(b for _, b in v):7.2f}", flush=True)


if __name__ == "__main__":
    main()
