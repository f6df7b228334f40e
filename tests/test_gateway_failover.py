"""Failover of streams in flight: a replica that breaks mid-stream is replaced by another one that
continues from the delivered token ids, spliced into the same client stream (tiny real replicas)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway_support import ThreadServer, sse_events
from test_gateway import start_gateway, wait_for
from test_server_support import ServerProcess

T = 30.0
BREAK_AFTER = 6  # data lines relayed before the breaking replica dies
BREAKER: list[str] = []  # the breaking replica's URL


class BreakingReplica:
    """Forwards to a real replica and breaks every stream after BREAK_AFTER data lines."""

    def __init__(self, target: str) -> None:
        self.bodies: list[dict] = []
        app = FastAPI()

        @app.get("/ready")
        async def ready() -> Response:
            return JSONResponse({"status": "ready"})

        @app.get("/metrics")
        async def metrics() -> Response:
            return Response("")

        @app.get("/v1/models")
        async def models() -> Response:
            return JSONResponse(httpx.get(f"{target}/v1/models", timeout=T).json())

        async def forward(request: Request) -> Response:
            body = await request.json()
            self.bodies.append(body)

            async def gen():  # noqa: ANN202
                async with httpx.AsyncClient(timeout=T) as c, \
                        c.stream("POST", f"{target}{request.url.path}", json=body) as r:
                    sent = 0
                    async for line in r.aiter_lines():
                        if line.startswith("data:"):
                            sent += 1
                            if sent > BREAK_AFTER:
                                raise RuntimeError("replica dies mid-stream")
                        yield line + "\n"
            return StreamingResponse(gen(), media_type="text/event-stream")

        app.post("/v1/completions")(forward)
        app.post("/v1/chat/completions")(forward)
        self.server = ThreadServer(app)
        self.base = self.server.base


@pytest.fixture(scope="module")
def fleet(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    real = ServerProcess(tiny_llama, tmp_path_factory.mktemp("failover") / "real.log", "--served-model-name", "tiny")
    breaking = BreakingReplica(real.base)
    BREAKER[:] = [breaking.base]
    gw, srv = start_gateway([breaking.base, real.base], "least_loaded")
    assert wait_for(lambda: len(gw.replicas.routable()) == 2)
    yield real, breaking, gw, srv
    srv.stop()
    breaking.server.stop()
    real.stop()


def _through_breaker(srv: ThreadServer, gw, path: str, body: dict) -> httpx.Response:  # noqa: ANN001
    """Send until the request lands on the breaking replica first (the policy picks; each replica is
    marked failed when it breaks and comes back on the next health check)."""
    for _ in range(6):
        assert wait_for(lambda: len(gw.replicas.routable()) == 2)
        r = httpx.post(f"{srv.base}{path}", json=body, timeout=T)
        breaker = next(x.replica_id for x in gw.replicas.replicas.values() if x.url == BREAKER[0])
        if r.headers.get("x-treadle-replica") == breaker:
            return r
    raise AssertionError("the breaking replica was never chosen")


@pytest.mark.parametrize("chat", [False, True])
def test_broken_greedy_stream_continues_identically_with_usage_once(fleet, chat: bool) -> None:  # noqa: ANN001
    real, breaking, gw, srv = fleet
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body = {"model": "tiny", "max_tokens": 40, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    body |= {"messages": [{"role": "user", "content": "Tell me a story"}]} if chat else {"prompt": "Once upon"}
    direct = sse_events(httpx.post(f"{real.base}{path}", json=body, timeout=T))
    before = len(breaking.bodies)
    r = _through_breaker(srv, gw, path, body)
    assert len(breaking.bodies) > before and breaking.bodies[-1]["return_token_ids"] is True
    events = sse_events(r)
    assert events[-1] == "[DONE]" and not any("error" in e for e in events if isinstance(e, dict)), events[-3:]

    def text(evs: list) -> str:
        key = (lambda c: c["delta"].get("content") or "") if chat else (lambda c: c["text"])
        return "".join(key(c) for e in evs if isinstance(e, dict) for c in e["choices"])

    assert text(events) == text(direct) and text(direct)
    chunks = [e for e in events if isinstance(e, dict)]
    assert all("token_ids" not in c and "prompt_token_ids" not in e for e in chunks for c in e["choices"])
    assert {e["id"] for e in chunks} == {chunks[0]["id"]}  # one stream, one id
    usage = [e["usage"] for e in chunks if e.get("usage")]
    assert len(usage) == 1
    assert {k: usage[0][k] for k in ("prompt_tokens", "completion_tokens")} == \
        {k: direct[-2]["usage"][k] for k in ("prompt_tokens", "completion_tokens")}
    finishes = [c["finish_reason"] for e in chunks for c in e["choices"] if c["finish_reason"]]
    assert finishes == ["length"]


def test_a_stream_that_cannot_be_continued_ends_with_server_error(fleet) -> None:  # noqa: ANN001
    real, breaking, gw, srv = fleet
    body = {"model": "tiny", "prompt": "Once upon", "max_tokens": 40, "temperature": 0, "ignore_eos": True,
            "stream": True, "logprobs": 1}
    events = sse_events(_through_breaker(srv, gw, "/v1/completions", body))
    assert events[-1] == "[DONE]"
    err = events[-2]["error"]
    assert err["type"] == "server_error" and err["code"] == "replica_failed"


def test_gateway_errors_carry_their_types(fleet) -> None:  # noqa: ANN001
    _, _, _, srv = fleet
    r = httpx.get(f"{srv.base}/v1/completions", timeout=T)
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{srv.base}/v1/completions", content=b'{"prompt": "\\ud800"}', timeout=T)
    assert r.status_code == 400 and "surrogate" in r.json()["error"]["message"]
    assert json.loads(r.text)["error"]["param"] == "prompt"
    assert httpx.get(f"{srv.base}/v1/models/tiny", timeout=T).json()["id"] == "tiny"
    assert httpx.get(f"{srv.base}/v1/models/nope", timeout=T).status_code == 404
