"""``treadle tune-data NAME --out DIR``: write a built-in training set (see ``treadle.tuning.builtin_data``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SETS = ("bitext_intent", "safety")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=SETS, help="bitext_intent (SFT) or safety (SFT + preference + held-back suite)")
    p.add_argument("--out", required=True, help="folder for the JSONL files")
    p.add_argument("--seed", type=int, default=0, help="seed for the choice of refusal sentences (safety)")
    p.add_argument("--answer-repeat", type=int, default=3,
                   help="safety: times each safe look-alike answer enters the SFT rows (3 balances them with "
                        "the refusals)")


def run(args: argparse.Namespace) -> int:
    from treadle.tuning import builtin_data

    out = Path(args.out)
    counts = builtin_data.write_bitext_intent(out) if args.name == "bitext_intent" \
        else builtin_data.write_safety(out, args.seed, args.answer_repeat)
    print(json.dumps({"out": str(out), "rows": counts}, indent=2))
    return 0
