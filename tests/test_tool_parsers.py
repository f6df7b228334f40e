"""Tool-call parsing and prompting without a server: the formats of --tool-call-parser."""

from __future__ import annotations

import json

import pytest

from treadle.server.errors import ApiError
from treadle.server.tools import ToolMode, resolve, template_message

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def test_hermes_parser_reads_calls_and_content() -> None:
    mode = resolve(TOOLS, "auto", "hermes")
    text = 'Sure.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    content, calls = mode.parse(text)
    assert content == "Sure." and [c["function"]["name"] for c in calls] == ["f", "f"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": 1}
    assert mode.parse("just words") == ("just words", [])
    assert mode.parse("<tool_call>{broken") == ("<tool_call>{broken", [])


def test_json_parser_reads_llama_style_calls() -> None:
    mode = resolve(TOOLS, None, "json")  # tools without tool_choice: OpenAI's default is auto
    assert mode is not None and mode.choice == "auto"
    content, calls = mode.parse('<|python_tag|>{"name": "f", "parameters": {"x": "y"}}')
    assert content is None and json.loads(calls[0]["function"]["arguments"]) == {"x": "y"}
    assert mode.parse('{"not": "a call"}')[1] == []


def test_auto_without_a_parser_says_why() -> None:
    with pytest.raises(ApiError, match="has no tool-call format"):
        resolve(TOOLS, "auto", None, template="{{ messages }}")
    with pytest.raises(ApiError, match="renders tools, but the server was started without --tool-call-parser"):
        resolve(TOOLS, "auto", None, template="{% if tools %}{{ tools | tojson }}{% endif %}")
    assert resolve(TOOLS, "none", None) is None


def test_required_grammar_and_parallel_flag() -> None:
    mode = resolve(TOOLS, "required", None, parallel=False)
    schema = json.loads(mode.spec().source)
    assert schema["minItems"] == 1 and schema["maxItems"] == 1
    assert mode.parse('[{"name": "f", "parameters": {"k": 2}}]')[1][0]["function"]["arguments"] == '{"k": 2}'
    named = ToolMode("named", (("f", '{"type": "object"}'),), named="f")
    assert json.loads(named.spec().source) == {"type": "object"}


def test_templates_without_tool_support_see_calls_as_text() -> None:
    msg = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}
    out = template_message(msg, "{{ message['content'] }}", "hermes")
    assert "tool_calls" not in out and '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>' == out["content"]
    assert template_message(msg, "{% for c in message.tool_calls %}{% endfor %}", "hermes") is msg
