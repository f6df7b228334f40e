"""Raw per-step shapes ((tokens, start, prompt tokens) per scheduled request) and wall times of the scenarios of
``treadle sim calibrate`` (its prefill grid, decode and mixed scenarios), a train and a held-out repetition, for
fit_raw.py. Raw rather than ``StepShape`` so that other model forms can be fitted on them later.

Usage (idle machine): flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/grid_raw.py THREADS
writes docs/results/sim/diag/raw-THREADSt.json (the 2026-12-02 22:52-22:58 UTC run is kept there).
"""

import json
import sys

import treadle.sim.calibrate as cal
from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine


def raw_shape(plan) -> list[tuple[int, int, int]]:  # noqa: ANN001 - SchedulerOutput
    return [(len(x.token_ids), x.start_pos, x.num_prompt_tokens) for x in plan.scheduled]


def main(threads: int) -> None:
    cal.shape_of = raw_shape  # calibrate's step timer records what shape_of returns
    eng = LLMEngine(EngineConfig(model="default", threads=threads, num_kv_blocks=2048, max_num_seqs=64))
    cal.measure(eng, 99, "wall", cal.PREFILL[:2], cal.DECODE[:1], [])  # warm-up
    res = {name: [[s, t] for s, t in cal.measure(eng, seed, "wall")] for name, seed in (("train", 0), ("test", 1))}
    with open(f"docs/results/sim/diag/raw-{threads}t.json", "w") as fh:
        json.dump(res, fh)
    print("done", threads, len(res["train"]))


if __name__ == "__main__":
    main(int(sys.argv[1]))
