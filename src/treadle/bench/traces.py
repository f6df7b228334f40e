"""Trace replays: Azure LLM inference 2023 (code, conv) and Mooncake (conversation), as token-id prompts.

The traces carry no text, only arrival times and token counts (Mooncake also prefix-block hash ids),
so prompts are token ids sent to ``/v1/completions`` with ``ignore_eos`` and the trace's output length.

Parameters (defaults fit this 2-core machine, whose compute roof is ~370 tokens/s; the real Azure conv
trace asks for ~5.5 req/s x (1,155 in + 211 out) = ~7,600 tokens/s, twenty times that):
- ``rate_scale`` (0.05): arrival rate multiplier; arrival_s = (t - window start) / rate_scale.
- ``length_scale`` (Azure 0.25; Mooncake ``tokens_per_hash`` / 512): multiplies input and output token
  counts (conv at 0.25: ~290 in / ~53 out per request, ~0.28 req/s -> ~95 tokens/s offered).
- ``window`` ("start:end" seconds of the trace, default "0:" = from the start): requests are taken in
  trace order from the window until ``num_requests``.
- ``max_prompt_tokens`` (1536): prompts are cut to this length (below the model's 2,048/8,192 context).
- ``vocab_size`` (49,152, SmolLM2): token ids are drawn from [min(100, vocab/4), vocab_size).
- ``sessions`` (Mooncake only, off): instead of consecutive rows, whole conversations. Every row's first
  hash id is the same block (a shared system prompt); rows sharing their first two hash ids are taken
  as one conversation. Conversations of >= 2 rows are drawn in ``random.Random(seed)`` order until
  ``num_requests`` rows are picked. Each conversation is a session (``WorkloadRequest.session``,
  ``turn``): the load generator sends a turn only after the previous turn's reply has arrived, as its
  user would, so a follow-up never races its own predecessor; conversations start in the trace order
  of their first turns (closed loop: each client runs one conversation at a time; ``--arrival
  trace``: a conversation starts at its first turn's scaled time). Why: a follow-up turn arrives minutes
  after its first turn, so a short consecutive window reuses little (the first 64 rows: 4.8% of
  prompt tokens, the shared first block) while the whole trace reuses 38.8%; 64 rows of 20
  conversations reuse 50.9%, as a long-running fleet sees it (``workloads.prefix_reuse``, seed 0).

Mooncake: each hash id stands for one 512-token block of the real prompt. Here it becomes
``tokens_per_hash`` (default 32) token ids drawn from a generator seeded by the hash id alone, so equal
hash ids give identical blocks in every request and every run: two prompts share exactly the prefix
their hash ids share, and the server's prefix-cache hit rate is the trace's real reuse. Prompt length
is input_length x tokens_per_hash / 512 (the last block partial), capped at ``max_prompt_tokens``.
Azure prompts are random token ids seeded by (seed, row), so they share nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random

import numpy as np

from treadle.bench.workloads import WorkloadRequest, _data

AZURE = {"azure-code": "traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv",
         "azure-conv": "traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"}
MOONCAKE = "traces/mooncake/conversation_trace.jsonl"
MOONCAKE_BLOCK = 512  # tokens per hash id in the real trace


def parse_window(window: str | None) -> tuple[float, float]:
    """``"start:end"`` in trace seconds -> (start, end); empty parts mean the trace's start / end."""
    if not window:
        return 0.0, float("inf")
    try:
        a, b = (window.split(":") + [""])[:2]
        start, end = float(a or 0.0), float(b) if b else float("inf")
    except ValueError:
        raise ValueError(f"window must be 'start:end' in trace seconds (e.g. '0:600'), got {window!r}") from None
    if start < 0 or end <= start:
        raise ValueError(f"window must have 0 <= start < end, got {window!r}")
    return start, end


def _token_range(vocab_size: int) -> tuple[int, int]:
    if vocab_size < 8:
        raise ValueError(f"vocab_size must be >= 8, got {vocab_size}")
    return min(100, vocab_size // 4), vocab_size


def hash_block(hash_id: int, tokens_per_hash: int, vocab_size: int) -> list[int]:
    """The token ids that stand for Mooncake hash id ``hash_id``: same id -> same block, always."""
    lo, hi = _token_range(vocab_size)
    return np.random.default_rng([int(hash_id), 0x6D6F6F6E]).integers(lo, hi, size=tokens_per_hash).tolist()


def make_trace_workload(name: str, n: int, seed: int, max_tokens: int, *, rate_scale: float = 0.05,
                        length_scale: float | None = None, window: str | None = None,
                        max_prompt_tokens: int = 1536, vocab_size: int = 49152, tokens_per_hash: int = 32,
                        sessions: bool = False, **_: object) -> list[WorkloadRequest]:
    """Requests of trace ``name`` from ``window``; output lengths are capped at ``max_tokens``."""
    if rate_scale <= 0:
        raise ValueError(f"rate_scale must be > 0, got {rate_scale}")
    if tokens_per_hash < 1 or max_prompt_tokens < 1:
        raise ValueError(f"tokens_per_hash and max_prompt_tokens must be >= 1, got {tokens_per_hash}, {max_prompt_tokens}")
    if length_scale is None:
        length_scale = tokens_per_hash / MOONCAKE_BLOCK if name == "mooncake" else 0.25
    if length_scale <= 0:
        raise ValueError(f"length_scale must be > 0, got {length_scale}")
    start, end = parse_window(window)
    rows = _mooncake_rows() if name == "mooncake" else _azure_rows(AZURE[name])
    if sessions and name != "mooncake":
        raise ValueError(f"sessions applies to the mooncake trace only, not {name!r}")
    in_window = [r for r in rows if start <= r[0] < end]
    picked = pick_sessions(in_window, n, seed) if sessions else in_window[:n]
    if not picked:
        raise ValueError(f"no {name} request in window {window!r}")
    t0 = picked[0][0] if start == 0.0 else start
    lo, hi = _token_range(vocab_size)
    conversations: dict[tuple[int, ...], list[int]] = {}  # first two hash ids -> [index, turns so far]
    out = []
    for i, (t, n_in, n_out, hashes) in enumerate(picked):
        session, turn = None, 0
        if sessions:  # a turn is sent only after the previous turn of its conversation has been answered
            c = conversations.setdefault(conversation_key(hashes), [len(conversations), 0])
            session, turn = f"{name}-c{c[0]}", c[1]
            c[1] += 1
        length = max(1, min(max_prompt_tokens, round(n_in * length_scale)))
        if hashes is not None:
            ids = [tok for h in hashes for tok in hash_block(h, tokens_per_hash, vocab_size)]
            prompt = (ids + ids[-1:] * length)[:length]  # a trace row with fewer blocks than tokens: pad
        else:
            prompt = np.random.default_rng([seed, i]).integers(lo, hi, size=length).tolist()
        out.append(WorkloadRequest(id=f"{name}-{i}", messages=None, prompt=prompt, ignore_eos=True,
                                   max_tokens=max(1, min(max_tokens, round(n_out * length_scale))),
                                   arrival_s=(t - t0) / rate_scale, session=session, turn=turn))
    return out


def conversation_key(hash_ids: list[int]) -> tuple[int, ...]:
    """Mooncake rows of one conversation share their first two hash ids (the first is every row's)."""
    return tuple(hash_ids[:2])


def pick_sessions(rows: list[tuple], n: int, seed: int) -> list[tuple]:
    """Up to ``n`` rows of whole conversations (rows sharing their first two hash ids, >= 2 rows each),
    conversations in seeded random order, the result in trace order (the row order of ``rows``)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(rows):
        if len(r[3]) >= 2:
            groups.setdefault(conversation_key(r[3]), []).append(i)
    keys = sorted(k for k, v in groups.items() if len(v) >= 2)
    random.Random(seed).shuffle(keys)
    chosen: list[int] = []
    for k in keys:
        if len(chosen) >= n:
            break
        chosen += groups[k][: n - len(chosen)]
    return [rows[i] for i in sorted(chosen)]


def _azure_rows(rel: str) -> list[tuple[float, int, int, None]]:
    rows = []
    with _data(rel).open(newline="") as f:
        for row in csv.DictReader(f):
            ts = dt.datetime.strptime(row["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            rows.append((ts, int(row["ContextTokens"]), int(row["GeneratedTokens"]), None))
    first = rows[0][0]
    return [(t - first, a, b, h) for t, a, b, h in rows]


def _mooncake_rows() -> list[tuple[float, int, int, list[int]]]:
    rows = []
    for line in _data(MOONCAKE).read_text().splitlines():
        r = json.loads(line)
        rows.append((r["timestamp"] / 1000.0, r["input_length"], r["output_length"], r["hash_ids"]))
    return rows
