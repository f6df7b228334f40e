"""``treadle gate CANDIDATE BASELINE``: the validation gate on two eval result sets (exit 0 pass, 1 fail)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "gate"
HELP = "validation gate: may a candidate's eval results replace production's?"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("candidate", help="candidate eval directory (with summary.json) or summary file")
    p.add_argument("baseline", help="production eval directory or summary file (same items)")
    p.add_argument("--threshold", type=float, default=0.95, help="absolute threshold for every gated metric")
    p.add_argument("--threshold-for", action="append", default=[], metavar="METRIC=V",
                   help="per-metric threshold, e.g. safety/overall=0.97 (repeatable)")
    p.add_argument("--confidence", type=float, default=0.95, help="family-wise confidence of the paired tests")
    p.add_argument("--test", choices=("mcnemar", "bootstrap"), default="mcnemar")
    p.add_argument("--correction", choices=("holm", "bonferroni"), default="holm")
    p.add_argument("--metrics", default=None, help="comma list of suite/metric ids (default: the gated ones)")
    p.add_argument("--superiority", default=None, metavar="METRICS",
                   help="comma list of suite/metric ids that must also improve significantly over the baseline "
                        "(a fine-tune's target), e.g. bitext_intent/accuracy")
    p.add_argument("--json", dest="json_out", default=None, help="also write the verdict as JSON here")


def parse_thresholds(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or "/" not in name:
            raise ValueError(f"--threshold-for must be SUITE/METRIC=VALUE, got {pair!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--threshold-for {name}: {value!r} is not a number") from None
    return out


def run(args: argparse.Namespace) -> int:
    from treadle.evals.gate import GatePolicy, run_gate
    from treadle.evals.results import load_results

    policy = GatePolicy(
        threshold=args.threshold, thresholds=parse_thresholds(args.threshold_for), confidence=args.confidence,
        test=args.test, correction=args.correction,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None,
        superiority=[m.strip() for m in args.superiority.split(",") if m.strip()] if args.superiority else [],
    )
    verdict = run_gate(load_results(args.candidate), load_results(args.baseline), policy)
    print(verdict.to_text())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(verdict.to_json(), indent=1) + "\n")
    return 0 if verdict.passed else 1
