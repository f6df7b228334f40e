"""The gateway's admin API (``--admin-api-key``): route aliases, and adapter load/unload fan-out.

- ``PUT /admin/routes/{alias}`` ``{"versions": {"support-v3": 0.9, "support-v4": 0.1}}`` sets a
  route (every version with a weight > 0 must be served by some replica); ``GET /admin/routes``
  lists them; ``DELETE /admin/routes/{alias}`` removes one.
- ``POST /v1/load_lora_adapter`` / ``/v1/unload_lora_adapter`` are sent to every healthy replica
  (with the same admin key); the answer lists each replica's result, with the first error's
  status when one failed. Replicas launched later get adapters from ``--replica-args "--lora ..."``.
Without an admin key configured these endpoints answer 403.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import httpx
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from treadle.gateway.routes import Route
from treadle.server.body import load_json_object
from treadle.server.errors import ApiError


def _token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("x-api-key", "")


def add_admin_routes(app: FastAPI, gw: Any) -> None:
    def check(request: Request, endpoint: str) -> None:
        """Allow the --admin-api-key, or a key with the admin role (treadle.feedback.roles); else 401/403."""
        key = gw.settings.admin_api_key
        keys = gw.feedback.keys if gw.feedback is not None else None
        if keys is not None:
            from treadle.feedback.roles import ANONYMOUS

            p = keys.lookup(_token(request))
            if p is not None and p is not ANONYMOUS and p.can("admin"):
                return
        if key is None:
            gw.metrics.admin.labels(endpoint, "403").inc()
            raise ApiError(403, "The admin API is disabled: start the gateway with --admin-api-key KEY.", None,
                           "admin_disabled")
        token = _token(request)
        if not token or not hmac.compare_digest(token.encode(), key.encode()):
            gw.metrics.admin.labels(endpoint, "401").inc()
            raise ApiError(401, "This endpoint needs the admin key: send 'Authorization: Bearer <admin key>'.",
                           None, "invalid_api_key")

    async def body_of(request: Request) -> dict:
        return load_json_object(await request.body())

    @app.get("/admin/routes")
    async def list_routes(request: Request) -> Response:
        check(request, "routes")
        return JSONResponse({"routes": [r.as_dict() for r in gw.proxy.routes.routes.values()]})

    @app.put("/admin/routes/{alias}")
    async def put_route(alias: str, request: Request) -> Response:
        check(request, "routes")
        data = await body_of(request)
        try:
            route = Route.parse(alias, data.get("versions"))
        except ValueError as e:
            gw.metrics.admin.labels("routes", "400").inc()
            raise ApiError.bad_param("versions", str(e)) from e
        served = set(gw.proxy.model_ids())
        missing = [v for v, w in route.versions if w > 0 and v not in served]
        if missing:
            gw.metrics.admin.labels("routes", "400").inc()
            raise ApiError.bad_param("versions", f"versions {missing} are not served by any replica (served: "
                                     f"{sorted(served)}); load the adapters first", "model_not_found")
        if alias in served:
            raise ApiError.bad_param(None, f"alias {alias!r} is the name of a served model; pick another alias")
        gw.proxy.routes.set(route)
        gw.metrics.admin.labels("routes", "200").inc()
        return JSONResponse(route.as_dict())

    @app.delete("/admin/routes/{alias}")
    async def delete_route(alias: str, request: Request) -> Response:
        check(request, "routes")
        if not gw.proxy.routes.remove(alias):
            raise ApiError(404, f"route {alias!r} does not exist", None, "not_found")
        return JSONResponse({"alias": alias, "deleted": True})

    async def fan_out(request: Request, path: str, endpoint: str) -> Response:
        check(request, endpoint)
        data = await body_of(request)
        targets = gw.replicas.routable()
        if not targets:
            raise ApiError(503, "No replica is ready.", None, "no_replica")
        headers = {"Authorization": f"Bearer {gw.settings.admin_api_key}"}

        async def one(r: Any) -> tuple[str, int, Any]:
            try:
                resp = await gw.client.post(f"{r.url}{path}", json=data, headers=headers, timeout=120.0)
            except httpx.HTTPError as e:
                return r.replica_id, 502, {"error": {"message": repr(e), "code": "replica_failed"}}
            try:
                return r.replica_id, resp.status_code, resp.json()
            except ValueError:
                return r.replica_id, resp.status_code, {"text": resp.text}

        results = await asyncio.gather(*(one(r) for r in targets))
        await asyncio.gather(*(gw.replicas.probe(r) for r in targets))  # their model lists changed
        status = next((s for _, s, _ in results if s != 200), 200)
        gw.metrics.admin.labels(endpoint, str(status)).inc()
        return JSONResponse({"status": "ok" if status == 200 else "error",
                             "replicas": {rid: {"status": s, "body": b} for rid, s, b in results}},
                            status_code=status)

    @app.post("/v1/load_lora_adapter")
    async def load(request: Request) -> Response:
        return await fan_out(request, "/v1/load_lora_adapter", "load_lora_adapter")

    @app.post("/v1/unload_lora_adapter")
    async def unload(request: Request) -> Response:
        return await fan_out(request, "/v1/unload_lora_adapter", "unload_lora_adapter")
