"""Server-Timing of whole responses: format, tolerant parsing, and the gateway's TTFT from it."""

from __future__ import annotations

import pytest

from treadle.server.timing import gateway_ttft, parse_server_timing, server_timing


def test_format_and_parse_round_trip() -> None:
    h = server_timing(0.0125, 0.2)
    assert h == {"server-timing": "ttft;dur=12.500, e2e;dur=200.000"}
    assert parse_server_timing(h["server-timing"]) == pytest.approx({"ttft": 0.0125, "e2e": 0.2})
    assert server_timing(None, 0.2) == {} and server_timing(0.1, None) == {}


def test_parse_skips_what_it_cannot_read() -> None:
    assert parse_server_timing(None) == {} and parse_server_timing("") == {}
    got = parse_server_timing('cache;desc="hit", db;dur=53, app;dur="47.2", bad;dur=x, ;dur=3')
    assert got == pytest.approx({"db": 0.053, "app": 0.0472})


def test_gateway_ttft_removes_the_replica_time_after_the_first_token() -> None:
    hdr = "ttft;dur=40, e2e;dur=100"
    assert gateway_ttft(0.15, hdr) == pytest.approx(0.09)  # 150 ms at the gateway - 60 ms of decoding
    assert gateway_ttft(0.05, hdr) == pytest.approx(0.04)  # clock skew: never below the replica's TTFT
    assert gateway_ttft(0.03, hdr) == pytest.approx(0.03)  # ... nor above the gateway's e2e
    assert gateway_ttft(0.15, None) is None and gateway_ttft(0.15, "ttft;dur=40") is None
    assert gateway_ttft(0.15, "ttft;dur=90, e2e;dur=50") is None  # inconsistent
