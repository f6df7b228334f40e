"""Summary arithmetic on constructed records: percentiles, goodput under an SLO, metrics parsing (no server)."""

from __future__ import annotations

import pytest

from treadle.bench.arrivals import Arrival, schedule
from treadle.bench.loadgen import RequestRecord
from treadle.bench.summary import parse_metrics, parse_slo, prefix_cache_hit_rate, summarize, tpot_ms


def rec(i: int, ttft: float, e2e: float, out: int, status: int = 200, cached: int = 0) -> RequestRecord:
    return RequestRecord(id=str(i), start_s=0.0, ttft_s=ttft, itl_s=[(e2e - ttft) / max(1, out - 1)] * (out - 1),
                         e2e_s=e2e, prompt_tokens=100, output_tokens=out, cached_tokens=cached, status=status,
                         error=None if status == 200 else "x")


def test_goodput_counts_requests_meeting_every_bound() -> None:
    records = [
        rec(0, 0.1, 1.1, 11),  # ttft 100 ms, tpot 100 ms: meets both
        rec(1, 0.6, 1.6, 11),  # ttft 600 ms: misses ttft
        rec(2, 0.1, 3.1, 11),  # tpot 300 ms: misses tpot
        rec(3, 0.2, 0.2, 1),  # one token: tpot undefined, meets
        rec(4, 0.0, 0.0, 0, status=429),  # failed: never good
        RequestRecord("5", 0, None, [], None, 0, 0, 0, -1, "cut off at max_seconds"),  # cut off: neither
    ]
    s = summarize(records, duration_s=2.0, slo={"ttft_ms": 500, "tpot_ms": 200})
    assert s["completed"] == 4 and s["failed"] == 1 and s["cut_off"] == 1
    assert s["goodput_req_s"] == pytest.approx(2 / 2.0)
    assert s["requests_per_s"] == pytest.approx(2.0) and s["error_rate"] == pytest.approx(1 / 5)
    assert s["output_tok_s"] == pytest.approx(34 / 2.0) and s["errors"] == {"429": 1}
    assert s["ttft_ms"]["p50"] == pytest.approx(150.0) and s["ttft_ms"]["mean"] == pytest.approx(250.0)
    assert s["tpot_ms"]["p50"] == pytest.approx(100.0) and tpot_ms(records[2]) == pytest.approx(300.0)
    assert summarize(records, 2.0)["goodput_req_s"] is None
    assert summarize(records, 2.0, {"e2e_ms": 1200})["goodput_req_s"] == pytest.approx(2 / 2.0)


def test_cached_share_and_bad_slo() -> None:
    s = summarize([rec(0, 0.1, 0.2, 2, cached=50), rec(1, 0.1, 0.2, 2, cached=0)], 1.0)
    assert s["cached_tokens_share"] == pytest.approx(0.25)
    assert parse_slo("ttft_ms=500, tpot_ms=50") == {"ttft_ms": 500.0, "tpot_ms": 50.0}
    for bad in ("ttfb=1", "ttft_ms=x", "ttft_ms=-1"):
        with pytest.raises(ValueError, match="slo"):
            parse_slo(bad)
    with pytest.raises(ValueError, match="duration_s"):
        summarize([], 0.0)


VLLM_TEXT = """# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 250.0
vllm:num_requests_running{model_name="m"} 3.0
"""


def test_metrics_parsing_understands_vllm_names() -> None:
    after = parse_metrics(VLLM_TEXT)
    assert after["vllm:prefix_cache_queries_total"] == 1000.0 and after["vllm:num_requests_running"] == 3.0
    before = {"vllm:prefix_cache_queries_total": 200.0, "vllm:prefix_cache_hits_total": 50.0}
    assert prefix_cache_hit_rate(before, after) == pytest.approx(200 / 800)
    no_total = parse_metrics(VLLM_TEXT.replace("_total", ""))
    assert prefix_cache_hit_rate({}, no_total) == pytest.approx(0.25)
    old = parse_metrics(VLLM_TEXT.replace("vllm:prefix", "vllm:gpu_prefix"))
    assert prefix_cache_hit_rate({}, old) == pytest.approx(0.25)
    assert prefix_cache_hit_rate({}, {"other": 1.0}) is None
    treadle = parse_metrics('treadle_prefix_cache_queries_total{model="x"} 64.0\n'
                            'treadle_prefix_cache_hits_total{model="x"} 48.0\n')
    assert prefix_cache_hit_rate({}, treadle) == pytest.approx(0.75)


def test_arrival_schedules() -> None:
    assert schedule(Arrival("concurrency", concurrency=4), [None] * 3, 0) is None
    assert schedule(Arrival("burst", burst_size=2, burst_interval_s=5), [None] * 5, 0) == [0, 0, 5, 5, 10]
    p = schedule(Arrival("poisson", rate=4.0), [None] * 4000, 0)
    assert p[0] == 0 and all(b >= a for a, b in zip(p, p[1:], strict=False))
    assert 4000 / p[-1] == pytest.approx(4.0, rel=0.05)
    assert schedule(Arrival("trace", time_scale=0.5), [10.0, 12.0, 14.0], 0) == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="trace"):
        schedule(Arrival("trace"), [None], 0)
    with pytest.raises(ValueError, match="arrival mode"):
        Arrival("sometimes")


def test_prefix_reuse_counts_whole_blocks_shared_with_earlier_prompts() -> None:
    from treadle.bench.workloads import WorkloadRequest, prefix_reuse

    def tok(i: int, ids: list[int]) -> WorkloadRequest:
        return WorkloadRequest(id=str(i), messages=None, prompt=ids, max_tokens=1)

    a = list(range(100, 140))  # 40 tokens
    reqs = [tok(0, a), tok(1, a[:35] + [7] * 5), tok(2, [9] * 40), tok(3, a)]
    # request 1 shares 35 tokens -> 32 in whole 16-token blocks; request 3 shares all 40 -> 32
    assert prefix_reuse(reqs, block=16) == pytest.approx((32 + 32) / 160)
    chat = [WorkloadRequest(id=str(i), messages=[{"role": "user", "content": c}], prompt=None, max_tokens=1)
            for i, c in enumerate(["abcd", "abxy", "zzzz"])]
    assert prefix_reuse(chat) == pytest.approx((len("user:ab") + len("user:")) / (3 * len("user:abcd")))
    turn = WorkloadRequest(id="t", messages=[], prompt=None, max_tokens=1, session="s")
    assert prefix_reuse([turn]) is None and prefix_reuse([]) is None


def _sse_transport(delay_s: float) -> object:
    """A fake OpenAI server: each completion waits ``delay_s``, then streams 3 text chunks and usage."""
    import asyncio
    import json

    import httpx

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(delay_s)
        chunks = [{"choices": [{"text": t}]} for t in ("a", "b", "c")]
        chunks.append({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}})
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handler)


def test_open_loop_latency_counts_from_the_scheduled_arrival() -> None:
    """A burst of 3 with --max-in-flight 1: the third waits ~2 service times, and its TTFT includes that."""
    import asyncio

    from treadle.bench.loadgen import run_load
    from treadle.bench.workloads import WorkloadRequest

    reqs = [WorkloadRequest(id=str(i), messages=None, prompt=[5, 6, 7, 8], max_tokens=3) for i in range(3)]
    arrival = Arrival("burst", burst_size=3, burst_interval_s=10.0, max_in_flight=1)
    recs = asyncio.run(run_load("http://fake", "m", reqs, arrival=arrival, transport=_sse_transport(0.1)))
    last = max(recs, key=lambda r: r.start_s)
    assert last.scheduled_s == 0.0 and last.start_s >= 0.18  # queued behind two requests in the client
    assert last.ttft_s >= last.start_s + 0.09 and last.e2e_s >= last.ttft_s
    d = last.to_json()
    assert d["tpot_s"] == pytest.approx((last.e2e_s - last.ttft_s) / 2, abs=1e-4)
    closed = asyncio.run(run_load("http://fake", "m", reqs, arrival=Arrival("concurrency", concurrency=1),
                                  transport=_sse_transport(0.05)))
    assert all(r.scheduled_s is None and 0.04 <= r.ttft_s <= r.e2e_s for r in closed)
    # closed loop: each latency counts from the request's own send, so one request's send-to-end fits
    # before the next one's send (from the run's start, the second would already overlap the third)
    seq = sorted(closed, key=lambda r: r.start_s)
    assert all(a.start_s + a.e2e_s <= b.start_s + 1e-6 for a, b in zip(seq, seq[1:], strict=False))
    s = summarize(recs, 1.0)
    assert s["input_tokens"]["p50"] == 4 and s["output_tokens"]["p99"] == 3


def test_prompts_are_capped_below_the_served_context(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from treadle.bench.serve_command import model_context, prompt_cap

    assert prompt_cap(None, 64, None) == 1536 and prompt_cap(None, 64, 1024) == 960
    assert prompt_cap(4000, 100, 2048) == 1948 and prompt_cap(100, 100, 2048) == 100
    with pytest.raises(ValueError, match="max-tokens"):
        prompt_cap(None, 2048, 2048)
    cards = {"data": [{"id": "a", "max_model_len": 2048}, {"id": "b", "max_model_len": 512}]}
    monkeypatch.setattr(httpx, "get", lambda url, **kw: httpx.Response(200, json=cards))
    assert model_context("http://x/v1", "b") == 512 and model_context("http://x", "zz") is None
    monkeypatch.setattr(httpx, "get", lambda url, **kw: httpx.Response(200, json={"data": [{"id": "m"}]}))
    assert model_context("http://x", "m") is None  # llama.cpp-style card without max_model_len


def test_the_client_warms_up_before_the_clock_starts() -> None:
    """One GET /v1/models goes out before any measured request and is not recorded: a fresh client's first
    request (lazy imports, first connection) stalled the other closed-loop clients by 120-180 ms."""
    import asyncio

    import httpx

    from treadle.bench.loadgen import run_load
    from treadle.bench.workloads import WorkloadRequest

    seen: list[str] = []
    inner = _sse_transport(0.0)

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        return await inner.handle_async_request(request)

    reqs = [WorkloadRequest(id=str(i), messages=None, prompt=[5, 6, 7, 8], max_tokens=3) for i in range(3)]
    recs = asyncio.run(run_load("http://fake/v1", "m", reqs, arrival=Arrival("concurrency", concurrency=2),
                                transport=httpx.MockTransport(handler)))
    assert seen == ["GET /v1/models"] + ["POST /v1/completions"] * 3
    assert len(recs) == 3 and all(r.ok for r in recs)
    # a failed warm-up is ignored: the measured requests still run and record their own outcome
    async def no_models(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            raise httpx.ConnectError("refused", request=request)
        return await inner.handle_async_request(request)

    recs = asyncio.run(run_load("http://fake", "m", reqs[:1], transport=httpx.MockTransport(no_models)))
    assert len(recs) == 1 and recs[0].ok


def test_a_traces_simultaneous_arrivals_go_out_in_trace_order() -> None:
    """16 requests due at the same instant after a wait are sent in trace order (one asyncio timer per request
    sent them in an arbitrary order: equal deadlines are not ordered)."""
    import asyncio
    import json

    import httpx

    from treadle.bench.loadgen import run_load
    from treadle.bench.workloads import WorkloadRequest

    seen: list[int] = []
    inner = _sse_transport(0.0)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            seen.append(json.loads(request.content)["prompt"][0])
        return await inner.handle_async_request(request)

    reqs = [WorkloadRequest(id=str(i), messages=None, prompt=[i, 6, 7], max_tokens=3,
                            arrival_s=0.0 if i < 4 else 0.05) for i in range(20)]
    recs = asyncio.run(run_load("http://fake", "m", reqs, arrival=Arrival("trace"),
                                transport=httpx.MockTransport(handler)))
    assert seen == list(range(20)) and len(recs) == 20 and all(r.ok for r in recs)
    # cut off at max_seconds: the requests in flight record themselves as cut off, the later ones never start
    late = [WorkloadRequest(id=str(i), messages=None, prompt=[i, 6, 7], max_tokens=3, arrival_s=0.0 if i < 2 else 30.0)
            for i in range(4)]
    recs = asyncio.run(run_load("http://fake", "m", late, arrival=Arrival("trace"), max_seconds=0.2,
                                transport=_sse_transport(1.0)))
    assert sorted(r.id for r in recs) == ["0", "1"] and all(r.error == "cut off at max_seconds" for r in recs)
