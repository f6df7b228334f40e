"""Helpers for the gateway tests: run an ASGI app on a thread, and a scriptable fake replica (no tests here)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response, StreamingResponse


class ThreadServer:
    """uvicorn on 127.0.0.1, on its own thread and event loop, serving a socket bound here to port 0
    (the kernel picks a free port and no other process can take it between choice and use)."""

    def __init__(self, app: object) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120  # a hang guard: the start is awaited as a state
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _chunk(text: str | None, finish: str | None = None) -> str:
    body = {"id": "cmpl-x", "object": "text_completion", "model": "fake",
            "choices": [{"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}]}
    return f"data: {json.dumps(body)}\n\n"


class FakeReplica:
    """An OpenAI-ish replica whose behaviour the test sets: ``mode`` is one of
    ok, busy (503), full (429), break_before_token, break_mid_stream, hold; ``ready`` drives /ready.
    ``hold``: a stream sends its first token, then waits until the test sets ``release``."""

    def __init__(self, name: str = "fake", models: tuple[str, ...] = ("fake",)) -> None:
        self.name, self.mode, self.ready, self.calls = name, "ok", True, 0
        self.models = list(models)
        self.release = threading.Event()
        app = FastAPI()

        @app.get("/ready")
        async def ready() -> Response:
            return JSONResponse({"status": "ready"}, status_code=200 if self.ready else 503)

        @app.get("/metrics")
        async def metrics() -> Response:
            return Response("treadle_num_requests_waiting{model=\"fake\"} 0.0\n")

        @app.get("/v1/models")
        async def models() -> Response:
            return JSONResponse({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

        @app.post("/v1/completions")
        async def completions(request: Request) -> Response:
            self.calls += 1
            body = await request.json()
            if self.mode == "busy":
                return JSONResponse({"error": {"message": "draining", "code": "draining"}}, status_code=503)
            if self.mode == "full":
                return JSONResponse({"error": {"message": "queue full", "code": "queue_full"}}, status_code=429)
            if not body.get("stream"):
                return JSONResponse({"choices": [{"index": 0, "text": self.name, "finish_reason": "length"}],
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                                               "prompt_tokens_details": {"cached_tokens": 0}},
                                     "served_by": self.name, "model": body.get("model")})
            return StreamingResponse(self._stream(), media_type="text/event-stream")

        self.app = app
        self.server = ThreadServer(app)
        self.base = self.server.base

    async def _stream(self):  # noqa: ANN202
        if self.mode == "break_before_token":
            raise RuntimeError("dies before the first token")
        yield _chunk(self.name)
        while self.mode == "hold" and not self.release.is_set():
            await asyncio.sleep(0.01)
        for i in range(3):
            if self.mode == "break_mid_stream" and i == 1:
                raise RuntimeError("dies mid-stream")
            yield _chunk(f" t{i}")
        yield _chunk("", "length")
        yield "data: [DONE]\n\n"

    def stop(self) -> None:
        self.release.set()
        self.server.stop()


def sse_events(resp: httpx.Response) -> list[object]:
    out: list[object] = []
    for line in resp.text.splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out
