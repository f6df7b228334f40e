"""LoRA adapters at the API: model-name resolution, model cards, and vLLM's load/unload endpoints.

- ``model`` = an adapter's name runs the request under it; the base model's name (or no model)
  runs the base; any other name is 404 ``model_not_found``.
- ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}`` reads the PEFT folder on a worker
  thread, then registers it on the engine thread between two steps: running requests are not
  disturbed. ``POST /v1/unload_lora_adapter`` ``{"lora_name"}``: new requests for it get 404,
  requests already accepted finish with its weights. Both need the admin key
  (``--admin-api-key``); without one configured they are disabled (403), as in vLLM.
- Every card of ``/v1/models`` carries the prefix-hash parameters a gateway needs to compute the
  replica's block hashes (``prefix_hash``), and adapter cards their ``version``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from treadle.engine.lora_registry import AdapterNotFoundError, LoraInfo
from treadle.prefix_hash import HASH_VERSION
from treadle.server.errors import ApiError
from treadle.server.metrics import BASE_VERSION


def bearer_token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("x-api-key", "")


def is_admin(token: str, admin_key: str | None) -> bool:
    return bool(admin_key and token and hmac.compare_digest(token.encode(), admin_key.encode()))


def resolve_model(requested: str | None, served: str, loras: dict[str, LoraInfo]) -> tuple[str, str | None, str]:
    """(model name for the response, adapter name or None, model_version) for a request's ``model``."""
    if requested is None or requested == served:
        return served, None, BASE_VERSION
    info = loras.get(requested)
    if info is None:
        names = ", ".join([served, *sorted(loras)])
        raise ApiError(404, f"The model `{requested}` does not exist. This server serves: {names}.", "model",
                       "model_not_found")
    return requested, requested, info.version


def model_cards(served: str, engine: Any, loras: dict[str, LoraInfo], created: int) -> list[dict]:
    e = engine.engine
    prefix = {"block_size": e.config.block_size, "hash_version": HASH_VERSION}
    cards = [{"id": served, "object": "model", "created": created, "owned_by": "treadle", "root": str(e.model_path),
              "parent": None, "max_model_len": e.max_model_len, "prefix_hash": prefix}]
    for name, info in sorted(loras.items()):
        cards.append({"id": name, "object": "model", "created": created, "owned_by": "treadle", "root": info.path,
                      "parent": served, "max_model_len": e.max_model_len, "version": info.version,
                      "lora_rank": info.rank, "target_modules": list(info.target_modules), "prefix_hash": prefix})
    return cards


async def _body(request: Request, fields: tuple[str, ...]) -> dict[str, str]:
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError.bad_param(None, f"The request body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ApiError.bad_param(None, "The request body must be a JSON object")
    for f in fields:
        if not isinstance(data.get(f), str) or not data[f]:
            raise ApiError.bad_param(f, f"'{f}' is a required property and must be a non-empty string")
    return data


def add_lora_routes(app: FastAPI, state: Any, served: str, admin_key: str | None) -> None:
    """Register the load/unload endpoints; ``state.loras`` (name -> LoraInfo) is kept in step."""
    lock = asyncio.Lock()  # one load/unload at a time: the duplicate check and the add stay consistent

    def check_admin(request: Request) -> None:
        from treadle.feedback.roles import ANONYMOUS

        p = getattr(request.state, "principal", None)  # a key with the admin role (treadle.feedback.roles)
        if p is not None and p is not ANONYMOUS and p.can("admin"):
            return
        if admin_key is None:
            raise ApiError(403, "Loading and unloading adapters at run time is disabled: start the server with "
                           "--admin-api-key KEY and send that key.", None, "admin_disabled")
        if not is_admin(bearer_token(request), admin_key):
            raise ApiError(401, "This endpoint needs the admin key: send 'Authorization: Bearer <admin key>'.",
                           None, "invalid_api_key")

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request) -> Response:
        check_admin(request)
        data = await _body(request, ("lora_name", "lora_path"))
        name, path = data["lora_name"], data["lora_path"]
        async with lock:
            if name == served or name in state.loras:
                raise ApiError(400, f"The lora adapter '{name}' has already been loaded (or names the base "
                               "model); unload it first to load other weights under that name.", "lora_name",
                               "lora_already_loaded")
            engine = state.engine
            t0 = time.perf_counter()
            try:
                adapter = await asyncio.to_thread(engine.engine.read_lora, path)
                info = await engine.call(lambda e: e.add_lora(name, adapter))
            except ValueError as e:  # LoraError (bad path or config) or a name taken meanwhile
                raise ApiError(400, str(e), "lora_path" if "lora_path" in str(e) else None,
                               "invalid_lora_adapter") from e
            state.loras[name] = info
        return JSONResponse({"status": "ok", "lora_name": name, "lora_path": info.path, "version": info.version,
                             "lora_rank": info.rank, "load_seconds": round(time.perf_counter() - t0, 3),
                             "message": f"Success: LoRA adapter '{name}' added successfully."})

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request) -> Response:
        check_admin(request)
        name = (await _body(request, ("lora_name",)))["lora_name"]
        async with lock:
            if name not in state.loras:
                raise ApiError(404, f"The lora adapter '{name}' cannot be found.", "lora_name", "model_not_found")
            state.loras.pop(name)  # new requests get 404 from now on
            try:
                info = await state.engine.call(lambda e: e.remove_lora(name))
            except AdapterNotFoundError as e:
                raise ApiError(404, str(e), "lora_name", "model_not_found") from e
        return JSONResponse({"status": "ok", "lora_name": name, "version": info.version,
                             "message": f"Success: LoRA adapter '{name}' removed successfully."})
