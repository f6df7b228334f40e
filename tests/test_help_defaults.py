"""`--help` shows every flag's default (gateway, bench, eval, serve)."""

from __future__ import annotations

import logging

import pytest

from treadle.cli import main


@pytest.mark.parametrize(("argv", "shown"), [
    (["bench", "engine", "--help"], ["--seed SEED           (default: 0)", "--num-prompts NUM_PROMPTS"]),
    (["gateway", "--help"], ["(default: info)"]),
    (["serve", "--help"], ["port to bind (default: 8000)", "(default: 256)"]),
])
def test_help_shows_defaults(argv: list[str], shown: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    for s in shown:
        assert s in out, out
    assert "(default: None)" not in out


def test_gateway_keeps_probe_requests_out_of_info_logs() -> None:
    from treadle.gateway.command import quiet_probe_logs

    quiet_probe_logs("info")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_replica_port_ranges() -> None:
    from treadle.gateway.urls import expand_replica_url

    assert expand_replica_url("http://127.0.0.1:8001-8003") == [
        "http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"]
    assert expand_replica_url("http://h:9000-9000/v1") == ["http://h:9000/v1"]
    assert expand_replica_url("http://h:8000") == ["http://h:8000"]
    for bad in ("http://h:9-8", "http://h:1-70000", "http://h:1-1000"):
        with pytest.raises(ValueError, match="--replica"):
            expand_replica_url(bad)
