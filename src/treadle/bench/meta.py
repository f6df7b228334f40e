"""The ``meta`` object every Treadle result file carries: how, when and where it was made."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=False,
        )
        commit = out.stdout.strip() or None
        return f"{commit}-dirty" if commit and dirty.stdout.strip() else commit
    except (OSError, subprocess.SubprocessError):
        return None


def make_meta(threads: int | None = None, seed: int | None = None, **extra: object) -> dict:
    import torch

    return {
        "command": " ".join(["treadle", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("treadle") else " ".join(sys.argv),
        "git_commit": _git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "torch_version": torch.__version__,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "seed": seed,
        **extra,
    }
