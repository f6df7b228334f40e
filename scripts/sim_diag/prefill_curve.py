"""Prefill step time against chunk length (random ids, nothing cached), engine alone, by the wall clock.

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/prefill_curve.py THREADS FROM TO STEP [calib]
("calib": the calibration engine settings, else treadle serve defaults). Prints each length's two timed runs."""
import sys

import numpy as np

from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.sampling_params import SamplingParams
from treadle.sim.calibrate import _timed_steps
from treadle.sim.cost_model import load_cost_model

fit = load_cost_model("cpu-smollm2").fits[2]
kw = dict(num_kv_blocks=2048, max_num_seqs=64) if len(sys.argv) > 5 and sys.argv[5] == "calib" else {}
eng = LLMEngine(EngineConfig(model="default", threads=int(sys.argv[1]), **kw))
print("config", kw, eng.config.num_threads if hasattr(eng.config, "num_threads") else "")
one = SamplingParams(max_tokens=1, ignore_eos=True)
rng = np.random.default_rng(1)
lens = list(range(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
res = {n: [] for n in lens}
for rep in range(3):
    for n in (lens if rep % 2 == 0 else lens[::-1]):
        out = []
        ids = rng.integers(100, 40000, size=n).tolist()
        eng.add_request(None, ids, one, prompt_token_ids=ids)
        _timed_steps(eng, out, "wall")
        if rep:
            res[n].append(out[0][1])
for n in lens:
    from treadle.sim.cost_model import StepShape
    pred = fit.seconds(StepShape(n, 0, 0, n * (n + 1) / 2 / 1000))
    print(n, " ".join(f"{t*1000:.0f}" for t in res[n]), f"fit {pred*1000:.0f}", f"ms/tok {min(res[n])/n*1000:.3f}")
