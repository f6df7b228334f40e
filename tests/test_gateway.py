"""The gateway in front of real tiny-model replicas and scriptable fake ones: relay, retries,
mid-stream failure, health checks, drain, API key, aggregated models, metrics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest

from gateway_support import FakeReplica, ThreadServer, sse_events
from test_server_support import ServerProcess
from treadle.gateway.app import Gateway, GatewaySettings, create_gateway_app
from treadle.gateway.policies import make_policy
from treadle.gateway.prefix import PrefixHasher
from treadle.models.tokenizer import Tokenizer

T = 120.0  # client timeout: only stops a hung call (the machine may be busy)


def start_gateway(urls: list[str], policy: str = "round_robin", hasher: PrefixHasher | None = None,
                  **settings: object) -> tuple[Gateway, ThreadServer]:
    gw = Gateway(make_policy(policy), GatewaySettings(**settings), hasher)  # type: ignore[arg-type]
    for url in urls:
        gw.replicas.add(url)
    return gw, ThreadServer(create_gateway_app(gw))


def wait_for(cond, timeout: float = 300.0) -> bool:  # noqa: ANN001
    """Poll ``cond`` until true; ``timeout`` only guards against a hang (the machine may be busy)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def metric(base: str, name: str, **labels: str) -> float:
    import re

    total = 0.0
    for line in httpx.get(f"{base}/metrics", timeout=T).text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if m and m.group(1) == name:
            lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(lab.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
    return total


@pytest.fixture(scope="module")
def two_replicas(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    d = tmp_path_factory.mktemp("gw")
    a = ServerProcess(tiny_llama, d / "a.log", "--served-model-name", "tiny")
    b = ServerProcess(tiny_llama, d / "b.log", "--served-model-name", "tiny")
    yield a, b
    a.stop()
    b.stop()


def test_gateway_relays_json_and_streams_with_prefix_affinity(two_replicas, tiny_llama: Path) -> None:  # noqa: ANN001
    a, b = two_replicas
    hasher = PrefixHasher(Tokenizer(tiny_llama), "tiny")
    gw, srv = start_gateway([a.base, b.base], "prefix_affinity", hasher, api_key="k")
    try:
        h = {"Authorization": "Bearer k"}
        assert httpx.post(f"{srv.base}/v1/completions", json={"prompt": "hi"}, timeout=T).status_code == 401
        models = httpx.get(f"{srv.base}/v1/models", headers=h, timeout=T).json()["data"]
        assert [m["id"] for m in models] == ["tiny"]  # one model served by both: aggregated once
        miss = httpx.post(f"{srv.base}/v1/completions", headers=h, json={"model": "nope", "prompt": "x"}, timeout=T)
        assert miss.status_code == 404 and miss.json()["error"]["code"] == "model_not_found"
        system = "The quick brown fox jumps over the lazy dog. " * 6
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": "Hello world!"}]
        body = {"model": "tiny", "messages": msgs, "max_tokens": 8, "temperature": 0, "ignore_eos": True}
        direct = a.post("/v1/chat/completions", body).json()["choices"][0]["message"]["content"]
        served = set()
        for _ in range(3):  # the same prefix keeps going to one replica
            r = httpx.post(f"{srv.base}/v1/chat/completions", headers=h, json=body, timeout=T)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == direct
            served.add(r.headers["x-treadle-replica"])
        assert len(served) == 1
        # a repeat on the same replica hits its prefix cache, and the gateway saw the hit
        assert r.json()["usage"]["prompt_tokens_details"]["cached_tokens"] >= 16
        stream = httpx.post(f"{srv.base}/v1/chat/completions", headers=h, timeout=T,
                            json={**body, "stream": True, "stream_options": {"include_usage": True}})
        events = sse_events(stream)
        assert events[-1] == "[DONE]" and stream.headers["x-treadle-replica"] in served
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
        assert text == direct
        assert metric(srv.base, "treadle_gateway_routing_decisions_total", policy="prefix_affinity",
                      reason="prefix_match") >= 3
        assert metric(srv.base, "treadle_gateway_requests_total", status="200") == 4
        assert metric(srv.base, "treadle_gateway_time_to_first_token_seconds_count") == 1
    finally:
        srv.stop()


def test_retries_on_503_429_and_connection_failure_before_the_first_token(two_replicas) -> None:  # noqa: ANN001
    a, _ = two_replicas
    busy, full, broken = FakeReplica("busy"), FakeReplica("full"), FakeReplica("broken")
    busy.mode, full.mode, broken.mode = "busy", "full", "break_before_token"
    dead_port = ThreadServer(FakeReplica("x").app)  # becomes healthy, then dies
    gw, srv = start_gateway([busy.base, full.base, broken.base, dead_port.base, a.base], "round_robin",
                            max_attempts=5, health_interval_s=3600)
    try:
        assert wait_for(lambda: len(gw.replicas.routable()) == 5)
        dead_port.stop()
        for i in range(5):  # each request starts at another replica; all end on the real one
            r = httpx.post(f"{srv.base}/v1/completions", timeout=T,
                           json={"prompt": "Hello", "max_tokens": 4, "stream": True})
            assert r.status_code == 200, r.text
            assert sse_events(r)[-1] == "[DONE]"
            assert r.headers["x-treadle-replica"] == a.base.split("//")[1], i
        for reason in ("503", "429", "connect", "stream_start"):
            assert metric(srv.base, "treadle_gateway_retries_total", reason=reason) >= 1, reason
        states = {r.url: r.state for r in gw.replicas.replicas.values()}
        assert states[dead_port.base] == "unhealthy" and states[broken.base] == "unhealthy"
        # with every real replica out, the replica's own 503 is what the client gets
        gw.replicas.replicas[a.base.split("//")[1]].state = "unhealthy"
        r = httpx.post(f"{srv.base}/v1/completions", json={"prompt": "x", "max_tokens": 2}, timeout=T)
        assert r.status_code in (429, 503)
    finally:
        srv.stop()
        for f in (busy, full, broken):
            f.stop()


def test_mid_stream_failure_ends_with_an_error_event() -> None:
    bad = FakeReplica("bad")
    bad.mode = "break_mid_stream"
    gw, srv = start_gateway([bad.base])
    try:
        assert wait_for(lambda: len(gw.replicas.routable()) == 1)
        r = httpx.post(f"{srv.base}/v1/completions", json={"prompt": "x", "stream": True}, timeout=T)
        events = sse_events(r)
        assert r.status_code == 200
        assert events[0]["choices"][0]["text"] == "bad"  # the token before the failure reached the client
        assert events[-2]["error"]["code"] == "replica_failed" and events[-1] == "[DONE]"
        assert bad.calls == 1  # not retried: a token had been streamed
        assert metric(srv.base, "treadle_gateway_requests_total", status="502") == 1
    finally:
        srv.stop()
        bad.stop()


def test_health_checks_take_replicas_out_and_put_them_back() -> None:
    f1, f2 = FakeReplica("f1"), FakeReplica("f2")
    gw, srv = start_gateway([f1.base, f2.base], health_interval_s=0.1)
    try:
        r1 = gw.replicas.replicas[f1.base.split("//")[1]]
        assert wait_for(lambda: r1.state == "healthy")
        f1.ready = False
        assert wait_for(lambda: r1.state == "unhealthy")
        served = {httpx.post(f"{srv.base}/v1/completions", json={"prompt": "x"}, timeout=T).json()["served_by"]
                  for _ in range(4)}
        assert served == {"f2"}
        assert httpx.get(f"{srv.base}/fleet", timeout=T).json()["replicas"][0]["state"] == "unhealthy"
        f1.ready = True
        assert wait_for(lambda: r1.state == "healthy")
        served = {httpx.post(f"{srv.base}/v1/completions", json={"prompt": "x"}, timeout=T).json()["served_by"]
                  for _ in range(4)}
        assert served == {"f1", "f2"}
    finally:
        srv.stop()
        f1.stop()
        f2.stop()


def test_drain_lets_in_flight_requests_finish_and_routes_new_ones_elsewhere() -> None:
    held, other = FakeReplica("held"), FakeReplica("other")
    held.mode = "hold"  # its streams wait after the first token until held.release is set
    gw, srv = start_gateway([held.base], health_interval_s=0.1)
    try:
        assert wait_for(lambda: len(gw.replicas.routable()) == 1)
        with concurrent.futures.ThreadPoolExecutor(5) as pool:  # 4 held streams + the drain
            futs = [pool.submit(httpx.post, f"{srv.base}/v1/completions",
                                json={"prompt": "x", "stream": True}, timeout=T) for _ in range(4)]
            rs = gw.replicas.replicas[held.base.split("//")[1]]
            assert wait_for(lambda: rs.inflight == 4)
            gw.replicas.add(other.base)
            assert wait_for(lambda: len(gw.replicas.replicas) == 2 and
                            all(r.state == "healthy" for r in gw.replicas.replicas.values()))
            drained: concurrent.futures.Future = concurrent.futures.Future()

            def drain() -> None:
                drained.set_result(asyncio.run(gw.replicas.drain(rs.replica_id, 120)))

            pool.submit(drain)
            assert wait_for(lambda: rs.state == "draining")
            fresh = httpx.post(f"{srv.base}/v1/completions", json={"prompt": "x"}, timeout=T).json()
            assert fresh["served_by"] == "other"
            assert not drained.done() and rs.inflight == 4
            held.release.set()
            results = [f.result() for f in futs]
            assert drained.result(timeout=T) is True
        for r in results:  # every in-flight stream completed on the draining replica
            events = sse_events(r)
            assert r.status_code == 200 and events[-1] == "[DONE]" and "error" not in events[-2]
            assert events[0]["choices"][0]["text"] == "held"
        assert rs.inflight == 0
    finally:
        srv.stop()
        held.stop()
        other.stop()


def test_a_draining_replica_takes_requests_only_when_no_healthy_replica_serves_them() -> None:
    """A scale-down drain met by the last healthy replica failing: the draining replica answers
    (counted in treadle_gateway_draining_fallbacks) instead of a 503, and stops getting requests once
    a healthy replica is back; a draining replica that failed its last probe gets none."""
    leaving, staying = FakeReplica("leaving"), FakeReplica("staying")
    gw, srv = start_gateway([leaving.base, staying.base], health_interval_s=0.1)
    try:
        assert wait_for(lambda: len(gw.replicas.routable()) == 2)
        rl = gw.replicas.replicas[leaving.base.split("//")[1]]
        rl.state = "draining"  # what ReplicaSet.drain sets first (changed on the test's thread: a flag)

        def post() -> httpx.Response:
            return httpx.post(f"{srv.base}/v1/completions", json={"prompt": "x"}, timeout=T)

        assert post().json()["served_by"] == "staying"
        staying.ready = False  # the last healthy replica fails its probes
        assert wait_for(lambda: not gw.replicas.routable())
        r = post()
        assert r.status_code == 200 and r.json()["served_by"] == "leaving"
        assert metric(srv.base, "treadle_gateway_draining_fallbacks_total", replica=rl.replica_id) == 1
        staying.ready = True
        assert wait_for(lambda: len(gw.replicas.routable()) == 1)
        assert post().json()["served_by"] == "staying"
        assert rl.state == "draining" and rl.inflight == 0
        staying.ready, leaving.ready = False, False  # now the draining one fails its probes too
        assert wait_for(lambda: not gw.replicas.routable() and rl.fail_streak > 0)
        r = post()
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_replica"
        assert metric(srv.base, "treadle_gateway_draining_fallbacks_total") == 1
    finally:
        srv.stop()
        leaving.stop()
        staying.stop()


def test_treadle_gateway_command_launches_serves_and_stops(tiny_llama: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from test_server_support import bound_port

    log_path = tmp_path / "gw.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "treadle.cli", "gateway", "--launch", "1", "--model", str(tiny_llama),
                             "--replica-args", "--num-kv-blocks 64", "--port", "0", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{bound_port(log_path, proc)}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/ready", timeout=T).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(ready), log_path.read_text()
        r = httpx.post(f"{base}/v1/completions", json={"prompt": "Hello", "max_tokens": 3}, timeout=T)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
        replica_url = httpx.get(f"{base}/fleet", timeout=T).json()["replicas"][0]["url"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        with pytest.raises(httpx.HTTPError):  # the replica it launched is gone too
            httpx.get(f"{replica_url}/health", timeout=T)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


class _BrokenBody(httpx.AsyncByteStream):
    async def __aiter__(self):  # noqa: ANN204
        yield b'{"choi'
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def _mocked(post, **settings: object) -> tuple[Gateway, ThreadServer, list[str]]:  # noqa: ANN001
    """A gateway on replicas r0, r1 behind an httpx MockTransport; ``post(host)`` answers the POSTs."""
    calls: list[str] = []

    async def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]}) if req.url.path == "/v1/models" \
                else httpx.Response(200, text="")
        calls.append(req.url.host)
        return await post(req.url.host)

    gw = Gateway(make_policy("round_robin"), GatewaySettings(health_interval_s=3600, **settings))  # type: ignore[arg-type]
    gw.client = gw.replicas.client = gw.proxy.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    for host in ("r0", "r1"):
        gw.replicas.add(f"http://{host}")
    return gw, ThreadServer(create_gateway_app(gw)), calls


@pytest.mark.parametrize("failure", ["connect_timeout", "body_breaks"])
def test_connect_timeout_and_a_broken_json_body_are_retried(failure: str) -> None:
    async def post(host: str) -> httpx.Response:
        if host == "r0" and failure == "connect_timeout":
            raise httpx.ConnectTimeout("timed out connecting")
        if host == "r0":
            return httpx.Response(200, headers={"content-type": "application/json"}, stream=_BrokenBody())
        return httpx.Response(200, json={"choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}]})

    gw, srv, calls = _mocked(post)
    try:
        r = httpx.post(f"{srv.base}/v1/completions", json={"model": "m", "prompt": "x"}, timeout=T)
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == "ok", r.text
        assert calls == ["r0", "r1"] and r.headers["x-treadle-replica"] == "r1"
        reason = "connect" if failure == "connect_timeout" else "stream_start"
        assert metric(srv.base, "treadle_gateway_retries_total", replica="r0", reason=reason) == 1
        assert gw.replicas.replicas["r0"].state == "unhealthy"
    finally:
        srv.stop()


def test_request_timeout_is_a_504_and_not_retried() -> None:
    async def post(host: str) -> httpx.Response:
        await asyncio.Event().wait()  # never answers: only the gateway's timeout can end the request
        raise AssertionError("unreachable")

    gw, srv, calls = _mocked(post, request_timeout_s=0.3)
    try:
        r = httpx.post(f"{srv.base}/v1/completions", json={"model": "m", "prompt": "x"}, timeout=T)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert calls == ["r0"]  # the replica may still be working: no retry
    finally:
        srv.stop()



def test_each_routing_decision_is_logged_with_its_loads_at_debug(caplog) -> None:  # noqa: ANN001
    """``treadle.gateway.decisions`` at DEBUG: one line per decision, naming the replica, the reason and every
    candidate's in-flight + scraped waiting count (what `scripts/sim_diag/fleet_decisions.py` compares)."""
    import logging

    rep = FakeReplica("one")
    gw, srv = start_gateway([rep.base], health_interval_s=0.1)
    try:
        assert wait_for(lambda: len(gw.replicas.routable()) == 1)
        caplog.set_level(logging.DEBUG, logger="treadle.gateway.decisions")
        assert httpx.post(f"{srv.base}/v1/completions", json={"prompt": "x"}, timeout=T).status_code == 200
        rid = next(iter(gw.replicas.replicas))
        lines = [r.getMessage() for r in caplog.records if r.name == "treadle.gateway.decisions"]
        assert len(lines) == 1 and f"-> {rid} (" in lines[0] and f"loads {rid}:0+0" in lines[0]
    finally:
        srv.stop()
        rep.stop()
