"""Prefill step time against chunk length (random ids, nothing cached), engine alone, by the wall clock: one
warm-up pass over the lengths, then two timed passes (alternating order), beside the bundled 2-thread fit.

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/prefill_curve.py THREADS FROM TO STEP [calib]
("calib": the calibration's engine settings, else treadle serve's defaults).
"""

import sys

import numpy as np

from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.sampling_params import SamplingParams
from treadle.sim.calibrate import _timed_steps
from treadle.sim.cost_model import StepShape, load_cost_model


def main(threads: int, lens: list[int], calib: bool) -> None:
    fit = load_cost_model("cpu-smollm2").fits[2]
    kw = {"num_kv_blocks": 2048, "max_num_seqs": 64} if calib else {}
    eng = LLMEngine(EngineConfig(model="default", threads=threads, **kw))
    one = SamplingParams(max_tokens=1, ignore_eos=True)
    rng = np.random.default_rng(1)
    res: dict[int, list[float]] = {n: [] for n in lens}
    for rep in range(3):
        for n in lens if rep % 2 == 0 else lens[::-1]:
            out: list = []
            ids = rng.integers(100, 40000, size=n).tolist()
            eng.add_request(None, ids, one, prompt_token_ids=ids)
            _timed_steps(eng, out, "wall")
            if rep:
                res[n].append(out[0][1])
    for n in lens:
        pred = fit.seconds(StepShape(n, 0, 0, n * (n + 1) / 2 / 1000, 1))
        print(n, " ".join(f"{t * 1000:.0f}" for t in res[n]), f"fit {pred * 1000:.0f}",
              f"ms/tok {min(res[n]) / n * 1000:.3f}")


if __name__ == "__main__":
    a = sys.argv
    main(int(a[1]), list(range(int(a[2]), int(a[3]), int(a[4]))), len(a) > 5 and a[5] == "calib")
