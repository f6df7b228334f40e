"""Request fields that constrain the output -> one :class:`StructuredSpec` (or None).

Accepted, at most one per request (two are a 400 naming both):
- OpenAI: ``response_format`` ``{"type": "text" | "json_object" | "json_schema", "json_schema":
  {"name", "schema", "strict", "description"}}``;
- vLLM: ``structured_outputs`` with exactly one of ``json`` (schema, or its JSON text), ``regex``,
  ``choice``, ``grammar`` (Lark or GBNF), ``json_object``;
- vLLM's legacy aliases ``guided_json``, ``guided_regex``, ``guided_choice``, ``guided_grammar``.
The grammar itself is compiled (and its unsupported features reported) by ``treadle.structured``.
"""

from __future__ import annotations

import json
from typing import Any

from treadle.server.body import check_json_value
from treadle.server.errors import ApiError
from treadle.structured.spec import StructuredSpec

_SO_KEYS = ("json", "regex", "choice", "grammar", "json_object")
_SO_IGNORED = ("disable_fallback", "disable_any_whitespace", "disable_additional_properties")


def _schema(value: Any, param: str) -> dict | bool:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as e:
            raise ApiError.bad_param(param, f"{param} is not valid JSON: {str(e)[:120]}") from None
        check_json_value(value)
    if not isinstance(value, dict | bool):
        raise ApiError.bad_param(param, f"{param} must be a JSON schema (an object), got {type(value).__name__}")
    return value


def _str(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError.bad_param(param, f"{param} must be a non-empty string")
    return value


def _choice(value: Any, param: str) -> StructuredSpec:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ApiError.bad_param(param, f"{param} must be a non-empty list of non-empty strings")
    return StructuredSpec.choice(value)


def from_response_format(rf: dict) -> StructuredSpec | None:
    kind = rf.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return StructuredSpec.json_object()
    if kind == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict):
            raise ApiError.bad_param("response_format.json_schema",
                                     "response_format.json_schema must be an object with 'name' and 'schema'")
        if "schema" not in js:
            raise ApiError.bad_param("response_format.json_schema.schema",
                                     "response_format.json_schema.schema is required")
        if not isinstance(js.get("strict", False), bool | None):
            raise ApiError.bad_param("response_format.json_schema.strict", "strict must be a boolean")
        return StructuredSpec.json_schema(_schema(js["schema"], "response_format.json_schema.schema"))
    raise ApiError.bad_param("response_format.type", "response_format.type must be 'text', 'json_object' or "
                             f"'json_schema', got {json.dumps(kind)[:40]}")


def from_structured_outputs(so: dict) -> StructuredSpec | None:
    unknown = [k for k in so if k not in _SO_KEYS and k not in _SO_IGNORED and so[k] is not None]
    if unknown:
        raise ApiError.bad_param(f"structured_outputs.{unknown[0]}",
                                 f"structured_outputs.{unknown[0]} is not supported (use one of {', '.join(_SO_KEYS)})")
    given = [k for k in _SO_KEYS if so.get(k) not in (None, False)]
    if len(given) > 1:
        raise ApiError.bad_param("structured_outputs", f"structured_outputs takes one constraint, got {given}")
    if not given:
        return None
    key = given[0]
    param = f"structured_outputs.{key}"
    value = so[key]
    if key == "json":
        return StructuredSpec.json_schema(_schema(value, param))
    if key == "json_object":
        return StructuredSpec.json_object()
    if key == "choice":
        return _choice(value, param)
    return StructuredSpec(key, _str(value, param))  # type: ignore[arg-type]


def resolve(body: Any) -> tuple[StructuredSpec | None, str | None]:
    """(spec, the field it came from) for a chat or completions body; 400 when two fields compete."""
    found: list[tuple[StructuredSpec, str]] = []
    rf = getattr(body, "response_format", None)
    if rf is not None:
        spec = from_response_format(rf)
        if spec is not None:
            found.append((spec, "response_format"))
    so = getattr(body, "structured_outputs", None)
    if so is not None:
        spec = from_structured_outputs(so)
        if spec is not None:
            found.append((spec, "structured_outputs"))
    if body.guided_json is not None:
        found.append((StructuredSpec.json_schema(_schema(body.guided_json, "guided_json")), "guided_json"))
    if body.guided_regex is not None:
        found.append((StructuredSpec("regex", _str(body.guided_regex, "guided_regex")), "guided_regex"))
    if body.guided_choice is not None:
        found.append((_choice(body.guided_choice, "guided_choice"), "guided_choice"))
    if body.guided_grammar is not None:
        found.append((StructuredSpec("grammar", _str(body.guided_grammar, "guided_grammar")), "guided_grammar"))
    if len(found) > 1:
        names = [p for _, p in found]
        raise ApiError.bad_param(names[1], f"send one output constraint: got {' and '.join(names)}")
    return found[0] if found else (None, None)
