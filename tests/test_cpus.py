"""The default thread count reads the CPUs this process may use: affinity, capped by the cgroup quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from treadle import cpus
from treadle.config import EngineConfig


def test_quota_from_cgroup_v2_and_v1(tmp_path: Path) -> None:
    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")
    assert cpus.quota_cpus(v2, tmp_path / "none") == 2  # 1.5 CPUs, rounded up
    v2.write_text("max 100000\n")
    assert cpus.quota_cpus(v2, tmp_path / "none") is None
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu.cfs_period_us").write_text("100000")
    assert cpus.quota_cpus(tmp_path / "absent", v1) == 3
    (v1 / "cpu.cfs_quota_us").write_text("-1")
    assert cpus.quota_cpus(tmp_path / "absent", v1) is None


def test_usable_cpus_is_the_smaller_of_affinity_and_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 8)
    monkeypatch.setattr(cpus, "quota_cpus", lambda: 2)
    assert cpus.usable_cpus() == 2
    assert EngineConfig().num_threads == 2 and EngineConfig(threads=5).num_threads == 5
    monkeypatch.setattr(cpus, "quota_cpus", lambda: None)
    assert cpus.usable_cpus() == 8


def test_affinity_is_read() -> None:
    if hasattr(os, "sched_getaffinity"):
        assert cpus.affinity_cpus() == len(os.sched_getaffinity(0))
