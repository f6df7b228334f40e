"""The gateway logs what it relays (whole JSON and streams rebuilt from SSE, with the replica), and serves
POST /v1/feedback and the review API itself, against a fake chat replica."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from sqlalchemy import select
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway_support import ThreadServer
from treadle.feedback.config import FeedbackConfig
from treadle.gateway.app import Gateway, GatewaySettings, create_gateway_app
from treadle.gateway.policies import make_policy
from treadle.store import open_store
from treadle.store.models import Feedback, Interaction


def chat_replica() -> ThreadServer:
    app, ids = FastAPI(), itertools.count()

    @app.get("/ready")
    async def ready() -> Response:
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response("")

    @app.get("/v1/models")
    async def models() -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body, rid = await request.json(), f"chatcmpl-{next(ids)}"
        usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
        if not body.get("stream"):
            await asyncio.sleep(0.1)  # at least the 100 ms its Server-Timing claims
            return JSONResponse({"id": rid, "object": "chat.completion", "model": "fake", "usage": usage,
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                                              "finish_reason": "stop"}]},
                                headers={"server-timing": "ttft;dur=40, e2e;dur=100"})

        async def events():  # noqa: ANN202
            head = {"id": rid, "object": "chat.completion.chunk", "model": "fake"}
            yield f"data: {json.dumps({**head, 'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': ''}}]})}\n\n"
            for piece in ("Str", "eamed"):
                yield f"data: {json.dumps({**head, 'choices': [{'index': 0, 'delta': {'content': piece}}]})}\n\n"
            yield f"data: {json.dumps({**head, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return ThreadServer(app)


def test_gateway_logs_relayed_responses_and_takes_feedback(tmp_path: Path) -> None:
    replica = chat_replica()
    db = f"sqlite:///{tmp_path / 'gw.db'}"
    gw = Gateway(make_policy("round_robin"), GatewaySettings(feedback=FeedbackConfig(db=db, review_sample=0)))
    gw.replicas.add(replica.base)
    server = ThreadServer(create_gateway_app(gw))
    try:
        msgs = [{"role": "user", "content": "hello"}]
        plain = httpx.post(f"{server.base}/v1/chat/completions", json={"messages": msgs, "user": "u1"}, timeout=30)
        assert plain.status_code == 200 and plain.headers["server-timing"] == "ttft;dur=40, e2e;dur=100"
        streamed = httpx.post(f"{server.base}/v1/chat/completions", timeout=30,
                              json={"messages": msgs, "stream": True, "temperature": 0.5})
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        sid = json.loads(streamed.text.split("data: ")[1])["id"]
        fb = httpx.post(f"{server.base}/v1/feedback", json={"response_id": sid, "thumbs": "down"}, timeout=30)
        assert fb.status_code == 200, fb.text
        assert httpx.post(f"{server.base}/v1/feedback", json={"response_id": "x", "thumbs": "up"},
                          timeout=30).status_code == 404
        queue = httpx.get(f"{server.base}/review/api/queue", timeout=30).json()  # no keys: open, as `make run`
        assert [i["response_id"] for i in queue["items"]] == [sid]
        assert "Treadle review" in httpx.get(f"{server.base}/review", timeout=30).text
        metrics = httpx.get(f"{server.base}/metrics", timeout=30).text
        assert 'treadle_feedback{model_name="fake",model_version="",thumbs="down"} 1.0' in metrics
    finally:
        server.stop()
        replica.stop()
    store = open_store(db)
    with store.session() as s:
        rows = {i.id: i for i in s.execute(select(Interaction)).scalars()}
        p, st = rows[plain.json()["id"]], rows[sid]
        assert (p.output, p.user, p.source, p.stream, p.finish_reason) == ("Hi there", "u1", "gateway", False, "stop")
        # the whole response's TTFT: the gateway's e2e less the replica's 60 ms after its first token
        # (computed a moment before the logged e2e, so at most the formula on the logged e2e)
        assert 0.04 <= p.ttft_s <= max(0.04, p.e2e_s - 0.06)
        assert (st.output, st.user, st.stream, st.completion_tokens) == ("Streamed", "anonymous", True, 2)
        assert st.params == {"temperature": 0.5} and st.replica == p.replica is not None and st.ttft_s is not None
        assert s.execute(select(Feedback.thumbs)).scalar() == "down"
    store.close()


def test_gateway_records_take_the_version_from_the_replicas_model_cards() -> None:
    from treadle.feedback.service import version_of

    cards = [{"id": "base-m", "parent": None}, {"id": "sup-v3", "parent": "base-m", "version": "ab12"},
             {"id": "other"}]
    assert version_of(cards, "sup-v3") == "ab12"  # an adapter: its content hash, as the replica labels it
    assert version_of(cards, "base-m") == "base"
    assert version_of(cards, "other") is None and version_of(cards, "missing") is None and version_of([], "x") is None
