"""Reading a JSON request body safely: every input class that used to reach a 500 is a 400 here.

Three classes of input break code far from the parser, so they are closed at the door for every
field at once (the server and the gateway both read bodies through :func:`load_json_object`):

- numbers: an integer literal over Python's int-parsing limit (4,300 digits) raises a plain
  ``ValueError`` inside ``json.loads``; ``NaN``/``Infinity`` literals (not JSON) and floats that
  overflow to infinity (``1e999``) are refused too;
- nesting: a body nested deeper than :data:`MAX_DEPTH` (arrays/objects) is refused before any
  recursive code (the parser itself, pydantic, ``json.dumps``, the schema compiler) sees it;
- strings: a lone UTF-16 surrogate (``"\\ud800"``) is valid JSON but not valid Unicode text; it
  cannot be tokenized nor written back as UTF-8, so any string (key or value) holding one is refused.

The walk is iterative (no recursion) and linear in the body size.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from treadle.server.errors import ApiError

MAX_DEPTH = 64  # deepest array/object nesting accepted (JSON schemas in real use stay far below)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def load_json_object(raw: bytes) -> dict:
    """Parse ``raw`` into a JSON object and check it; raises :class:`ApiError` (400) otherwise."""
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_float)
    except RecursionError:
        raise ApiError.bad_param(None, f"The request body is nested too deeply (more than {MAX_DEPTH} levels)."
                                 ) from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError; so is the int limit
        raise ApiError.bad_param(None, f"The request body is not valid JSON: {_short(e)}") from None
    if not isinstance(data, dict):
        raise ApiError.bad_param(None, "The request body must be a JSON object")
    check_json_value(data)
    return data


def check_json_value(data: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings holding lone surrogates (400 naming the field)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise _surrogate(path)
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise ApiError.bad_param(_top(path), f"The request body is nested too deeply at {path or 'the top'}"
                                         f" (more than {MAX_DEPTH} levels).")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if isinstance(k, str) and _SURROGATE.search(k):
                    raise _surrogate(path or "body")
                child = f"{path}[{k}]" if isinstance(k, int) else (f"{path}.{k}" if path else k)
                stack.append((v, child, depth + 1))


def _top(path: str) -> str | None:
    return re.split(r"[.\[]", path, maxsplit=1)[0] or None


def _surrogate(path: str) -> ApiError:
    return ApiError.bad_param(_top(path), f"{path or 'The body'} contains a lone UTF-16 surrogate (for example "
                              "\\ud800 without its pair): strings must be valid Unicode text.")


def _short(e: BaseException) -> str:
    text = str(e)
    return text if len(text) <= 200 else text[:200] + "..."
