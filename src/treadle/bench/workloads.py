"""Workloads for ``treadle bench serve``: real prompts and traces from the bundled ``data/``, sampled with a seed.

Every workload is a list of :class:`WorkloadRequest`. The load generator sends ``messages`` to
``/v1/chat/completions`` (or joins them into a text prompt for ``/v1/completions``) and token-id
``prompt`` lists to ``/v1/completions``.

- ``sharegpt``: first-turn user prompts from ShareGPT_V3_filtered_1000.json (prompts longer than
  ``max_prompt_tokens`` x 4 characters are skipped), shuffled with ``seed``.
- ``multiturn``: MT-Bench two-turn questions and HH-RLHF harmless-test dialogues with >= 2 user turns,
  interleaved and shuffled. Each turn is one request carrying only its *new* user message; the load
  generator sends it after the session's history (earlier user turns plus the model's actual replies),
  turns of a session one after another, so every turn re-sends a growing shared prefix.
- ``shared-prefix``: ``num_prefixes`` system prompts of about ``prefix_tokens`` tokens (real ShareGPT
  text, 4 characters per token) and ShareGPT questions; request i uses prefix ``rng.integers`` (users
  pick a product at random), so most of each prompt is a repeated prefix.
- ``azure-code``, ``azure-conv``, ``mooncake``: trace replays, see :mod:`treadle.bench.traces`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from treadle.bench.engine_bench import load_sharegpt_prompts
from treadle.data_files import data_path

WORKLOADS = ("sharegpt", "multiturn", "shared-prefix", "azure-code", "azure-conv", "mooncake")
CHARS_PER_TOKEN = 4  # English text averages ~4 characters per token for SmolLM2's tokenizer


@dataclass(frozen=True)
class WorkloadRequest:
    """One request. Exactly one of ``messages`` / ``prompt`` is set.

    ``arrival_s`` is the trace's arrival offset (seconds from the first request, after any rate
    scaling) or None for workloads without timestamps. Requests sharing ``session`` are turns of one
    conversation, sent in ``turn`` order, each after the previous reply has arrived.
    """

    id: str
    messages: list[dict] | None
    prompt: str | list[int] | None
    max_tokens: int
    arrival_s: float | None = None
    session: str | None = None
    turn: int = 0
    ignore_eos: bool = False  # trace replays ask for exactly the trace's output length


def make_workload(name: str, num_requests: int, seed: int, max_tokens: int, **opts: object) -> list[WorkloadRequest]:
    """Build ``num_requests`` requests of workload ``name``; ``opts`` are the workload's own options.

    Options: shared-prefix: ``num_prefixes`` (4), ``prefix_tokens`` (1000); azure-*: ``rate_scale``,
    ``length_scale``, ``window`` (``"start:end"`` trace seconds), ``max_prompt_tokens``, ``vocab_size``;
    mooncake: ``tokens_per_hash`` (32), ``max_prompt_tokens`` (1536), ``vocab_size``, ``length_scale``,
    ``rate_scale``, ``window``; sharegpt/multiturn: ``max_prompt_tokens``.
    Options that are None fall back to their default. Raises ValueError for bad names or values.
    """
    if num_requests < 1:
        raise ValueError(f"num_requests must be >= 1, got {num_requests}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    opts = {k: v for k, v in opts.items() if v is not None}
    if name == "sharegpt":
        return _sharegpt(num_requests, seed, max_tokens, int(opts.get("max_prompt_tokens", 1536)))
    if name == "multiturn":
        return _multiturn(num_requests, seed, max_tokens, int(opts.get("max_prompt_tokens", 1536)))
    if name == "shared-prefix":
        return _shared_prefix(num_requests, seed, max_tokens, int(opts.get("num_prefixes", 4)),
                              int(opts.get("prefix_tokens", 1000)))
    if name in ("azure-code", "azure-conv", "mooncake"):
        from treadle.bench import traces

        return traces.make_trace_workload(name, num_requests, seed, max_tokens, **opts)
    raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}; got {name!r}")


def _data(rel: str) -> Path:
    return data_path(rel)


def _sharegpt_texts(max_prompt_tokens: int, seed: int) -> list[str]:
    texts = [t for t in load_sharegpt_prompts() if 0 < len(t.strip()) <= max_prompt_tokens * CHARS_PER_TOKEN]
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order]


def _sharegpt(n: int, seed: int, max_tokens: int, max_prompt_tokens: int) -> list[WorkloadRequest]:
    texts = _sharegpt_texts(max_prompt_tokens, seed)
    if not texts:
        raise ValueError(f"no ShareGPT prompt fits max_prompt_tokens={max_prompt_tokens}")
    return [WorkloadRequest(id=f"sharegpt-{i}", messages=[{"role": "user", "content": texts[i % len(texts)]}],
                            prompt=None, max_tokens=max_tokens) for i in range(n)]


def load_conversations(max_prompt_tokens: int = 1536) -> list[tuple[str, list[str]]]:
    """(session id, user turns) for MT-Bench (2 turns) and HH-RLHF dialogues with >= 2 user turns."""
    convs: list[tuple[str, list[str]]] = []
    for line in _data("prompts/mt_bench/mt_bench_question.jsonl").read_text().splitlines():
        row = json.loads(line)
        convs.append((f"mt-{row['question_id']}", list(row["turns"])))
    limit = max_prompt_tokens * CHARS_PER_TOKEN
    for line in _data("prompts/hh_rlhf_harmless_test/harmless_base_test_turns.jsonl").read_text().splitlines():
        row = json.loads(line)
        users = [m["content"] for m in row["context"] if m["role"] == "user"]
        if len(users) >= 2 and sum(map(len, users)) <= limit:
            convs.append((f"hh-{row['id']}", users))
    return convs


def _multiturn(n: int, seed: int, max_tokens: int, max_prompt_tokens: int) -> list[WorkloadRequest]:
    convs = load_conversations(max_prompt_tokens)
    order = np.random.default_rng(seed).permutation(len(convs))
    out: list[WorkloadRequest] = []
    for ci in order:
        sid, turns = convs[ci]
        for t, text in enumerate(turns):
            out.append(WorkloadRequest(id=f"{sid}-t{t}", messages=[{"role": "user", "content": text}], prompt=None,
                                       max_tokens=max_tokens, session=sid, turn=t))
            if len(out) == n:
                return out
    return out


def _shared_prefix(n: int, seed: int, max_tokens: int, num_prefixes: int, prefix_tokens: int) -> list[WorkloadRequest]:
    if num_prefixes < 1 or prefix_tokens < 1:
        raise ValueError(f"num_prefixes and prefix_tokens must be >= 1, got {num_prefixes}, {prefix_tokens}")
    texts = load_sharegpt_prompts()
    questions = [t for t in texts if 20 <= len(t) <= 300]
    body = [t.strip() for t in texts if len(t) > 300]
    want = prefix_tokens * CHARS_PER_TOKEN
    prefixes, k = [], 0
    for p in range(num_prefixes):  # disjoint real text per prefix, so prefixes share nothing but the header
        parts: list[str] = []
        while sum(map(len, parts)) < want:
            parts.append(body[k % len(body)])
            k += 1
        prefixes.append(f"You are the assistant for product line {p}. Reference material follows.\n\n"
                        + "\n\n".join(parts)[:want])
    rng = np.random.default_rng(seed)
    qorder = rng.permutation(len(questions))
    picks = rng.integers(0, num_prefixes, size=n)
    return [WorkloadRequest(id=f"prefix{int(picks[i])}-{i}", prompt=None, max_tokens=max_tokens,
                            messages=[{"role": "system", "content": prefixes[int(picks[i])]},
                                      {"role": "user", "content": questions[qorder[i % len(questions)]]}])
            for i in range(n)]


def _lcp(a: str | list[int], b: str | list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_reuse(requests: list[WorkloadRequest], block: int = 16) -> float | None:
    """The share of prompt content an ideal prefix cache (unbounded, one node) could reuse.

    Per request: the longest prefix it shares with any earlier request (token-id prompts: in tokens,
    rounded down to whole ``block``-token KV blocks; chat prompts: in characters of the rendered
    messages), summed and divided by the total. The earlier request with the longest shared prefix is a
    lexicographic neighbour, so each request is compared with its two neighbours in a sorted list.
    None for chat sessions (their history holds replies not known in advance) or no requests; token-id
    sessions (Mooncake conversations) carry their whole context in the prompt and are measured.
    For chat prompts it is a lower bound: a server's chat template may add a shared default system
    prompt, so a measured token hit rate can exceed it.
    """
    import bisect

    if not requests or any(r.session is not None and r.prompt is None for r in requests):
        return None
    seen: list = []
    shared = total = 0
    for r in requests:
        key = r.prompt if r.prompt is not None else "\n".join(f"{m['role']}:{m['content']}" for m in r.messages or [])
        if isinstance(key, list):
            key = tuple(key)
        i = bisect.bisect_left(seen, key)
        best = max([_lcp(key, seen[j]) for j in (i - 1, i) if 0 <= j < len(seen)], default=0)
        if isinstance(key, tuple):
            best = best // block * block
        shared += best
        total += len(key)
        seen.insert(i, key)
    return shared / total if total else None
