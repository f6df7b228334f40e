"""The ``Server-Timing`` header (W3C) of a non-streamed completion: when its first token was ready.

A streamed response shows its time to first token to whoever reads the stream; a whole JSON response hides
it. The replica therefore sends ``Server-Timing: ttft;dur=T, e2e;dur=E`` (milliseconds, from the engine's
request metrics of choice 0: arrival to first token, arrival to finish), and the gateway turns it into the
TTFT it logs for the request: its own end-to-end time minus the replica's time after the first token, so
that streamed and whole requests are timed alike (the canary's TTFT and TPOT signals use both).
"""

from __future__ import annotations

import re

_ENTRY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*(?:;.*?\bdur\s*=\s*\"?([0-9.eE+-]+)\"?)?")


def server_timing(ttft_s: float | None, e2e_s: float | None) -> dict[str, str]:
    """The header for a whole response ({} when the engine gave no metrics)."""
    if ttft_s is None or e2e_s is None:
        return {}
    return {"server-timing": f"ttft;dur={ttft_s * 1000:.3f}, e2e;dur={e2e_s * 1000:.3f}"}


def parse_server_timing(value: str | None) -> dict[str, float]:
    """Metric name -> duration in seconds, for the entries that carry a valid ``dur``; bad entries are skipped."""
    out: dict[str, float] = {}
    for part in (value or "").split(","):
        m = _ENTRY.match(part)
        if m and m.group(2):
            try:
                out[m.group(1)] = float(m.group(2)) / 1000
            except ValueError:
                continue
    return out


def gateway_ttft(gateway_e2e_s: float, header: str | None) -> float | None:
    """The request's TTFT as the gateway saw it: its end-to-end time less the replica's time after the first
    token (None without a usable header); never below the replica's own TTFT nor above the gateway's e2e."""
    t = parse_server_timing(header)
    if "ttft" not in t or "e2e" not in t or t["e2e"] < t["ttft"]:
        return None
    return min(gateway_e2e_s, max(t["ttft"], gateway_e2e_s - (t["e2e"] - t["ttft"])))
