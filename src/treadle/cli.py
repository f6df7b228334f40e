"""The ``treadle`` command. Each subcommand lives in its own module with ``register``/``run``.

A command module defines ``NAME``, ``HELP``, ``register(parser)`` (adds its flags) and
``run(args) -> int``. Modules are imported only when their command runs, so ``treadle --help``
stays fast and a missing optional extra only breaks the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from treadle.help_format import DefaultsHelpFormatter, show_defaults

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("treadle.commands.generate", "generate text offline with the engine (no server)"),
    "model-path": ("treadle.commands.model_path", "print the folder of the converted default model"),
    "serve": ("treadle.server.command", "run the OpenAI-compatible server"),
    "gateway": ("treadle.gateway.command", "one OpenAI endpoint over many replicas: routing, autoscaling, failover"),
    "bench": ("treadle.bench.command", "benchmarks: `bench engine`, `bench serve` (load test), `bench compare`"),
    "report": ("treadle.report.command", "Markdown + HTML report (summary, recommendations, risks) from result files"),
    "eval": ("treadle.evals.command", "run quality eval suites (accuracy, coherence, safety) against an endpoint"),
    "gate": ("treadle.evals.gate_command", "validation gate: candidate eval results vs production's"),
    "sim": ("treadle.sim.command", "simulate a gateway + fleet on a trace with the real scheduler/routing/autoscaler"),
    "tune": ("treadle.tuning.command", "fine-tune a LoRA adapter from a dataset (SFT, DPO, KTO) with TRL + PEFT"),
    "tune-data": ("treadle.tuning.data_command", "write built-in training sets (bitext_intent SFT, safety mix)"),
    "review": ("treadle.feedback.review_command", "expert review queue: list, show, approve, correct, reject, label, scan"),
    "dataset": ("treadle.feedback.dataset_command", "curated datasets from reviewed feedback: build, list, show, lineage"),
    "data": ("treadle.feedback.data_command", "retention: `data delete --user U` removes a user's records"),
    "keys": ("treadle.feedback.keys_command", "API keys with roles (user, reviewer, admin) in the store"),
    "simulate-users": ("treadle.feedback.simulate", "simulated users and experts (Bitext) against a live endpoint"),
    "registry": ("treadle.registry.command", "model registry: versions with lineage, aliases, promote, rollback"),
    "loop": ("treadle.loop.command", "the improvement loop: dataset -> tune -> gate -> canary -> promote/rollback"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="treadle", description="Treadle: LLM serving and operations")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=DefaultsHelpFormatter)
        p.set_defaults(_module=module)
        if name in sys.argv[1:2]:  # only the chosen command's flags need importing
            importlib.import_module(module).register(p)
            show_defaults(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = build_parser().parse_args()
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except ValueError as e:  # bad input: say what is wrong, no traceback
        print(f"treadle {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
