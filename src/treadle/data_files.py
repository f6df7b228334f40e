"""Where Treadle's bundled data lies: the repository's ``data/`` folder, or ``$TREADLE_DATA``.

Every command and test that reads a dataset, a trace or a prompt set asks this module, and nothing
else knows the location. ``data/README.md`` lists each source with its SOURCE.md and license.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "TREADLE_DATA"
# src/treadle/data_files.py -> the repository root holds data/
BUNDLED = Path(__file__).resolve().parents[2] / "data"


def data_dir() -> Path:
    """The data folder: ``$TREADLE_DATA`` when set, else the repository's ``data/``."""
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else BUNDLED


def data_path(rel: str | Path) -> Path:
    """``data_dir() / rel``; raises ValueError naming the file and how to point elsewhere if it is absent."""
    path = data_dir() / rel
    if not path.exists():
        raise ValueError(
            f"data file {path} not found: Treadle reads its bundled data/ folder "
            f"(set ${ENV_VAR} to a folder with the same layout)"
        )
    return path
