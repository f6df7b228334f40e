"""The run record (lineage for the registry): what was trained, from what, how, and what it cost.

``run_record.json`` holds: the dataset path, sha256 and example count; the base model folder and a sha256
over its config and weight files; the resolved config; training metrics (loss per logged step, final
loss, steps, tokens); wall time, input tokens/s, CPU-seconds (user + system of this process); the
shared-prefix statistics; library versions; how training ended (completed / max_minutes).
"""

from __future__ import annotations

import hashlib
import json
import platform
import resource
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_sha256(folder: Path) -> str:
    """sha256 over (name, sha256) of config.json and the weight files the trainer loads, sorted by name."""
    names = sorted(p.name for p in folder.iterdir()
                   if p.name == "config.json" or (p.name.startswith("model") and p.name.endswith(WEIGHT_SUFFIXES)))
    h = hashlib.sha256()
    for name in names:
        h.update(f"{name}:{file_sha256(folder / name)}\n".encode())
    return h.hexdigest()


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def library_versions() -> dict[str, str]:
    import accelerate
    import peft
    import torch
    import transformers
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "trl": trl.__version__, "accelerate": accelerate.__version__}


def training_metrics(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    losses = [{"step": e["step"], "loss": e["loss"]} for e in log_history if "loss" in e and "step" in e]
    summary = next((e for e in reversed(log_history) if "train_runtime" in e), {})
    return {"loss_curve": losses, "first_loss": losses[0]["loss"] if losses else None,
            "final_loss": losses[-1]["loss"] if losses else None,
            "train_loss": summary.get("train_loss"), "trainer_runtime_s": summary.get("train_runtime")}


def write_record(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
