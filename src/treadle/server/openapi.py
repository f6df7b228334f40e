"""The OpenAPI schema of the server (``/openapi.json``, browsable at ``/docs``), as vLLM serves one.

The OpenAI routes read their body by hand (to answer malformed JSON with OpenAI's error shape), so
FastAPI cannot see their request models: this module declares them, with the pydantic models'
JSON schemas moved under ``components/schemas``, so clients and fuzzers can read every field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"


def body_of(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is ``model``."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": _REF.format(model=model.__name__)}}}}}


def install(app: FastAPI, models: list[type[BaseModel]], version: str) -> None:
    """Make ``app.openapi()`` include ``models`` (and their nested models) as components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=version, routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for m in models:
                js = m.model_json_schema(ref_template=_REF)
                comps.update(js.pop("$defs", {}))
                comps[m.__name__] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
