"""``treadle bench tune``: training speed of ``treadle tune`` SFT, plain path vs shared-prefix path.

Work fixed by the issue: the Bitext train split in the ``bitext_intent`` prompt (3,612 examples), LoRA
r=16 on all seven projections, the bundled model. Each variant trains ``--steps`` optimizer steps; the
first ``--warmup`` steps are left out of the figures. Per variant: wall seconds, CPU-seconds (user+system
of this process, which sharing the machine inflates less than wall time) and input tokens per step, and
their extrapolation to one epoch (ceil(3612 / batch) steps). ``epoch_min_at_cores`` = CPU-seconds per
epoch / cores / 60, the estimate for a machine whose cores this run had to itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from treadle.tuning.record import cpu_seconds


def _step_clock():  # noqa: ANN202 - a TrainerCallback; transformers is imported only when a bench runs
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """(wall, cpu-seconds, input tokens) at the end of every optimizer step."""

        def __init__(self) -> None:
            self.marks: list[tuple[float, float, int]] = []

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            self.marks.append((time.monotonic(), cpu_seconds(), state.num_input_tokens_seen))

    return StepClock()


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' or a local HF folder")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per variant")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the figures")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: every core this process may use)")
    p.add_argument("--variants", default="plain,shared", help="comma list of plain, shared")
    p.add_argument("--note", default="", help="free text stored in the result (e.g. 'machine shared')")
    p.add_argument("--json", dest="json_out", default="bench-tune.json")


def _variant(name: str, args: argparse.Namespace, data: Path, work: Path) -> dict:
    from treadle.tuning import config_for, tune

    clock = _step_clock()
    cfg = config_for("sft", data=str(data), out=str(work / name), model=args.model, max_steps=args.steps,
                     batch_size=args.batch_size, lora_r=args.lora_r, lora_alpha=2.0 * args.lora_r,
                     save_steps=10 * args.steps, threads=args.threads, progress=False, shared_prefix=name == "shared")
    record = tune(cfg, extra_callbacks=[clock])
    (w0, c0, t0), (w1, c1, t1) = clock.marks[args.warmup - 1], clock.marks[-1]
    steps = len(clock.marks) - args.warmup
    epoch_steps = math.ceil(record["dataset"]["examples"] / args.batch_size)
    cpu_step = (c1 - c0) / steps
    return {
        "variant": name, "steps_measured": steps, "wall_s_per_step": (w1 - w0) / steps, "cpu_s_per_step": cpu_step,
        "tokens_per_step": (t1 - t0) / steps, "tokens_per_s": (t1 - t0) / (w1 - w0),
        "tokens_per_cpu_s": (t1 - t0) / (c1 - c0), "epoch_steps": epoch_steps,
        "epoch_wall_min": (w1 - w0) / steps * epoch_steps / 60, "epoch_cpu_s": cpu_step * epoch_steps,
        "epoch_min_at_cores": cpu_step * epoch_steps / record["threads"] / 60, "threads": record["threads"],
        "shared_prefix": record.get("shared_prefix"), "loss_curve": record["metrics"]["loss_curve"],
    }


def run(args: argparse.Namespace) -> int:
    from treadle.tuning.builtin_data import write_bitext_intent
    from treadle.tuning.record import library_versions

    if args.steps <= args.warmup:
        raise ValueError(f"--steps must be > --warmup ({args.warmup}), got {args.steps}")
    results = []
    with tempfile.TemporaryDirectory(prefix="treadle-bench-tune-") as tmp:
        work = Path(tmp)
        write_bitext_intent(work)
        for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
            if name not in ("plain", "shared"):
                raise ValueError(f"--variants: {name!r} is not one of plain, shared")
            print(f"[bench tune] {name}: {args.steps} steps, batch {args.batch_size}", file=sys.stderr, flush=True)
            results.append(_variant(name, args, work / "bitext_intent_sft.jsonl", work))
    doc = {"bench": "tune", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": sys.argv[1:],
           "note": args.note, "lora_r": args.lora_r, "batch_size": args.batch_size, "versions": library_versions(),
           "results": results}
    if len(results) == 2:
        doc["shared_speedup_cpu"] = results[0]["cpu_s_per_step"] / results[1]["cpu_s_per_step"]
    Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n")
    for r in results:
        print(f"{r['variant']:>6}: {r['tokens_per_s']:.0f} tok/s, {r['cpu_s_per_step']:.2f} CPU-s/step, "
              f"epoch ~{r['epoch_wall_min']:.1f} min wall here, ~{r['epoch_min_at_cores']:.1f} min on "
              f"{r['threads']} free cores")
    return 0
