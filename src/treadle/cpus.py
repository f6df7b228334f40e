"""How many CPUs this process may use: its affinity mask, capped by the cgroup CPU quota.

``os.cpu_count()`` counts the machine's cores, not what a container or ``taskset`` allows; a
replica that starts that many torch threads on a 2-CPU quota spends its time descheduled. Rules:
- affinity: ``len(os.sched_getaffinity(0))`` (where the platform has it, else ``os.cpu_count()``);
- quota: cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max ..."``), else cgroup v1
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: none); the quota in CPUs is rounded up;
- the result is the smaller of the two, at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_V2 = Path("/sys/fs/cgroup/cpu.max")
_V1 = Path("/sys/fs/cgroup/cpu")


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def quota_cpus(v2: Path = _V2, v1: Path = _V1) -> int | None:
    """CPUs allowed by the cgroup quota (rounded up), or None when there is no quota."""
    try:
        quota, period = v2.read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
        period_us = int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else max(1, math.ceil(quota_us / period_us))


def usable_cpus() -> int:
    quota = quota_cpus()
    cpus = affinity_cpus()
    return max(1, min(cpus, quota) if quota else cpus)
