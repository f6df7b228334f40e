"""Tool calls on chat completions: ``tools`` + ``tool_choice`` -> a grammar or a parser, and back.

- ``none``: tools are shown to the chat template (if it uses them) but never called.
- a named function (``{"type": "function", "function": {"name": N}}``): the output is forced by
  the grammar to be N's arguments (its ``parameters`` JSON schema), returned as one tool call.
- ``required``: the output is forced to a JSON array (at least one item) of
  ``{"name": <one of the tools>, "parameters": <that tool's schema>}``, each item a tool call.
- ``auto`` (OpenAI's default when tools are sent): the model answers freely in its own tool-call
  format, read by the parser chosen with ``--tool-call-parser`` (as vLLM's flag): ``hermes``
  (``<tool_call>{"name": .., "arguments": {..}}</tool_call>``, Qwen2.5/Hermes templates) or
  ``json`` (the whole answer is ``{"name": .., "arguments"|"parameters": {..}}`` or a list of
  them, Llama-3.x JSON style). Without the flag ``auto`` is a 400 that says so.
Calls are answered with ``tool_calls`` (``call_<hex>`` ids, arguments as JSON text) and
``finish_reason: "tool_calls"``. In a stream, a named function's arguments arrive in fragments as
they are generated (the first delta carries the id and name, as OpenAI streams them); under
``required`` and ``auto`` the calls arrive in one delta when the answer ends.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from treadle.server.errors import ApiError
from treadle.structured.spec import StructuredSpec

PARSERS = ("hermes", "json")
_EMPTY_PARAMS = {"type": "object", "properties": {}}
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


@dataclass(frozen=True)
class ToolMode:
    choice: str  # "named", "required" or "auto"
    tools: tuple[tuple[str, str], ...]  # (name, parameters schema as JSON text)
    named: str | None = None
    parser: str | None = None
    parallel: bool = True  # parallel_tool_calls: false -> at most one call under "required"

    def spec(self) -> StructuredSpec | None:
        params = {n: json.loads(s) for n, s in self.tools}
        if self.choice == "named":
            return StructuredSpec.json_schema(params[self.named])  # type: ignore[index]
        if self.choice == "required":
            items = [{"type": "object", "properties": {"name": {"const": n}, "parameters": p},
                      "required": ["name", "parameters"], "additionalProperties": False} for n, p in params.items()]
            array = {"type": "array", "minItems": 1, "items": {"anyOf": items}}
            if not self.parallel:
                array["maxItems"] = 1
            return StructuredSpec.json_schema(array)
        return None

    def parse(self, text: str) -> tuple[str | None, list[dict]]:
        """(content, tool_calls) of a finished answer."""
        if self.choice == "named":
            return None, [_call(self.named or "", text)]
        if self.choice == "required":
            try:
                items = json.loads(text)
            except ValueError:
                return text, []  # cut by max_tokens: no valid call
            return None, [_call(i["name"], json.dumps(i["parameters"], ensure_ascii=False)) for i in items]
        if self.parser == "hermes":
            calls = [c for c in (_from_json(m) for m in _HERMES.findall(text)) for c in c]
            if not calls:
                return text, []
            content = text[: text.find("<tool_call>")].strip()
            return content or None, calls
        calls = _from_json(text.strip().removeprefix("<|python_tag|>"))
        return (None, calls) if calls else (text, [])


def _call(name: str, arguments: str) -> dict:
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": name, "arguments": arguments}}


def _from_json(text: str) -> list[dict]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return []
        args = item.get("arguments", item.get("parameters", {}))
        calls.append(_call(item["name"], args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)))
    return calls


def _tool_list(tools: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
            raise ApiError.bad_param(f"tools[{i}]", f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
            raise ApiError.bad_param(f"tools[{i}].function.name",
                                     "function names are 1-64 characters of a-z, A-Z, 0-9, _, . and -")
        params = fn.get("parameters", _EMPTY_PARAMS)
        if not isinstance(params, dict):
            raise ApiError.bad_param(f"tools[{i}].function.parameters", "parameters must be a JSON schema object")
        if name in (n for n, _ in out):
            raise ApiError.bad_param(f"tools[{i}].function.name", f"two tools are named {name!r}")
        out.append((name, json.dumps(params)))
    return tuple(out)


def template_knows_tools(template: str | None) -> bool:
    """Whether a chat template renders tool definitions or calls (its own tool-call format)."""
    return bool(template) and ("tools" in template or "tool_calls" in template)  # type: ignore[operator]


def resolve(tools: list[dict] | None, tool_choice: Any, parser: str | None, parallel: Any = True,
            template: str | None = None) -> ToolMode | None:
    """The request's tool mode, or None when no tool can be called."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise ApiError.bad_param("tool_choice", "tool_choice needs 'tools'")
        return None
    listed = _tool_list(tools)
    choice = "auto" if tool_choice is None else tool_choice
    if choice == "none":
        return None
    if choice == "required":
        return ToolMode("required", listed, parallel=parallel is not False)
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if choice.get("type") != "function" or not isinstance(name, str):
            raise ApiError.bad_param("tool_choice", "tool_choice must be 'none', 'auto', 'required' or "
                                     "{'type': 'function', 'function': {'name': ...}}")
        if name not in (n for n, _ in listed):
            raise ApiError.bad_param("tool_choice.function.name", f"tool_choice names {name!r}, which is not in tools")
        return ToolMode("named", listed, named=name)
    if choice != "auto":
        raise ApiError.bad_param("tool_choice", f"tool_choice must be 'none', 'auto', 'required' or a named "
                                 f"function, got {json.dumps(choice)[:40]}")
    if parser is None:
        why = ("this model's chat template renders tools, but the server was started without --tool-call-parser "
               f"(one of {', '.join(PARSERS)}) to read its calls" if template_knows_tools(template) else
               "this model's chat template has no tool-call format (and no --tool-call-parser was given)")
        raise ApiError.bad_param("tool_choice", f"tool_choice 'auto' (the default when tools are sent) needs the "
                                 f"model's own tool-call format: {why}. Send tool_choice 'required' or a named "
                                 "function (enforced by a grammar, works with any model), or 'none'.")
    return ToolMode("auto", listed, parser=parser)


def template_message(m: dict[str, Any], template: str | None, parser: str | None) -> dict[str, Any]:
    """A conversation message as the chat template gets it. Templates that know ``tool_calls`` get
    them as given; others see an assistant's calls as text in the parser's format (so the model
    reads what it called before), and a ``tool`` message as its content."""
    calls = m.get("tool_calls")
    if not calls or (template and "tool_calls" in template):
        return m
    parts = []
    for c in calls:
        fn = c.get("function", {}) if isinstance(c, dict) else {}
        args = fn.get("arguments", "{}")
        try:
            args = json.loads(args) if isinstance(args, str) else args
        except ValueError:
            pass
        obj = json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
        parts.append(f"<tool_call>\n{obj}\n</tool_call>" if parser != "json" else obj)
    content = (m.get("content") or "") + ("\n" if m.get("content") else "") + "\n".join(parts)
    return {k: v for k, v in m.items() if k != "tool_calls"} | {"content": content}
