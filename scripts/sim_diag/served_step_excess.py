"""How much longer a served replica's own steps take than the cost file's fit, by load (docs/SIMULATION.md,
"Validation against reality (2026-12-03, third session)"): `treadle serve --model default` with its engine's
step log (`TREADLE_STEP_LOG`), `treadle bench serve` ShareGPT runs at 1, 4 and 16 in flight (the larger
validation runs' settings, fewer requests), then the decode scenarios on an engine alone for the machine's speed
against the fit (`step_drift`, as `treadle sim calibrate --serving` does). Per level: the excess per decode row of
the decode-only steps, and a least-squares split of every step's excess into per decode row + per prefill token.

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/served_step_excess.py [COST]   (~2 min)
"""

import subprocess
import sys
from pathlib import Path

import numpy as np

from treadle.bench.http_throughput import stop_server
from treadle.sim.cost_model import load_cost_model
from treadle.sim.served_steps import read_steps
from treadle.sim.serving_overhead import start_logged_server

T = str(Path(sys.executable).parent / "treadle")


def alone_steps() -> list:
    """The decode scenarios of 1, 4 and 16 rows sharing a 256-token prefix on a 2-thread engine alone, by the
    wall clock (the reference `treadle sim calibrate --serving` used until 2026-12-03's fourth session)."""
    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine
    from treadle.sim.calibrate import measure

    engine = LLMEngine(EngineConfig(model="default", threads=2, num_kv_blocks=2048, max_num_seqs=64))
    measure(engine, 99, "wall", [], [(1, 256)], [])  # warm-up
    return measure(engine, 0, "wall", [], [(1, 256), (4, 256), (16, 256)], [])


def main() -> None:
    fit = load_cost_model(sys.argv[1] if len(sys.argv) > 1 else "cpu-smollm2").fits[2]
    srv, url, log = start_logged_server()
    marks = []
    try:
        for c in (1, 4, 16):
            marks.append((c, len(log.read_text().splitlines())))
            subprocess.run([T, "bench", "serve", "--base-url", url, "--max-tokens", "64", "--no-progress",
                            "--workload", "sharegpt", "--num-requests", str(max(24, 6 * c)), "--concurrency", str(c),
                            "--seed", str(c), "--max-prompt-tokens", "512", "--out", str(log.parent / f"c{c}.json")],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        marks.append((0, len(log.read_text().splitlines())))
    finally:
        stop_server(srv)
    alone = alone_steps()
    drift = float(np.median([t / fit.seconds(s) for s, t in alone if s.prefill_tokens == 0]))
    steps = read_steps(log)
    print(f"machine at {drift:.2f}x the fit (engine alone, decode scenarios)")
    for (c, a), (_, b) in zip(marks, marks[1:], strict=False):
        seg = steps[a:b]
        x = np.array([[s.decode_rows, s.prefill_tokens] for s, _ in seg], float)
        y = np.array([t - drift * fit.seconds(s) for s, t in seg])
        dec = x[:, 1] == 0
        per_row, per_tok = np.linalg.lstsq(x, y, rcond=None)[0]
        print(f"{c:2d} in flight: {len(seg)} steps; decode-only steps {y[dec].sum() / x[dec, 0].sum() * 1e3:.3f} ms "
              f"per decode row; all steps: {per_row * 1e3:.3f} ms per decode row + {per_tok * 1e3:.4f} ms per "
              f"prefill token ({per_tok / fit.b:.0%} of b); steps with a prompt chunk "
              f"{(y[~dec] / np.array([drift * fit.seconds(s) for (s, _), d in zip(seg, dec, strict=True) if not d])).mean():+.0%}")


if __name__ == "__main__":
    main()
