"""Engine throughput in-process, closed loop, as `treadle bench peers` loads a server (docs/BENCHMARKS.md).

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/engine_closed_loop.py CONCURRENCY [--same-prompt]
Keeps CONCURRENCY requests in flight over 3 x CONCURRENCY ShareGPT chat prompts (<= 64 tokens, seed 0, as the
decode levels of bench peers) with 128 greedy output tokens each (ignore_eos); ``--same-prompt``: every request
is one short chat prompt, all started together. Prints output tok/s of two passes. Compare a server's figure
with this one to see the HTTP path's cost; run it with PYTHONPATH=<another checkout>/src to compare commits.
"""

import sys
import time

from treadle.bench.workloads import make_workload
from treadle.llm import LLM
from treadle.sampling_params import SamplingParams

SAME = [{"role": "user", "content": "Write a long story about a dragon."}]


def main() -> None:
    c = int(sys.argv[1])
    same = "--same-prompt" in sys.argv
    eng = LLM("default").engine
    prompts = [SAME] * c if same else [r.messages or r.prompt for r in make_workload(
        "sharegpt", 3 * c, 0, 128, max_prompt_tokens=64)]
    params = SamplingParams(max_tokens=128, temperature=0.0, ignore_eos=True)

    def run() -> float:
        pending, inflight, tokens = list(prompts), 0, 0
        t = time.perf_counter()
        while pending or inflight:
            while pending and inflight < c:
                eng.add_request(f"r{time.perf_counter()}", pending.pop(0), params)
                inflight += 1
            for out in eng.step():
                if out.finished:
                    inflight, tokens = inflight - 1, tokens + 128
        return tokens / (time.perf_counter() - t)

    run()  # warm-up pass
    print(f"{c} streams{' (same prompt)' if same else ''}: tok/s {[round(run(), 1) for _ in range(2)]}")


if __name__ == "__main__":
    main()
