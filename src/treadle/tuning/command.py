"""``treadle tune``: fine-tune an adapter from a dataset file (flags generated from the method's config).

``--method`` is read first; the flags of that method's config dataclass are then added by the project's
dataclass-to-argparse helper (``treadle.config_args``), so ``treadle tune --method dpo --help`` lists DPO's
flags. ``--data`` and ``--out`` have no default; ``TuneConfig.validate`` says when one is missing.
"""

from __future__ import annotations

import argparse
import json
import sys

from treadle.config_args import add_dataclass_args, dataclass_from_args
from treadle.tuning.config import METHODS


def _method_from_argv(argv: list[str]) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default="sft")
    known, _ = pre.parse_known_args(argv)
    return known.method if known.method in METHODS else "sft"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=sorted(METHODS), default="sft",
                   help="sft (messages), dpo (prompt/chosen/rejected) or kto (prompt/completion/label)")
    add_dataclass_args(p, METHODS[_method_from_argv(sys.argv[2:])])


def run(args: argparse.Namespace) -> int:
    import warnings

    from treadle.tuning.run import tune

    # deprecation notices from inside transformers/TRL/PEFT say nothing a `treadle tune` user can act on
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)(\.|$)")

    config = dataclass_from_args(METHODS[args.method], args)
    record = tune(config)
    summary = {k: record[k] for k in ("method", "adapter_dir", "ended", "train_wall_s", "train_cpu_s", "tokens_per_s")}
    summary["final_loss"] = record["metrics"]["final_loss"]
    print(json.dumps(summary, indent=2))
    return 0
