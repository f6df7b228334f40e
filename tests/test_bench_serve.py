"""`treadle bench serve` / `bench compare` against a real `treadle serve` on a tiny model.

Each arrival mode, a trace replay, multi-turn history, Mooncake prefix sharing seen in cached_tokens,
/metrics scraping, the stop-by-itself bound, and compare's alternating rounds and ratios.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_server_support import ServerProcess
from treadle.bench.arrivals import Arrival, schedule
from treadle.bench.loadgen import run_load
from treadle.bench.summary import prefix_cache_hit_rate, scrape_metrics, summarize
from treadle.bench.traces import hash_block
from treadle.bench.workloads import make_workload

MODEL = "tiny"


@pytest.fixture(scope="module")
def server(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tiny_llama, tmp_path_factory.mktemp("bench") / "server.log", "--served-model-name", MODEL,
                        "--max-num-seqs", "8", "--num-kv-blocks", "256")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def vocab(tiny_llama: Path) -> int:
    return json.loads((tiny_llama / "config.json").read_text())["vocab_size"]


def _run(srv: ServerProcess, reqs: list, **kw: object) -> list:
    return asyncio.run(run_load(srv.base, MODEL, reqs, **kw))


def _max_overlap(records: list) -> int:
    events = sorted([(r.start_s, 1) for r in records] + [(r.start_s + r.e2e_s, -1) for r in records])
    level = peak = 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    return peak


def test_concurrency_mode_caps_in_flight_and_times_tokens(server: ServerProcess) -> None:
    reqs = make_workload("sharegpt", 8, seed=1, max_tokens=6, max_prompt_tokens=24)
    recs = _run(server, reqs, arrival=Arrival("concurrency", concurrency=2))
    assert len(recs) == 8 and all(r.ok for r in recs), [r.error for r in recs]
    assert _max_overlap(recs) <= 2
    for r in recs:
        assert 0 < r.ttft_s <= r.e2e_s and 1 <= r.output_tokens <= 6 and r.prompt_tokens > 0
        assert len(r.itl_s) <= r.output_tokens - 1 and all(x >= 0 for x in r.itl_s)
    s = summarize(recs, 2.0, {"ttft_ms": 1e6, "tpot_ms": 1e6})
    assert s["completed"] == 8 and s["goodput_req_s"] == s["requests_per_s"] == 4.0


def test_poisson_and_burst_follow_their_schedule(server: ServerProcess) -> None:
    reqs = make_workload("sharegpt", 6, seed=2, max_tokens=2, max_prompt_tokens=16)
    arrival = Arrival("poisson", rate=10.0)
    recs = _run(server, reqs, arrival=arrival, seed=5)
    want = schedule(arrival, [None] * 6, seed=5)
    assert sorted(r.scheduled_s for r in recs) == pytest.approx(want)
    assert all(r.start_s >= r.scheduled_s - 1e-3 for r in recs)  # never early (late only as the machine is)
    recs = _run(server, reqs, arrival=Arrival("burst", burst_size=3, burst_interval_s=0.6))
    assert sorted(r.scheduled_s for r in recs) == pytest.approx([0, 0, 0, 0.6, 0.6, 0.6])
    assert all(r.start_s >= r.scheduled_s - 1e-3 for r in recs)
    recs = _run(server, reqs[:2], api="completions")  # chat messages as a plain text prompt
    assert all(r.ok and r.output_tokens >= 1 and r.ttft_s is not None for r in recs)


def test_trace_replay_keeps_arrivals_and_output_lengths(server: ServerProcess, vocab: int) -> None:
    reqs = make_workload("azure-conv", 6, seed=0, max_tokens=8, rate_scale=2.0, length_scale=0.05,
                         window="300:", vocab_size=vocab)
    assert all(isinstance(r.prompt, list) and max(r.prompt) < vocab for r in reqs)
    assert reqs[-1].arrival_s - reqs[0].arrival_s > 0.3  # the replay spans real gaps
    recs = _run(server, reqs, arrival=Arrival("trace", time_scale=1.0))
    assert all(r.ok for r in recs)
    by_id = {r.id: r for r in reqs}
    for rec in recs:
        assert rec.scheduled_s == pytest.approx(by_id[rec.id].arrival_s - reqs[0].arrival_s)
        assert rec.output_tokens == by_id[rec.id].max_tokens  # ignore_eos: exactly the trace's length
        assert rec.prompt_tokens == len(by_id[rec.id].prompt)


def test_run_stops_by_itself_at_max_seconds(server: ServerProcess) -> None:
    reqs = make_workload("sharegpt", 200, seed=3, max_tokens=64, max_prompt_tokens=16)
    recs = _run(server, reqs, arrival=Arrival("concurrency", concurrency=2), max_seconds=1.0)
    assert len(recs) < 200
    s = summarize(recs, 1.0)
    assert s["failed"] == 0 and s["completed"] + s["cut_off"] == len(recs)
    # (how many were cut off depends on the machine: a request that ends after the deadline, before
    # the cut, counts as completed, and no new one starts)


def test_multiturn_sends_the_models_reply_as_history(server: ServerProcess) -> None:
    reqs = [r for r in make_workload("multiturn", 40, seed=0, max_tokens=8, max_prompt_tokens=24)
            if r.session and r.session.startswith("mt-")][:4]
    assert [r.turn for r in reqs[:2]] == [0, 1] and reqs[0].session == reqs[1].session
    recs = {r.id: r for r in _run(server, reqs, arrival=Arrival("concurrency", concurrency=2))}
    t0, t1 = recs[reqs[0].id], recs[reqs[1].id]
    assert t1.start_s >= t0.start_s + t0.e2e_s  # turn 2 waits for turn 1's reply
    # turn 2's prompt = turn 1's prompt + the model's reply + the new user message
    assert t1.prompt_tokens > t0.prompt_tokens + t0.output_tokens
    assert t1.cached_tokens >= 16  # the repeated history hits the prefix cache (block size 16)


def test_mooncake_shared_hash_ids_share_cached_tokens(server: ServerProcess, vocab: int) -> None:
    assert hash_block(7, 32, vocab) == hash_block(7, 32, vocab) != hash_block(8, 32, vocab)
    reqs = make_workload("mooncake", 4, seed=0, max_tokens=2, tokens_per_hash=32, max_prompt_tokens=160,
                         vocab_size=vocab, rate_scale=1000.0)
    assert all(r.prompt[:32] == hash_block(0, 32, vocab) for r in reqs)  # the first rows all start with id 0
    before = scrape_metrics(server.base)
    recs = _run(server, reqs, arrival=Arrival("concurrency", concurrency=1))
    rate = prefix_cache_hit_rate(before, scrape_metrics(server.base))
    later = [r for r in recs if r.id != reqs[0].id]
    assert all(r.cached_tokens >= 32 for r in later)
    assert rate is not None and rate > 0
    share = summarize(recs, 1.0)["cached_tokens_share"]
    assert rate == pytest.approx(share, abs=0.02)


def test_compare_alternates_rounds_and_reports_ratios(server: ServerProcess, tmp_path: Path) -> None:
    from treadle.cli import main

    out = tmp_path / "cmp.json"
    rc = main(["bench", "compare", "--out", str(out), f"a={server.base}", f"b={server.base}#{MODEL}",
               "--workload", "sharegpt", "--num-requests", "8", "--rounds", "2", "--concurrency", "2",
               "--max-tokens", "4", "--max-prompt-tokens", "16", "--no-progress"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["kind"] == "bench-compare" and [t["name"] for t in res["targets"]] == ["a", "b"]
    a, b = res["results"]
    assert [r["position"] for r in a["rounds"]] == [0, 1] and [r["position"] for r in b["rounds"]] == [1, 0]
    assert a["summary"]["completed"] == b["summary"]["completed"] == 8
    assert res["ratios"]["a"]["output_tok_s"] == 1.0
    assert res["ratios"]["b"]["output_tok_s"] == pytest.approx(b["summary"]["output_tok_s"] / a["summary"]["output_tok_s"])


def test_bench_serve_cli_writes_the_result(server: ServerProcess, tmp_path: Path) -> None:
    from treadle.cli import main

    out = tmp_path / "run.json"
    rc = main(["bench", "serve", "--base-url", server.base, "--workload", "sharegpt", "--num-requests", "4",
               "--concurrency", "2", "--max-tokens", "4", "--max-prompt-tokens", "16", "--slo", "ttft_ms=60000",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["kind"] == "bench-serve" and res["config"]["model"] == MODEL and len(res["requests"]) == 4
    assert res["summary"]["goodput_req_s"] == res["summary"]["requests_per_s"]
    assert res["summary"]["prefix_cache_hit_rate"] is not None and "git_commit" in res["meta"]


def test_each_record_names_the_replica_the_gateway_reports() -> None:
    """The load generator keeps a Treadle gateway's x-treadle-replica header per request (None without one), so a
    fleet run's files say which replica served each request (the simulator's records say it too)."""
    import httpx

    from treadle.bench.workloads import WorkloadRequest

    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "GET":
            return httpx.Response(200, json={"data": []})
        rid = json.loads(req.content)["messages"][0]["content"]
        sse = 'data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: [DONE]\n\n'
        headers = {"content-type": "text/event-stream", **({"x-treadle-replica": f"rep-{rid}"} if rid != "2" else {})}
        return httpx.Response(200, headers=headers, content=sse.encode())

    reqs = [WorkloadRequest(str(i), [{"role": "user", "content": str(i)}], None, 4) for i in range(3)]
    recs = asyncio.run(run_load("http://test", "m", reqs, transport=httpx.MockTransport(handler)))
    assert {r.id: r.replica for r in recs} == {"0": "rep-0", "1": "rep-1", "2": None}
    assert all(r.ok for r in recs) and recs[0].to_json()["replica"] == recs[0].replica

