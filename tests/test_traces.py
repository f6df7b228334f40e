"""Trace row selection (no server): Mooncake whole-conversation sampling."""

from __future__ import annotations

import pytest

from treadle.bench.traces import pick_sessions
from treadle.bench.workloads import make_workload, prefix_reuse


def _row(t: float, hashes: list[int]) -> tuple[float, int, int, list[int]]:
    return (t, 512 * len(hashes), 8, hashes)


ROWS = [_row(0, [0, 1]), _row(1, [0, 2]), _row(2, [0, 1, 5]), _row(3, [0]), _row(4, [0, 2, 6]),
        _row(5, [0, 3]), _row(6, [0, 1, 5, 7]), _row(7, [0, 4]), _row(8, [0, 4, 9])]


def test_pick_sessions_takes_whole_conversations_in_trace_order() -> None:
    # conversations (first two ids): (0,1) rows 0,2,6; (0,2) rows 1,4; (0,4) rows 7,8; (0,3) has one row
    picked = pick_sessions(ROWS, 100, seed=0)
    assert [r[0] for r in picked] == [0, 1, 2, 4, 6, 7, 8]  # no single-row conversation, no 1-id row
    small = pick_sessions(ROWS, 3, seed=0)
    assert len(small) == 3 and [r[0] for r in small] == sorted(r[0] for r in small)
    groups = {tuple(r[3][:2]) for r in small}
    assert len(groups) <= 2  # filled conversation by conversation
    assert pick_sessions(ROWS, 3, seed=0) == small  # seeded


def test_mooncake_sessions_reuse_more_than_a_window() -> None:
    window = make_workload("mooncake", 64, 0, 4)
    sessions = make_workload("mooncake", 64, 0, 4, sessions=True)
    assert len(sessions) == 64
    assert prefix_reuse(window) < 0.1 < 0.3 < prefix_reuse(sessions)
    with pytest.raises(ValueError, match="sessions"):
        make_workload("azure-conv", 4, 0, 4, sessions=True)


def test_mooncake_sessions_are_loadgen_sessions_in_turn_order() -> None:
    """Each conversation is one session whose turns follow trace order, so the load generator sends a
    follow-up only after its predecessor's reply; window rows stay independent requests."""
    window = make_workload("mooncake", 16, 0, 4)
    assert all(r.session is None for r in window)
    sessions = make_workload("mooncake", 64, 0, 4, sessions=True)
    by: dict[str, list] = {}
    for r in sessions:
        by.setdefault(r.session, []).append(r)
    assert len(by) >= 10 and all(len(v) >= 2 for v in by.values())
    for turns in by.values():
        assert [r.turn for r in turns] == list(range(len(turns)))
        assert [r.arrival_s for r in turns] == sorted(r.arrival_s for r in turns)
        # one conversation = the same first two hash-id blocks (32 tokens each) in every turn
        assert len({tuple(r.prompt[:64]) for r in turns if len(r.prompt) >= 64}) <= 1
