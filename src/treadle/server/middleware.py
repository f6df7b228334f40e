"""Pure ASGI middleware: request id, readiness/drain gate, API key, in-flight count, one log line.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses pass through untouched.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from treadle.server.errors import ApiError, unavailable

log = logging.getLogger("treadle.server")
_PROBES = frozenset({"/health", "/ready", "/metrics"})  # polled often: not logged


class ServerState:
    """Mutable server-wide state, touched only on the event loop."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.engine: Any = None  # AsyncEngine once loaded
        self.load_error: BaseException | None = None
        self.draining = False
        self.inflight = 0  # /v1 HTTP requests in progress
        self.seqs = 0  # engine sequences admitted and not yet done
        self.loras: dict[str, Any] = {}  # adapter name -> LoraInfo, as served now (treadle.server.lora_routes)

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.is_alive and not self.draining


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, state: ServerState, api_key: str | None, metrics: Any,
                 admin_api_key: str | None = None, keys: Any = None) -> None:
        self.app, self.state, self.api_key, self.metrics = app, state, api_key, metrics
        self.admin_api_key = admin_api_key  # also accepted wherever the API key is
        self.keys = keys  # treadle.feedback.roles.KeyRing: keys with roles (replaces the api_key check)

    def _gate(self, headers: Headers, st: dict | None = None) -> ApiError | None:
        state = self.state
        if state.draining:
            return unavailable("The server is shutting down and accepts no new requests.", "draining")
        if state.engine is None:
            why = f"the model failed to load: {state.load_error}" if state.load_error else "the model is loading"
            return unavailable(f"The server is not ready: {why}.", "not_ready")
        if not state.engine.is_alive:
            return unavailable("The engine has stopped; the server must be restarted.", "engine_dead")
        if self.keys is not None:
            from treadle.feedback.roles import bearer_token

            principal = self.keys.lookup(bearer_token(headers))
            if principal is None:
                return ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
                                None, "invalid_api_key")
            if st is not None:
                st["principal"] = principal
        elif self.api_key is not None:
            auth = headers.get("authorization", "")
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
            keys = [k for k in (self.api_key, self.admin_api_key) if k]
            if not token or not any(hmac.compare_digest(token.encode(), k.encode()) for k in keys):
                return ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
                                None, "invalid_api_key")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = headers.get("x-request-id") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = [0]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["x-request-id"] = rid
                status[0] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        path = scope["path"]
        api = path.startswith("/v1/")
        try:
            error = self._gate(headers, scope["state"]) if api else None
            if error is not None:
                self.metrics.rejected(error.status)
                await error.response()(scope, receive, send_wrapper)
                return
            if api:
                self.state.inflight += 1
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                if api:
                    self.state.inflight -= 1
        finally:
            if api or (status[0] >= 400 and path not in _PROBES):
                st = scope["state"]
                log.info(
                    "request_id=%s method=%s path=%s status=%s prompt_tokens=%s completion_tokens=%s "
                    "cached_tokens=%s duration_ms=%.1f",
                    rid, scope["method"], path, status[0] or 499, st.get("prompt_tokens", "-"),
                    st.get("completion_tokens", "-"), st.get("cached_tokens", "-"),
                    (time.perf_counter() - t0) * 1000,
                )
