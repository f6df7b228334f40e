"""The FastAPI app: OpenAI routes, health, readiness and metrics over an :class:`AsyncEngine`.

``create_app`` takes a factory rather than an engine: the model loads on a worker thread after
the server starts listening, so ``/health`` answers at once and ``/ready`` turns 200 when the
model is loaded (503 before, and again while draining).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

import treadle
from treadle.server.errors import ApiError, not_found_model, unavailable
from treadle.server.lora_routes import add_lora_routes, model_cards
from treadle.server.metrics import CONTENT_TYPE, ServerMetrics
from treadle.server.middleware import RequestContextMiddleware, ServerState
from treadle.server.openapi import body_of
from treadle.server.openapi import install as install_openapi
from treadle.server.protocol import ChatCompletionRequest, CompletionRequest
from treadle.server.requests import prepare_chat, prepare_completion
from treadle.server.serving import Handler, ServerSettings, parse_body, validation_error
from treadle.server.streams import ClientDisconnected

log = logging.getLogger("treadle.server")


def create_app(
    settings: ServerSettings,
    engine_factory: Callable[[], Any],
    on_ready: Callable[[Any], None] | None = None,
    feedback: Any = None,
) -> FastAPI:
    """Build the app; ``engine_factory()`` (run on a thread) returns the AsyncEngine.

    ``feedback`` (a :class:`treadle.feedback.config.FeedbackConfig`) turns on the interaction log,
    ``POST /v1/feedback``, ``/review`` and the feedback metrics; None leaves them off.
    """
    state = ServerState(settings.served_model_name)
    metrics = ServerMetrics(settings.served_model_name, lambda: state.engine.stats if state.engine else None)
    handler = Handler(state, settings, metrics)
    if feedback is not None:  # interaction log, /v1/feedback, /review (treadle.feedback)
        from treadle.feedback.service import FeedbackService

        feedback = FeedbackService.open(feedback, api_key=settings.api_key, admin_key=settings.admin_api_key)
        handler.recorder = feedback

    async def load() -> None:
        try:
            engine = await asyncio.to_thread(engine_factory)
        except Exception as e:  # noqa: BLE001 - reported by /health, /ready and every request
            log.exception("model failed to load")
            state.load_error = e
            return
        state.loras = dict(engine.engine.loras.by_name)  # adapters loaded at start (--lora)
        state.engine = engine
        if on_ready is not None:
            on_ready(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(load())
        try:
            yield
        finally:
            await asyncio.gather(task, return_exceptions=True)
            if state.engine is not None:
                await asyncio.to_thread(state.engine.shutdown)
            if feedback is not None:
                await asyncio.to_thread(feedback.close)

    app = FastAPI(title="Treadle", lifespan=lifespan, docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.server = state
    app.state.metrics = metrics
    app.add_middleware(RequestContextMiddleware, state=state, api_key=settings.api_key, metrics=metrics,
                       admin_api_key=settings.admin_api_key, keys=feedback.keys if feedback is not None else None)
    if feedback is not None:
        feedback.install(app, metrics.registry)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> Response:
        if e.status >= 400:
            metrics.rejected(e.status)
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> Response:
        err = validation_error(list(e.errors()))
        metrics.rejected(400)
        return err.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        code = "not_found" if e.status_code == 404 else None
        return ApiError(e.status_code, str(e.detail), None, code).response()

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, e: ClientDisconnected) -> Response:
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> Response:
        log.exception("unhandled error")
        metrics.rejected(500)
        return ApiError(500, f"Internal error: {e!r}", None, "internal_error").response()

    @app.get("/health")
    async def health() -> Response:
        if state.load_error is not None:
            return unavailable(f"the model failed to load: {state.load_error}", "load_failed").response()
        if state.engine is not None and not state.engine.is_alive:
            return unavailable("the engine has stopped", "engine_dead").response()
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready() -> Response:
        if state.ready:
            return JSONResponse({"status": "ready", "model": settings.served_model_name})
        why = "draining" if state.draining else "not_ready"
        return unavailable(f"The server is not ready ({why}).", why).response()

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models() -> Response:
        cards = model_cards(settings.served_model_name, state.engine, state.loras, int(start_time))
        return JSONResponse({"object": "list", "data": cards})

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> Response:
        cards = model_cards(settings.served_model_name, state.engine, state.loras, int(start_time))
        for card in cards:
            if card["id"] == model_id:
                return JSONResponse(card)
        raise not_found_model(model_id, settings.served_model_name)

    @app.post("/v1/chat/completions", openapi_extra=body_of(ChatCompletionRequest))
    async def chat(request: Request) -> Response:
        body = await parse_body(request, ChatCompletionRequest)
        return await handler.handle(request, body, prepare_chat)

    @app.post("/v1/completions", openapi_extra=body_of(CompletionRequest))
    async def completions(request: Request) -> Response:
        body = await parse_body(request, CompletionRequest)
        return await handler.handle(request, body, prepare_completion)

    add_lora_routes(app, state, settings.served_model_name, settings.admin_api_key)
    start_time = time.time()
    install_openapi(app, [ChatCompletionRequest, CompletionRequest], treadle.__version__)
    return app
