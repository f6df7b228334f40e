"""The sampler's random draw, side by side (docs/BENCHMARKS.md, "Sampled decoding"):

1. the draw alone on (rows, 49,152) probabilities: the exponential race ``argmax(p / E)`` (what the sampler
   did before 2026-12-03, and what GPU samplers do) against the inverse-CDF draw (``treadle.engine.sampler.draw``);
2. decode-only engine steps of the bundled model at 2 threads (the calibration's decode scenarios, 1 and 16 rows
   at 256 tokens of shared prefix): greedy, sampled at temperature 1 by inverse CDF, and sampled with the
   exponential race put back in its place, interleaved over 8 rounds.

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sampler_draw_bench.py
"""

import time

import numpy as np
import torch

from treadle.engine import sampler
from treadle.engine.sampler import draw


def _ms(f, n: int = 50) -> float:  # noqa: ANN001
    f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e3


def race(probs: torch.Tensor, generators: list) -> torch.Tensor:
    """The exponential race (unseeded rows only: enough for timing)."""
    return (probs / torch.empty_like(probs).exponential_()).argmax(dim=-1)


def draw_alone() -> None:
    torch.set_num_threads(2)
    for rows in (1, 4, 16):
        probs = torch.softmax(torch.randn(rows, 49152), dim=-1)
        gens = [None] * rows
        old = _ms(lambda p=probs, g=gens: race(p, g))
        cdf = _ms(lambda p=probs, g=gens: draw(p, g))
        print(f"draw, {rows:2d} rows: exponential race {old:6.2f} ms, inverse CDF {cdf:5.2f} ms ({old / cdf:.0f}x)")


def engine_steps() -> None:
    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine
    from treadle.sim.calibrate import measure

    eng = LLMEngine(EngineConfig(model="default", threads=2, num_kv_blocks=2048, max_num_seqs=64))
    measure(eng, 99, "wall", [(32, 0)], [(1, 64)], [])
    res: dict = {}
    for rnd in range(8):
        kinds = ("greedy", "inverse CDF", "race")
        for kind in kinds[rnd % 3:] + kinds[:rnd % 3]:
            sampler.draw = race if kind == "race" else draw
            pts = measure(eng, rnd, "wall", [], [(1, 256), (16, 256)], [], temperature=0.0 if kind == "greedy" else 1.0)
            for rows in (1, 16):
                ms = [t * 1e3 for s, t in pts if s.prefill_tokens == 0 and s.decode_rows == rows]
                res.setdefault((rows, kind), []).append(float(np.median(ms)))
    sampler.draw = draw
    for rows in (1, 16):
        greedy = np.array(res[(rows, "greedy")])
        line = f"decode step, {rows:2d} rows: greedy {np.median(greedy):.2f} ms"
        for kind in ("inverse CDF", "race"):
            d = np.array(res[(rows, kind)]) - greedy
            line += (f"; sampled ({kind}) {np.median(res[(rows, kind)]):.2f} ms, minus greedy per round median "
                     f"{np.median(d):.2f} [{d.min():.2f}, {d.max():.2f}]")
        print(line)


if __name__ == "__main__":
    draw_alone()
    engine_steps()
