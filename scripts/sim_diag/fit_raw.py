"""Refit the bundled model's form (knee 256, no chunk or copied-context terms) and the new form (knee 384 with
``g`` and ``h``) with ``treadle.sim.calibrate.fit`` on the raw steps of grid_raw.py, and print the in-sample and
held-out mean absolute errors, also per step kind.

Usage: python3 scripts/sim_diag/fit_raw.py   (reads docs/results/sim/diag/raw-{1,2}t.json)
"""

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from treadle.sim.calibrate import fit
from treadle.sim.cost_model import StepShape, shape_of


def shape(raw: list[list[int]]) -> StepShape:
    """The cost model's shape of one step from its (tokens, start, prompt tokens) per scheduled request."""
    return shape_of(SimpleNamespace(scheduled=[SimpleNamespace(token_ids=range(n), start_pos=start,
                                                               num_prompt_tokens=prompt) for n, start, prompt in raw]))


KINDS = {
    "all": lambda s: True,
    "single chunk 100+": lambda s: s.prefill_tokens >= 100 and s.prefill_chunks == 1 and not s.decode_rows,
    "multi-chunk": lambda s: s.prefill_chunks > 1,
    "mixed": lambda s: s.prefill_tokens >= 100 and s.decode_rows > 0,
    "decode": lambda s: s.prefill_tokens == 0,
}


def _err(f, view, points, keep) -> float:  # noqa: ANN001
    return float(np.mean([abs(f.seconds(view(s)) - t) / t for s, t in points if keep(s)]))


def main() -> None:
    for threads in (1, 2):
        data = json.load(open(f"docs/results/sim/diag/raw-{threads}t.json"))
        train = [(shape(r), t) for r, t in data["train"]]
        test = [(shape(r), t) for r, t in data["test"]]
        old = lambda s: replace(s, prefill_chunks=1, prefill_gather=0.0)  # noqa: E731 - the bundled form
        forms = {"bundled form, knee 256": (fit([(old(s), t) for s, t in train], knee=256), old),
                 "new form, knee 384 + g + h": (fit(train, knee=384), lambda s: s)}
        for name, (f, view) in forms.items():
            kinds = ", ".join(f"{k} {_err(f, view, test, sel):.1%}" for k, sel in KINDS.items())
            print(f"{threads} threads, {name}: in sample {_err(f, view, train, KINDS['all']):.1%}; held out: {kinds}")


if __name__ == "__main__":
    main()
