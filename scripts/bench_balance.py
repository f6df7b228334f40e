"""Prefill/decode balance: closed loop with 16 in flight, ShareGPT chat prompts (<= 512 tokens), up to
128 output tokens (EOS stops), one engine per ``prefill_tokens_per_decode_step`` cap, run one after another.
TTFT / TPOT p50 and requests per second on a CPU-time clock (one thread), which a shared machine does
not distort the way it distorts wall time.

Usage: PYTHONPATH=src OMP_NUM_THREADS=1 python scripts/bench_balance.py CAPS NUM_REQUESTS   (CAPS e.g. 0,64)
"""

import statistics
import sys
import time

from treadle.bench import engine_bench as eb
from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.sampling_params import SamplingParams

IN_FLIGHT = 16


def closed_loop(engine: LLMEngine, prompts: list[list[int]], tag: str) -> dict[str, float]:
    clock = time.process_time
    params = SamplingParams(max_tokens=128, temperature=0.0)
    pending = list(enumerate(prompts))
    sent: dict[str, float] = {}
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    ntok: dict[str, int] = {}

    def admit() -> None:
        i, ids = pending.pop(0)
        rid = f"{tag}-{i}"
        sent[rid], ntok[rid] = clock(), 0
        engine.add_request(rid, ids, params)

    t0 = clock()
    while len(sent) < IN_FLIGHT and pending:
        admit()
    while engine.has_unfinished_requests():
        for o in engine.step():
            now, n = clock(), len(o.outputs[0].delta_token_ids)
            if n and o.request_id not in first:
                first[o.request_id] = now
            ntok[o.request_id] += n
            if o.finished:
                done[o.request_id] = now
                if pending:
                    admit()
    total = clock() - t0
    tpot = [(done[r] - first[r]) / (ntok[r] - 1) for r in done if ntok[r] > 1]
    return {"req_per_cpu_s": len(done) / total, "ttft_p50_ms": statistics.median(first[r] - sent[r] for r in done) * 1e3,
            "tpot_p50_ms": statistics.median(tpot) * 1e3}


def main() -> None:
    caps = [int(c) for c in sys.argv[1].split(",")]
    for cap in caps:
        engine = LLMEngine(EngineConfig(threads=1, kv_cache_gb=2.0, prefill_tokens_per_decode_step=cap))
        prompts = eb.throughput_prompts(engine.tokenizer, int(sys.argv[2]))
        r = closed_loop(engine, prompts, f"cap{cap}")
        print(f"cap {cap:4d}: req/CPU-s {r['req_per_cpu_s']:.3f}  TTFT p50 {r['ttft_p50_ms']:.0f} ms  "
              f"TPOT p50 {r['tpot_p50_ms']:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
