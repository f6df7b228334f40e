"""Requests for the simulator: trace rows, bench workloads and user files, with prompts made on arrival.

A :class:`SimRequest` carries its arrival (open loop) or its session/turn (closed loop), its output length
and a recipe for its prompt token ids, which are built only when it arrives and dropped when it ends (a
whole trace's prompts would not fit in memory). Sources:

- ``azure-conv`` / ``azure-code``: the Azure LLM inference 2023 traces (one hour, 2023-11-16 18:15-19:14);
  arrival = trace time / ``rate_scale``; lengths x ``length_scale`` (default 1: the real lengths); prompt ids
  random, seeded by (seed, row) exactly as ``bench.traces`` makes them (nothing shared);
- ``mooncake``: the conversation trace; each hash id becomes ``tokens_per_hash`` ids (default 512, the
  real block) seeded by the hash id (``bench.traces.hash_block``), so prefixes are shared as in the trace;
- a CSV or JSONL file: one row per request with an arrival time (``arrival_s``, ``timestamp`` in ms as
  Mooncake, or ``TIMESTAMP`` as Azure), an input length (``input_tokens``, ``input_length`` or
  ``ContextTokens``), an output length (``output_tokens``, ``output_length`` or ``GeneratedTokens``) and
  optionally ``hash_ids`` (a JSON list);
- :func:`synthetic_day`: a one-hour trace tiled over ``hours`` hours, hour ``h`` thinned to the share
  ``daily_curve(h)`` of its requests (seeded). It is **synthetic**: the real trace is one hour long.
Prompts are cut to ``max_prompt_tokens``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from treadle.bench import traces

TRACES = ("azure-conv", "azure-code", "mooncake")
Row = tuple[float, int, int, list[int] | None]  # (trace seconds, input tokens, output tokens, hash ids)


@dataclass
class SimRequest:
    """One request of a simulation run (mutable: the simulator fills the outcome fields)."""

    id: str
    make_prompt: Callable[[], list[int]]
    max_tokens: int
    arrival_s: float | None = None  # open loop; None = sent by a closed-loop client
    session: str | None = None
    turn: int = 0
    # outcome
    sent_s: float | None = None
    first_token_s: float | None = None
    end_s: float | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    replica: str = ""


def daily_curve(hour: float) -> float:
    """Share of the peak rate at ``hour`` of a synthetic day: 1.0 at 14:00, 0.1 at 02:00 (cosine)."""
    return 0.55 + 0.45 * math.cos(2 * math.pi * (hour - 14.0) / 24.0)


@lru_cache(maxsize=16384)
def _block(hash_id: int, tokens_per_hash: int, vocab_size: int) -> tuple[int, ...]:
    return tuple(traces.hash_block(hash_id, tokens_per_hash, vocab_size))


def _prompt_maker(row: Row, index: int, seed: int, length_scale: float, max_prompt: int,
                  tokens_per_hash: int, vocab_size: int) -> Callable[[], list[int]]:
    _, n_in, _, hashes = row
    if hashes:
        length = max(1, min(max_prompt, round(n_in * tokens_per_hash / traces.MOONCAKE_BLOCK)))

        def make() -> list[int]:
            ids: list[int] = []
            for h in hashes:
                if len(ids) >= length:
                    break
                ids.extend(_block(h, tokens_per_hash, vocab_size))
            return (ids + ids[-1:] * length)[:length]
        return make
    length = max(1, min(max_prompt, round(n_in * length_scale)))
    lo, hi = traces._token_range(vocab_size)
    return lambda: np.random.default_rng([seed, index]).integers(lo, hi, size=length).tolist()


def rows_of(source: str) -> list[Row]:
    """Rows (seconds from the first request, in, out, hash ids) of a named trace or a CSV/JSONL file."""
    if source == "mooncake":
        return traces._mooncake_rows()
    if source in traces.AZURE:
        return traces._azure_rows(traces.AZURE[source])
    path = Path(source)
    if not path.exists():
        raise ValueError(f"trace must be one of {', '.join(TRACES)} or a CSV/JSONL file; {source!r} is neither")
    recs = ([json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if path.suffix in (".jsonl", ".json") else list(csv.DictReader(path.open(newline=""))))
    rows = [_file_row(r, i, path) for i, r in enumerate(recs)]
    rows.sort(key=lambda r: r[0])
    first = rows[0][0] if rows else 0.0
    return [(t - first, a, b, h) for t, a, b, h in rows]


def _pick(rec: dict, names: tuple[str, ...], i: int, path: Path) -> str:
    for n in names:
        if rec.get(n) not in (None, ""):
            return rec[n]
    raise ValueError(f"{path}: row {i} needs one of the fields {', '.join(names)}")


def _file_row(rec: dict, i: int, path: Path) -> Row:
    if rec.get("arrival_s") not in (None, ""):
        t = float(rec["arrival_s"])
    elif rec.get("timestamp") not in (None, ""):
        t = float(rec["timestamp"]) / 1000.0
    else:
        stamp = _pick(rec, ("TIMESTAMP",), i, path)
        t = dt.datetime.strptime(str(stamp)[:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    n_in = int(_pick(rec, ("input_tokens", "input_length", "ContextTokens"), i, path))
    n_out = int(_pick(rec, ("output_tokens", "output_length", "GeneratedTokens"), i, path))
    hashes = rec.get("hash_ids")
    if isinstance(hashes, str):
        hashes = json.loads(hashes) if hashes else None
    if n_in < 1 or n_out < 1:
        raise ValueError(f"{path}: row {i} needs input and output lengths >= 1, got {n_in}, {n_out}")
    return (t, n_in, n_out, [int(h) for h in hashes] if hashes else None)


def synthetic_day(rows: list[Row], hours: int = 24, seed: int = 0, curve: Callable[[float], float] = daily_curve,
                  hour_s: float = 3600.0) -> list[Row]:
    """``rows`` tiled ``hours`` times, hour h keeping each row with probability curve(h). Each synthetic hour
    replays the trace's first ``hour_s`` seconds (3600: all of it; less compresses the day, as labelled)."""
    if hours < 1 or hour_s <= 0:
        raise ValueError(f"hours must be >= 1 and hour_s > 0, got {hours}, {hour_s}")
    window = [r for r in rows if r[0] < hour_s]
    rng = random.Random(seed)
    out: list[Row] = []
    for h in range(hours):
        keep = curve(h)
        out += [(t + h * hour_s, a, b, hs) for t, a, b, hs in window if rng.random() < keep]
    return out


def trace_requests(rows: list[Row], name: str, *, rate_scale: float = 1.0, length_scale: float = 1.0,
                   tokens_per_hash: int = 512, max_prompt_tokens: int = 1 << 20, max_output_tokens: int = 1 << 20,
                   num_requests: int | None = None, seed: int = 0, vocab_size: int = 49152) -> list[SimRequest]:
    """Open-loop requests of ``rows``: arrival = t / rate_scale, lengths scaled and capped."""
    if rate_scale <= 0 or length_scale <= 0 or tokens_per_hash < 1:
        raise ValueError(f"rate_scale and length_scale must be > 0 and tokens_per_hash >= 1, got "
                         f"{rate_scale}, {length_scale}, {tokens_per_hash}")
    picked = rows[:num_requests] if num_requests else rows
    return [SimRequest(f"{name}-{i}", _prompt_maker(r, i, seed, length_scale, max_prompt_tokens, tokens_per_hash,
                                                     vocab_size),
                       max(1, min(max_output_tokens, round(r[2] * length_scale))), arrival_s=r[0] / rate_scale)
            for i, r in enumerate(picked)]


def from_workload(requests: list, token_ids: Callable[[object], list[int]]) -> list[SimRequest]:
    """SimRequests of ``bench.workloads`` requests (closed loop unless they carry arrivals); ``token_ids``
    turns one into the prompt the replica would see (the gateway's own tokenization)."""
    out = []
    for w in requests:
        ids = token_ids(w)
        out.append(SimRequest(w.id, (lambda ids=ids: ids), w.max_tokens, arrival_s=w.arrival_s,
                              session=w.session, turn=w.turn))
    return out
