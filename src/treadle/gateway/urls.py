"""Replica URLs from the command line: one URL, or a port range (``http://host:8001-8004``)."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^/:]+):(?P<lo>\d+)-(?P<hi>\d+)(?P<tail>/.*)?$", re.I)
MAX_RANGE = 256  # ports one range may name


def expand_replica_url(url: str) -> list[str]:
    """``http://h:8001-8003`` -> the three URLs; any other URL -> itself. Raises ValueError for an
    empty or reversed range, a port over 65535 or a range of more than MAX_RANGE ports."""
    m = _RANGE.match(url.strip())
    if m is None:
        return [url]
    lo, hi = int(m["lo"]), int(m["hi"])
    if not 0 < lo <= hi <= 65535:
        raise ValueError(f"--replica {url}: the port range must be low-high within 1..65535")
    if hi - lo + 1 > MAX_RANGE:
        raise ValueError(f"--replica {url}: at most {MAX_RANGE} ports in one range")
    return [f"{m['head']}:{port}{m['tail'] or ''}" for port in range(lo, hi + 1)]
