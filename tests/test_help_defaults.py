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
