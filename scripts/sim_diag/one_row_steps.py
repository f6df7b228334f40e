"""Decode-only step times of the engine at 2 threads by context length, fused step on and off (docs/SIMULATION.md).

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/one_row_steps.py
The calibration's decode scenarios (``treadle.sim.calibrate.measure``) for 1 row at 64, 256 and 1,024 tokens of
shared prefix (plus 16 of its own) and for 4 rows at 256, three passes in one process: fused, per-op, fused.
Prints each decode-only step's wall milliseconds (7 per request: 8 tokens, the first from its prefill step).
"""

import numpy as np

from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.sim.calibrate import measure


def main() -> None:
    eng = LLMEngine(EngineConfig(model="default", threads=2, num_kv_blocks=2048, max_num_seqs=64))
    measure(eng, 99, "wall", [(32, 0)], [(1, 64)], [])  # warm-up
    for fused in (True, False, True):
        eng.model.fused_decode = fused
        pts = measure(eng, 0, "wall", [], [(1, 64), (1, 256), (1, 1024), (4, 256)], [])
        for rows in (1, 4):
            ms = [round(t * 1e3, 1) for s, t in pts if s.prefill_tokens == 0 and s.decode_rows == rows]
            print(f"fused={fused} rows={rows}: {ms} (median {np.median(ms):.1f} ms)")


if __name__ == "__main__":
    main()
