"""The load generator: streams workload requests to an OpenAI-compatible server and times every token.

Every request is sent with ``stream: true`` and ``stream_options.include_usage`` so that:
- TTFT = send -> first chunk carrying text (role-only chunks do not count); in open-loop modes TTFT and
  end-to-end latency count from the request's scheduled arrival, so time spent waiting for a
  ``max_in_flight`` slot is part of them (no coordinated omission);
- inter-token latencies = gaps between successive text chunks;
- output/prompt/cached tokens come from the final ``usage`` chunk (``prompt_tokens_details.cached_tokens``),
  falling back to the number of text chunks / the token-id prompt length when a server sends no usage.
Sessions (multi-turn) run their turns one after another, each turn sent after the session's history
with the model's actual replies. A failed turn ends its session. The run stops by itself after
``max_requests`` requests or ``max_seconds``: no request starts after the deadline and requests still
in flight then are cancelled and recorded with status -1 ("cut off"), which the summary keeps apart
from failures. A connection error is status 0.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field

import httpx

from treadle.bench.arrivals import Arrival, schedule
from treadle.bench.workloads import WorkloadRequest

CUT_OFF = -1


@dataclass(frozen=True)
class RequestRecord:
    id: str
    start_s: float  # send time, seconds from the start of the run
    ttft_s: float | None
    itl_s: list[float]
    e2e_s: float | None
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int
    status: int  # HTTP status; 0 connection error; -1 cut off at max_seconds
    error: str | None
    # open-loop arrival time; start_s later than this = client queueing, which ttft_s and e2e_s include
    # (both count from scheduled_s when it is set, from start_s otherwise)
    scheduled_s: float | None = None
    session: str | None = None
    turn: int = 0
    # the replica that served it, as a Treadle gateway names it (its x-treadle-replica header; None elsewhere)
    replica: str | None = None
    # this process's time.perf_counter() at the send: the system's monotonic clock, which other processes' logs
    # share (scripts/sim_diag/served_timeline.py pairs sends with a replica's hand-overs); not written to files
    sent_clock: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: (e2e - ttft) / (output_tokens - 1); None below 2 tokens."""
        if self.e2e_s is None or self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    def to_json(self) -> dict:
        """The record as a dict (with its ``tpot_s``), times rounded to 10 microseconds (keeps files small)."""
        r = lambda x: None if x is None else round(x, 5)  # noqa: E731
        d = asdict(self)
        del d["sent_clock"]
        d.update(start_s=r(self.start_s), ttft_s=r(self.ttft_s), e2e_s=r(self.e2e_s), tpot_s=r(self.tpot_s),
                 scheduled_s=r(self.scheduled_s), itl_s=[r(x) for x in self.itl_s])
        return d


@dataclass
class _Run:
    base: str
    model: str
    api: str
    temperature: float
    extra_body: dict
    t0: float
    deadline: float | None
    bar: _progress
    records: list[RequestRecord] = field(default_factory=list)

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline


def _chains(requests: list[WorkloadRequest]) -> list[list[WorkloadRequest]]:
    """Group requests into sessions (in first-appearance order, turns sorted); others are alone."""
    chains: dict[str, list[WorkloadRequest]] = {}
    for r in requests:
        chains.setdefault(r.session if r.session is not None else f"\0{r.id}", []).append(r)
    return [sorted(c, key=lambda r: r.turn) for c in chains.values()]


def _body(run: _Run, req: WorkloadRequest, history: list[dict]) -> tuple[str, dict, bool]:
    body: dict = {"model": run.model, "max_tokens": req.max_tokens, "temperature": run.temperature,
                  "stream": True, "stream_options": {"include_usage": True}, **run.extra_body}
    if req.ignore_eos:
        body["ignore_eos"] = True
    if req.prompt is not None:
        return "/v1/completions", {**body, "prompt": req.prompt}, False
    messages = history + (req.messages or [])
    if run.api == "chat":
        return "/v1/chat/completions", {**body, "messages": messages}, True
    return "/v1/completions", {**body, "prompt": "\n\n".join(m["content"] for m in messages)}, False


async def _send(client: httpx.AsyncClient, run: _Run, req: WorkloadRequest, history: list[dict],
                scheduled: float | None) -> tuple[RequestRecord, str]:
    """Send one request; record it (also when cancelled); return the record and the reply text."""
    path, body, chat = _body(run, req, history)
    run.bar.sent()
    start = time.perf_counter()
    times: list[float] = []
    pieces: list[str] = []
    usage: dict = {}
    status, error = 0, None
    replica: str | None = None  # the x-treadle-replica response header, read by record() when it runs

    # open loop: latencies count from the scheduled arrival, so waiting for a --max-in-flight slot shows
    origin = start if scheduled is None else min(start, run.t0 + scheduled)

    def record(status: int, error: str | None, end: float | None) -> RequestRecord:
        ttft = times[0] if times else end
        rec = RequestRecord(
            id=req.id, start_s=start - run.t0, ttft_s=None if ttft is None else ttft - origin,
            itl_s=[b - a for a, b in zip(times, times[1:], strict=False)],
            e2e_s=None if end is None else end - origin,
            prompt_tokens=int(usage.get("prompt_tokens") or (len(req.prompt) if isinstance(req.prompt, list) else 0)),
            output_tokens=int(usage.get("completion_tokens") or len(times)),
            cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
            status=status, error=error, scheduled_s=scheduled, session=req.session, turn=req.turn,
            replica=replica, sent_clock=start)
        run.records.append(rec)
        run.bar(rec)
        return rec

    try:
        async with client.stream("POST", run.base + path, json=body) as resp:
            status = resp.status_code
            replica = resp.headers.get("x-treadle-replica")
            if status != 200:
                text = (await resp.aread()).decode(errors="replace")
                return record(status, text[:500] or f"HTTP {status}", time.perf_counter()), ""
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("error"):
                    error = json.dumps(chunk["error"])[:500]
                    break
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    if piece:
                        times.append(time.perf_counter())
                        pieces.append(piece)
    except asyncio.CancelledError:
        record(CUT_OFF, "cut off at max_seconds", None)
        raise
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        return record(status if isinstance(e, json.JSONDecodeError) else 0, f"{type(e).__name__}: {e}",
                      time.perf_counter()), ""
    return record(status, error, time.perf_counter()), "".join(pieces)


async def _run_chain(client: httpx.AsyncClient, run: _Run, chain: list[WorkloadRequest], scheduled: float | None) -> None:
    history: list[dict] = []
    for req in chain:
        if run.past_deadline():
            return
        rec, reply = await _send(client, run, req, history, scheduled if req is chain[0] else None)
        if not rec.ok:
            return
        if req.messages is not None:
            history = history + req.messages + [{"role": "assistant", "content": reply}]


async def run_load(base_url: str, model: str, requests: list[WorkloadRequest], *, api: str = "chat",
                   arrival: Arrival | None = None, max_requests: int | None = None,
                   max_seconds: float | None = None, seed: int = 0, api_key: str | None = None,
                   temperature: float = 0.0, timeout_s: float = 600.0, progress: bool = False,
                   extra_body: dict | None = None,
                   transport: httpx.AsyncBaseTransport | None = None) -> list[RequestRecord]:
    """Run ``requests`` (the first ``max_requests``) against ``base_url``; return one record per request sent.

    Records are in completion order. ``api`` ("chat" | "completions") chooses the endpoint for message
    workloads; token-id prompts always go to /v1/completions. ``transport`` replaces httpx's (tests).
    The clock (every ``start_s``, the deadline) starts after one warm-up ``GET /v1/models`` (``_warm_up``).
    """
    if api not in ("chat", "completions"):
        raise ValueError(f"api must be 'chat' or 'completions', got {api!r}")
    arrival = arrival or Arrival()
    reqs = requests[:max_requests] if max_requests else list(requests)
    chains = _chains(reqs)
    times = schedule(arrival, [c[0].arrival_s for c in chains], seed)
    bar = _progress(len(reqs), progress)
    base = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=max(len(chains), arrival.concurrency) + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits, headers=headers,
                                 transport=transport) as client:
        await _warm_up(client, base)
        t0 = time.perf_counter()
        run = _Run(base=base, model=model, api=api, temperature=temperature, extra_body=dict(extra_body or {}),
                   t0=t0, deadline=t0 + max_seconds if max_seconds else None, bar=bar)
        if times is None:
            pending = iter(chains)

            async def worker() -> None:
                for chain in pending:  # the shared iterator hands each chain to one worker
                    if run.past_deadline():
                        return
                    await _run_chain(client, run, chain, None)

            tasks = [worker() for _ in range(min(arrival.concurrency, len(chains)))]
        else:
            sem = asyncio.Semaphore(arrival.max_in_flight) if arrival.max_in_flight else None

            async def launch(chain: list[WorkloadRequest], at: float) -> None:
                if sem is None:
                    await _run_chain(client, run, chain, at)
                    return
                async with sem:
                    await _run_chain(client, run, chain, at)

            async def dispatch() -> None:
                """Start each chain at its time, in arrival order: a trace's simultaneous arrivals go out in
                trace order (one timer per request scrambled them: asyncio does not order equal deadlines)."""
                running: list[asyncio.Task] = []
                try:
                    for i in sorted(range(len(chains)), key=times.__getitem__):  # stable: ties keep their order
                        delay = t0 + times[i] - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        if run.past_deadline():
                            break
                        running.append(asyncio.create_task(launch(chains[i], times[i])))
                    await asyncio.gather(*running)
                finally:  # cut off at max_seconds: the started requests record themselves as cut off
                    for task in running:
                        task.cancel()
                    await asyncio.gather(*running, return_exceptions=True)

            tasks = [dispatch()]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=max_seconds)
        except TimeoutError:
            pass
    bar.close()
    return run.records


async def _warm_up(client: httpx.AsyncClient, base: str) -> None:
    """One ``GET /v1/models`` before the clock starts, its outcome ignored: a fresh process's first request
    pays the HTTP stack's lazy imports and its first connection (measured 120-180 ms in ``treadle bench
    serve``), during which the other clients of a closed loop could not send; no request's latency should
    include the client's own cold start."""
    try:
        await client.get(f"{base}/v1/models")
    except httpx.HTTPError:
        pass


class _progress:
    """A tqdm bar on stderr showing sent/done/failed (a no-op when disabled or tqdm is absent)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar, self.n_sent, self.done, self.failed = None, 0, 0, 0
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="req", dynamic_ncols=True)
            except ImportError:
                pass

    def sent(self) -> None:
        self.n_sent += 1

    def __call__(self, rec: RequestRecord) -> None:
        self.done += rec.ok
        self.failed += not rec.ok
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(sent=self.n_sent, done=self.done, failed=self.failed, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
