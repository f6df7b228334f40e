"""What a request's output must match, as an engine-side value (no pydantic, no llguidance).

A :class:`StructuredSpec` is frozen and hashable: it is the key of the compiled-grammar cache, so
two requests with the same schema share one compiled grammar. JSON schemas are stored as compact
JSON text with their key order kept: the order of ``properties`` is the order of the keys in the
generated JSON (as OpenAI's structured outputs do), so it is part of what the grammar means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["json", "regex", "choice", "grammar"]
KINDS: tuple[str, ...] = ("json", "regex", "choice", "grammar")


@dataclass(frozen=True)
class StructuredSpec:
    """``kind`` is json (a JSON schema), regex, choice (a JSON list of strings) or grammar (Lark or GBNF).

    ``whitespace_flexible`` (json only) lets the model put whitespace between JSON tokens; off by
    default, as compact JSON is what clients parse and it keeps small models from looping on spaces.
    """

    kind: Kind
    source: str
    whitespace_flexible: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"structured kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.source, str) or not self.source:
            raise ValueError("structured source must be a non-empty string")

    @classmethod
    def json_schema(cls, schema: dict[str, Any] | bool) -> StructuredSpec:
        return cls("json", json.dumps(schema, separators=(",", ":"), ensure_ascii=False))

    @classmethod
    def json_object(cls) -> StructuredSpec:
        return cls.json_schema({"type": "object"})

    @classmethod
    def choice(cls, options: list[str]) -> StructuredSpec:
        if not options or not all(isinstance(o, str) and o for o in options):
            raise ValueError("choice must be a non-empty list of non-empty strings")
        return cls("choice", json.dumps(list(options), ensure_ascii=False))
