"""The gateway's FastAPI app: OpenAI routes proxied to replicas, its own health, readiness and metrics.

``create_gateway_app`` takes a :class:`Gateway` (replica set, policy, proxy, metrics); its lifespan
runs the health checks and, when given, the fleet controller (autoscaling) beside the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from treadle.gateway.admin import add_admin_routes
from treadle.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from treadle.gateway.policies import RoutingPolicy
from treadle.gateway.prefix import PrefixHasher
from treadle.gateway.proxy import Proxy
from treadle.gateway.replicas import ReplicaSet
from treadle.server.errors import ApiError, unavailable
from treadle.server.streams import ClientDisconnected

log = logging.getLogger("treadle.gateway")


@dataclass
class GatewaySettings:
    api_key: str | None = None  # clients must send it (Authorization: Bearer)
    admin_api_key: str | None = None  # the admin API (routes, adapter load/unload); sent on to replicas
    replica_api_key: str | None = None  # sent to the replicas
    request_timeout_s: float = 600.0
    max_attempts: int = 3
    health_interval_s: float = 1.0
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # e.g. the fleet controller
    feedback: Any = None  # treadle.feedback.config.FeedbackConfig: interaction log, feedback API, /review


class Gateway:
    """Everything one gateway process holds; the app and the fleet controller share it."""

    def __init__(self, policy: RoutingPolicy, settings: GatewaySettings, hasher: PrefixHasher | None = None
                 ) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0),
                                        limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256))
        self.replicas = ReplicaSet(self.client, settings.replica_api_key)
        self.policy = policy
        self.replicas.on_remove.append(policy.remove_replica)
        self.metrics = GatewayMetrics(lambda: self.replicas)
        self.proxy = Proxy(self.replicas, policy, self.metrics, self.client, hasher, settings.max_attempts,
                           settings.request_timeout_s, settings.replica_api_key)
        self.draining = False
        self.feedback: Any = None  # treadle.feedback.service.FeedbackService, opened by create_gateway_app


class _ApiKeyGate:
    """Pure ASGI: the gateway's own API key on /v1 routes; 503 on /v1 once the gateway drains."""

    def __init__(self, app: ASGIApp, gw: Gateway) -> None:
        self.app, self.gw = app, gw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            error = None
            key = self.gw.settings.api_key
            keys = self.gw.feedback.keys if self.gw.feedback is not None else None
            if self.gw.draining:
                error = unavailable("The gateway is shutting down and accepts no new requests.", "draining")
            elif keys is not None:  # keys with roles (treadle.feedback.roles); --api-key is one of them
                from treadle.feedback.roles import bearer_token

                h = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                principal = keys.lookup(bearer_token(h))
                if principal is None:
                    error = ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
                                     None, "invalid_api_key")
                scope.setdefault("state", {})["principal"] = principal
            elif key is not None:
                h = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                auth = h.get("authorization", "")
                token = auth[7:].strip() if auth[:7].lower() == "bearer " else h.get("x-api-key", "")
                keys = [k for k in (key, self.gw.settings.admin_api_key) if k]
                if not token or not any(hmac.compare_digest(token.encode(), k.encode()) for k in keys):
                    error = ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
                                     None, "invalid_api_key")
            if error is not None:
                self.gw.metrics.rejected.labels(str(error.status), error.code or "").inc()
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_gateway_app(gw: Gateway) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.replicas.probe_all()
        tasks = [asyncio.create_task(gw.replicas.run_health_checks(gw.settings.health_interval_s))]
        tasks += [asyncio.create_task(job()) for job in gw.settings.background]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await gw.client.aclose()
            if gw.feedback is not None:
                await asyncio.to_thread(gw.feedback.close)

    app = FastAPI(title="Treadle gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw
    app.add_middleware(_ApiKeyGate, gw=gw)
    if gw.settings.feedback is not None and gw.feedback is None:  # interaction log, /v1/feedback, /review
        from treadle.feedback.service import FeedbackService

        gw.feedback = FeedbackService.open(gw.settings.feedback, api_key=gw.settings.api_key,
                                         admin_key=gw.settings.admin_api_key, source="gateway")
        gw.proxy.recorder = gw.feedback
        gw.feedback.install(app, gw.metrics.registry)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> Response:
        gw.metrics.rejected.labels(str(e.status), e.code or "").inc()
        return e.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        return ApiError(e.status_code, str(e.detail), None, "not_found" if e.status_code == 404 else None).response()

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, e: ClientDisconnected) -> Response:
        return Response(status_code=499)

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok", "replicas": gw.replicas.counts()})

    @app.get("/ready")
    async def ready() -> Response:
        if gw.replicas.routable() and not gw.draining:
            return JSONResponse({"status": "ready", "replicas": gw.replicas.counts()})
        return unavailable("No replica is ready." if not gw.draining else "The gateway is draining.",
                           "draining" if gw.draining else "not_ready").response()

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/fleet")
    async def fleet() -> Response:
        """The replicas as the gateway sees them (state, load, last error)."""
        now = time.monotonic()
        return JSONResponse({"policy": gw.policy.name, "replicas": [
            {"id": r.replica_id, "url": r.url, "state": r.state, "inflight": r.inflight,
             "waiting": r.metrics.get("waiting", 0.0), "last_error": r.last_error,
             "age_s": round(now - r.added_at, 3)} for r in gw.replicas.replicas.values()]})

    @app.get("/v1/models")
    async def models() -> Response:
        cards: dict[str, dict] = {}
        for r in gw.replicas.replicas.values():
            if r.state in ("healthy", "draining"):
                for card in r.models:
                    cards.setdefault(card.get("id"), {**card, "owned_by": card.get("owned_by", "treadle")})
        for alias, route in gw.proxy.routes.routes.items():  # aliases are models to a client
            cards.setdefault(alias, {"id": alias, "object": "model", "owned_by": "treadle-gateway",
                                     "parent": None, "route": dict(route.versions)})
        return JSONResponse({"object": "list", "data": list(cards.values())})

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> Response:
        for r in gw.replicas.replicas.values():
            if r.state in ("healthy", "draining"):
                for card in r.models:
                    if card.get("id") == model_id:
                        return JSONResponse({**card, "owned_by": card.get("owned_by", "treadle")})
        raise ApiError(404, f"The model `{model_id}` does not exist.", "model", "model_not_found")

    add_admin_routes(app, gw)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await gw.proxy.handle(request, "/v1/chat/completions", chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await gw.proxy.handle(request, "/v1/completions", chat=False)

    return app
