"""Decode steps of rows that share their prefix against rows with prompts of their own, on a 2-thread engine
alone, both against the cost file's fit (docs/SIMULATION.md, "fourth session"): B rows (1, 4, 16, 32) after L
tokens (256, 1,024), 16 greedy tokens each, shared prefix then distinct prompts, two passes. Why `decode_kv`.

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/shared_vs_distinct.py [COST=cpu-smollm2]   (~2 min)
"""
import sys

import numpy as np

from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.sampling_params import SamplingParams
from treadle.sim.calibrate import _ids, _timed_steps
from treadle.sim.cost_model import load_cost_model

fit = load_cost_model(sys.argv[1] if len(sys.argv) > 1 else "cpu-smollm2").fits[2]
eng = LLMEngine(EngineConfig(model="default", threads=2, num_kv_blocks=4096, max_num_seqs=64))
rng = np.random.default_rng(0)
one = SamplingParams(max_tokens=1, ignore_eos=True, temperature=0)


def run(b: int, length: int, shared: bool) -> tuple[float, float]:
    """Mean decode-only step seconds, and measured / fit over those steps."""
    prefix = _ids(rng, length)
    if shared:
        eng.add_request(None, prefix + _ids(rng, 1), one)
        _timed_steps(eng, [])
    for _ in range(b):
        p = prefix + _ids(rng, 16) if shared else _ids(rng, length + 16)
        eng.add_request(None, p, SamplingParams(max_tokens=16, ignore_eos=True, temperature=0))
    out: list = []
    _timed_steps(eng, out, "wall")
    dec = [(s, t) for s, t in out if s.prefill_tokens == 0]
    return sum(t for _, t in dec) / len(dec), sum(t for _, t in dec) / sum(fit.seconds(s) for s, _ in dec)


run(4, 64, True)  # warm-up
for _ in range(2):
    for b in (1, 4, 16, 32):
        for length in (256, 1024):
            a, d = run(b, length, True), run(b, length, False)
            print(f"b={b:2d} L={length:4d}: shared {a[0] * 1e3:6.2f} ms ({a[1]:.2f}x fit)  distinct {d[0] * 1e3:6.2f} ms "
                  f"({d[1]:.2f}x fit)", flush=True)
