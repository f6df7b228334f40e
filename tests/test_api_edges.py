"""The API's rough edges on a live `treadle serve`: inputs that used to give 500s, strict types,
admission, Retry-After, the OpenAPI schema, structured outputs, logit_bias and tool calls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from test_server_support import TIMEOUT, ServerProcess

MODEL = "tiny"
MSG = [{"role": "user", "content": "Hello"}]
SCHEMA = {"type": "object", "properties": {"intent": {"enum": ["refund", "track"]}, "ok": {"type": "boolean"}},
          "required": ["intent", "ok"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}, "days": {"type": "integer",
                                                                                    "minimum": 1, "maximum": 7}},
    "required": ["city", "days"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"],
    "additionalProperties": False}}}


@pytest.fixture(scope="module")
def server(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("api-edges") / "server.log"
    srv = ServerProcess(tiny_llama, log, "--served-model-name", MODEL, "--max-model-len", "256",
                        "--max-num-seqs", "4", "--max-queue", "2")
    yield srv
    srv.stop()


def _raw(server: ServerProcess, path: str, raw: bytes) -> httpx.Response:
    return httpx.post(f"{server.base}{path}", content=raw, headers={"content-type": "application/json"},
                      timeout=TIMEOUT)


def _error(r: httpx.Response, status: int, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    return err


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_lone_surrogates_numbers_and_nesting_are_400(server: ServerProcess, path: str) -> None:
    chat = path.endswith("chat/completions")
    field = '"messages": [{"role": "user", "content": "a\\ud800b"}]' if chat else '"prompt": "a\\ud800b"'
    err = _error(_raw(server, path, ('{"model": "tiny", ' + field + '}').encode()), 400)
    assert "surrogate" in err["message"] and err["param"] == ("messages" if chat else "prompt")
    base = '"messages": [{"role": "user", "content": "x"}]' if chat else '"prompt": "x"'
    for extra, says in [
        ('"stop": ["\\udfff"]', "surrogate"),  # any string field, not only the prompt
        ('"user": "\\ud83d"', "surrogate"),
        ('"\\ud800": 1', "surrogate"),  # keys too
        ('"max_tokens": ' + "9" * 5000, "not valid JSON"),  # over Python's 4,300-digit int limit
        ('"seed": ' + "9" * 4000, "seed"),  # parses, but out of range: named
        ('"temperature": NaN', "not valid JSON"),
        ('"temperature": 1e999', "out of range"),
        ('"metadata": ' + "[" * 3000 + "]" * 3000, "nested too deeply"),
        ('"response_format": ' + '{"a":' * 100 + "1" + "}" * 100, "nested too deeply"),
    ]:
        r = _raw(server, path, ("{" + base + ", " + extra + "}").encode())
        assert says in _error(r, 400)["message"], (extra[:40], r.text)
    r = _raw(server, path, b"[" * 3000 + b"]" * 3000)
    _error(r, 400)


@pytest.mark.parametrize(("body", "param"), [
    ({"max_tokens": "10"}, "max_tokens"),
    ({"max_tokens": 10.0}, "max_tokens"),
    ({"logprobs": 0.0}, "logprobs"),
    ({"temperature": True}, "temperature"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"n": 3, "max_tokens": 2}, "n"),  # 3 sequences > 4 slots? no: this one is fine, see below
])
def test_types_are_strict(server: ServerProcess, body: dict, param: str) -> None:
    r = server.post("/v1/chat/completions", {"model": MODEL, "messages": MSG, "max_tokens": 2, **body})
    if param == "n":
        assert r.status_code == 200, r.text
        return
    _error(r, 400, param)


def test_request_that_can_never_be_admitted_is_400(server: ServerProcess) -> None:
    r = server.post("/v1/completions", {"model": MODEL, "prompt": ["a", "b"], "n": 4, "max_tokens": 2})
    err = _error(r, 400, "n")
    assert err["code"] == "too_many_sequences" and "--max-num-seqs 4" in err["message"]


def test_admission_answers_429_with_retry_after_when_slots_and_queue_are_full() -> None:
    """The admission rule exactly: 4 sequences admitted fill --max-num-seqs 4; 2 more may wait (--max-queue
    2), 3 may not; a waiting queue (KV-bound) counts too; the 429 carries Retry-After: 1."""
    from types import SimpleNamespace

    from treadle.server.errors import ApiError
    from treadle.server.serving import Handler
    from treadle.server.settings import ServerSettings

    state = SimpleNamespace(seqs=4, engine=SimpleNamespace(stats={"waiting": 0.0}))
    settings = ServerSettings(served_model_name="m", max_queue=2, max_num_seqs=4)
    h = Handler(state, settings, None)  # type: ignore[arg-type]
    h._admit(2)
    with pytest.raises(ApiError) as busy:
        h._admit(3)
    assert (busy.value.status, busy.value.code) == (429, "queue_full")
    assert busy.value.response().headers["retry-after"] == "1"
    state.seqs = 0
    h._admit(3)  # idle: 3 of the 4 slots
    state.engine.stats["waiting"] = 1.0  # one sequence already waits for KV blocks: 1 + 2 > 2
    with pytest.raises(ApiError):
        h._admit(2)


def test_429_and_retry_after_on_a_live_server(server: ServerProcess) -> None:
    """A live 429: 4 sequences hold the slots while a 3-sequence request arrives. A tiny model can finish the
    hold (its engine thread, pure Python, starves the event loop) before the second request is read: such
    attempts must answer 200 in full; at least one of 5 must see the queue full."""
    statuses = []
    for _ in range(5):
        def hold() -> None:
            server.post("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 250, "ignore_eos": True,
                                            "n": 4})

        t = threading.Thread(target=hold, daemon=True)
        t.start()
        while t.is_alive() and server.metric("treadle_num_requests_running", 0.0) != 4:  # running, or done already
            time.sleep(0.005)
        r = server.post("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 2, "n": 3})
        t.join(TIMEOUT)
        statuses.append(r.status_code)
        if r.status_code == 429:
            _error(r, 429)
            assert r.headers["retry-after"] == "1"
            break
        assert r.status_code == 200 and len(r.json()["choices"]) == 3, r.text
    assert statuses[-1] == 429, statuses


def test_openapi_docs_and_model_card(server: ServerProcess) -> None:
    spec = httpx.get(f"{server.base}/openapi.json", timeout=TIMEOUT).json()
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/ChatCompletionRequest")
    props = spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {"messages", "response_format", "tools", "logit_bias"} <= set(props)
    assert "swagger" in httpx.get(f"{server.base}/docs", timeout=TIMEOUT).text.lower()
    card = httpx.get(f"{server.base}/v1/models/{MODEL}", timeout=TIMEOUT).json()
    assert card["id"] == MODEL and card["object"] == "model"
    _error(httpx.get(f"{server.base}/v1/models/other", timeout=TIMEOUT), 404)


def test_json_schema_with_the_openai_client(server: ServerProcess) -> None:
    with server.client() as client:
        for seed in range(4):
            r = client.chat.completions.create(
                model=MODEL, messages=MSG, max_tokens=60, temperature=1.0, seed=seed,
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}})
            jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
            assert r.choices[0].message.tool_calls is None  # omitted when there are none
        r = client.completions.create(model=MODEL, prompt="Pick", max_tokens=10,
                                      extra_body={"structured_outputs": {"choice": ["left", "right"]}})
        assert r.choices[0].text in ("left", "right")
        r = client.completions.create(model=MODEL, prompt="Code", max_tokens=10, extra_body={"guided_regex": "[A-C]{3}"})
        assert len(r.choices[0].text) == 3 and set(r.choices[0].text) <= set("ABC")
        r = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=40,
                                           response_format={"type": "json_object"})
        content = r.choices[0].message.content  # any object: a random model may not close it in 40 tokens
        assert content.startswith("{")
        if r.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(content), dict)


@pytest.mark.parametrize(("extra", "param", "says"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"if": {}, "then": {}}}}},
     "response_format", "Unimplemented keys"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "json_schema"),
    ({"guided_regex": "(a"}, "guided_regex", "unclosed"),
    ({"guided_json": "{not json"}, "guided_json", "not valid JSON"),
    ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_choice", "one output constraint"),
    ({"structured_outputs": {"structural_tag": "x"}}, "structured_outputs.structural_tag", "not supported"),
    ({"logit_bias": {"abc": 1}}, "logit_bias", "token ids"),
    ({"logit_bias": {"999999": 1}}, "logit_bias", "outside the vocabulary"),
    ({"stop_token_ids": [10**30]}, "stop_token_ids", "outside the vocabulary"),
    ({"tools": [WEATHER]}, "tool_choice", "--tool-call-parser"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name", "not in tools"),
    ({"tools": [{"type": "function"}], "tool_choice": "required"}, "tools[0]", "function"),
])
def test_bad_constraints_are_400_naming_the_field(server: ServerProcess, extra: dict, param: str, says: str) -> None:
    r = server.post("/v1/chat/completions", {"model": MODEL, "messages": MSG, "max_tokens": 2, **extra})
    assert says in _error(r, 400, param)["message"]


def test_logit_bias_forces_a_token(server: ServerProcess) -> None:
    r = server.post("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 3, "temperature": 0,
                                        "ignore_eos": True, "logit_bias": {"42": 100}, "return_token_ids": True})
    assert r.json()["choices"][0]["token_ids"] == [42, 42, 42]


def test_tool_calls_round_trip_in_two_turns(server: ServerProcess) -> None:
    with server.client() as client:
        first = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}], max_tokens=60,
            tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_weather"}})
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather" and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
        second = client.chat.completions.create(model=MODEL, max_tokens=80, tools=[WEATHER, TIME], tool_choice="required",
                                                parallel_tool_calls=False, messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
            {"role": "user", "content": "And the time?"},
        ])
        calls = second.choices[0].message.tool_calls
        assert calls and len(calls) == 1 and second.choices[0].finish_reason == "tool_calls", second
        for c in calls:
            spec = {"get_weather": WEATHER, "get_time": TIME}[c.function.name]
            jsonschema.validate(json.loads(c.function.arguments), spec["function"]["parameters"])
        third = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=4, tools=[WEATHER],
                                               tool_choice="none")
        assert third.choices[0].message.tool_calls is None


def test_streamed_tool_calls(server: ServerProcess) -> None:
    with server.client() as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MSG, max_tokens=60, stream=True, tools=[TIME],
            tool_choice={"type": "function", "function": {"name": "get_time"}})
        deltas = [c.choices[0] for c in stream if c.choices]
    calls = [tc for d in deltas if d.delta.tool_calls for tc in d.delta.tool_calls]
    assert len(calls) > 1  # streamed in fragments, as OpenAI does
    assert calls[0].id.startswith("call_") and calls[0].function.name == "get_time"
    assert all(c.index == 0 and c.id is None and c.function.name is None for c in calls[1:])
    assert json.loads("".join(c.function.arguments for c in calls))["zone"] in ("UTC", "CET")
    assert deltas[-1].finish_reason == "tool_calls"
    assert not any(d.delta.content for d in deltas)
    with server.client() as client:  # required: the calls arrive whole, in one delta at the end
        stream = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=60, stream=True, tools=[TIME],
                                                tool_choice="required", parallel_tool_calls=False)
        deltas = [c.choices[0] for c in stream if c.choices]
    calls = [tc for d in deltas if d.delta.tool_calls for tc in d.delta.tool_calls]
    assert len(calls) == 1 and json.loads(calls[0].function.arguments)["zone"] in ("UTC", "CET")


def test_drain_timeout_ends_running_requests_with_503(tiny_llama: Path, tmp_path: Path) -> None:
    srv = ServerProcess(tiny_llama, tmp_path / "server.log", "--served-model-name", MODEL, "--drain-timeout", "0")
    try:
        results: dict[str, object] = {}
        started = threading.Event()

        def stream() -> None:
            body = {"model": MODEL, "prompt": "x", "max_tokens": 500, "ignore_eos": True, "stream": True}
            with httpx.stream("POST", f"{srv.base}/v1/completions", json=body, timeout=TIMEOUT) as r:
                lines = []
                for line in r.iter_lines():
                    started.set()
                    if line:
                        lines.append(line)
                results["stream"] = lines

        def whole() -> None:
            started.wait(TIMEOUT)
            r = srv.post("/v1/completions", {"model": MODEL, "prompt": "y", "max_tokens": 500, "ignore_eos": True})
            results["whole"] = r

        threads = [threading.Thread(target=f, daemon=True) for f in (stream, whole)]
        for t in threads:
            t.start()
        assert started.wait(TIMEOUT)
        srv.wait_metric("treadle_num_requests_running", 2)
        srv.terminate()
        for t in threads:
            t.join(TIMEOUT)
        lines = results["stream"]
        assert lines[-1] == "data: [DONE]"
        err = json.loads(lines[-2][5:])["error"]
        assert err["code"] == "drain_timeout" and err["type"] == "service_unavailable"
        r = results["whole"]
        assert _error(r, 503)["code"] == "drain_timeout" and r.headers["retry-after"]
        assert srv.proc.wait(timeout=TIMEOUT) == 0
    finally:
        srv.stop()
