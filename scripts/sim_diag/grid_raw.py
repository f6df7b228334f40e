"""Raw per-step shapes ((tokens, start, prompt tokens) per scheduled request) and wall times of the dense
prefill grid, the decode scenarios and mixed steps, train and held-out repetitions, for fit_raw.py.

Usage (idle machine): flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/grid_raw.py THREADS
writes docs/results/sim/diag/raw-THREADSt.json (the 2026-12-02 22:52-22:58 UTC run is kept there).
"""
import json
import sys

import numpy as np

import treadle.sim.calibrate as cal
from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.sampling_params import SamplingParams
from treadle.sim.calibrate import DECODE, _ids, _timed_steps, measure

RAW = []
_orig = cal.shape_of
def shape_rec(plan):
    return [(len(x.token_ids), x.start_pos, x.num_prompt_tokens) for x in plan.scheduled]
cal.shape_of = shape_rec
def _point(s, t):
    return [s, t]

T = int(sys.argv[1])
PRE = [(p, s) for s in (0, 48, 512, 1024) for p in (32, 128, 256, 320, 384, 448, 512)]
MIX = [(b, p) for b in (4, 16, 32) for p in (128, 256, 448)]

def mixed(engine, seed):
    rng = np.random.default_rng(seed)
    vocab = 40000
    out = []
    one = SamplingParams(max_tokens=1, ignore_eos=True)
    for b, p in MIX:
        if p + b > 512:
            p = 512 - b
        prefix = _ids(rng, 256, vocab)
        engine.add_request(None, prefix + _ids(rng, 1, vocab), one)
        _timed_steps(engine, [])
        for _ in range(b):
            engine.add_request(None, prefix + _ids(rng, 16, vocab), SamplingParams(max_tokens=6, ignore_eos=True))
        engine.step()  # their prefill (16 tokens each) and first token
        engine.add_request(None, _ids(rng, p, vocab), one)
        _timed_steps(engine, out, "wall")
    return out

eng = LLMEngine(EngineConfig(model="default", threads=T, num_kv_blocks=2048, max_num_seqs=64))
measure(eng, 99, "wall", PRE[:2], DECODE[:1], [])
res = {}
for name, seed in (("train", 0), ("test", 1)):
    pts = measure(eng, seed, "wall", PRE, DECODE, []) + mixed(eng, seed)
    res[name] = [_point(s, t) for s, t in pts]
json.dump(res, open(f"docs/results/sim/diag/raw-{T}t.json", "w"))
print("done", T, len(res["train"]))
