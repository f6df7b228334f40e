"""Every error of `treadle serve` is OpenAI's error JSON with the right status, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from test_server_support import TIMEOUT, ServerProcess

MODEL = "tiny"
MSG = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def server(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("server-errors") / "server.log"
    srv = ServerProcess(tiny_llama, log, "--served-model-name", MODEL, "--max-model-len", "128",
                        api_key="sekret")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess):  # noqa: ANN201
    with server.client() as c:
        yield c


def _error(r: httpx.Response, status: int, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    return err


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"temperature": -1}, "temperature", ">= 0"),
        ({"temperature": "hot"}, "temperature", "valid number"),
        ({"top_p": 0}, "top_p", "(0, 1]"),
        ({"n": 0}, "n", "[1, 128]"),
        ({"presence_penalty": 3}, "presence_penalty", "[-2, 2]"),
        ({"top_logprobs": 2}, "top_logprobs", "logprobs=true"),
        ({"logprobs": True, "top_logprobs": 50}, "logprobs", "[0, 20]"),
        ({"max_tokens": 0}, "max_tokens", "at least 1"),
        ({"stop": [""]}, "stop", "non-empty"),
        ({"stop": 5}, "stop", "string"),
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "'user'"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content[0]", "only 'text'"),
        ({"top_k": -5}, "top_k", "top_k"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice", "--tool-call-parser"),
        ({"tool_choice": "required"}, "tool_choice", "needs 'tools'"),
        ({"response_format": {"type": "json"}}, "response_format.type", "json_schema"),
        ({"logit_bias": {"x5": 10}}, "logit_bias", "token ids"),
        ({"frobnicate": 1}, "frobnicate", "Unrecognized"),
    ],
)
def test_chat_bad_params(server: ServerProcess, body: dict, param: str, says: str) -> None:
    err = _error(server.post("/v1/chat/completions", {"model": MODEL, "messages": MSG, **body}), 400, param)
    assert says in err["message"] and err["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": {"a": 1}}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [1, 2, 10**9]}, "prompt"),
        ({"prompt": "x", "logprobs": 30}, "logprobs"),
        ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
        ({"prompt": "x", "n": 2, "echo": True, "logprobs": 1}, "echo"),
        ({"max_tokens": 4}, "prompt"),
    ],
)
def test_completion_bad_params(server: ServerProcess, body: dict, param: str) -> None:
    _error(server.post("/v1/completions", {"model": MODEL, **body}), 400, param)


def test_ignorable_values_of_unsupported_fields_are_accepted(server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": MSG, "max_tokens": 2, "tools": [], "tool_choice": "none",
            "response_format": {"type": "text"}, "logit_bias": {}, "metadata": {"a": "b"}, "store": True}
    assert server.post("/v1/chat/completions", body).status_code == 200


def test_context_length(server: ServerProcess, client) -> None:  # noqa: ANN001
    long_prompt = "Paged attention keeps the KV cache in blocks. " * 40
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt=long_prompt, max_tokens=4)
    assert e.value.status_code == 400 and e.value.code == "context_length_exceeded"
    assert "128" in e.value.message and e.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=200)
    assert e.value.code == "context_length_exceeded" and e.value.param == "max_tokens"
    # without max_tokens the default shrinks to what fits
    r = client.completions.create(model=MODEL, prompt="Hello " * 20, extra_body={"ignore_eos": True})
    assert r.usage.total_tokens == 128 and r.choices[0].finish_reason == "length"


def test_auth(server: ServerProcess) -> None:
    with server.client(api_key="wrong") as bad, pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model=MODEL, messages=MSG, max_tokens=2)
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    r = httpx.post(f"{server.base}/v1/chat/completions", json={"messages": MSG}, timeout=TIMEOUT)
    _error(r, 401)
    # health, readiness and metrics stay open for probes and scrapers
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(f"{server.base}{path}", timeout=TIMEOUT).status_code == 200


def test_unknown_model(client) -> None:  # noqa: ANN001
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=2)
    assert e.value.status_code == 404 and e.value.param == "model" and "gpt-4o" in e.value.message


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b"", b'"text"', b"\xff\xfe", b'{"messages": "hi"}', b'{"messages": [1]}']
)
def test_malformed_body_is_400(server: ServerProcess, raw: bytes) -> None:
    for path in ("/v1/chat/completions", "/v1/completions"):
        r = httpx.post(f"{server.base}{path}", content=raw, timeout=TIMEOUT,
                       headers={**server.headers, "content-type": "application/json"})
        _error(r, 400)


def test_unknown_route_and_method(server: ServerProcess) -> None:
    _error(httpx.get(f"{server.base}/v1/nothing", headers=server.headers, timeout=TIMEOUT), 404)
    _error(httpx.get(f"{server.base}/v1/chat/completions", headers=server.headers, timeout=TIMEOUT), 405)


def test_rejections_are_counted(server: ServerProcess) -> None:
    """Each rejection this test makes (400, 401, 404) adds one to its status's counter."""
    def count(status: str) -> float:
        return server.metric("treadle_requests_total", 0.0, model=MODEL, status=status)

    before = {s: count(s) for s in ("400", "401", "404")}
    _error(server.post("/v1/chat/completions", {"model": MODEL, "messages": "hi"}), 400)
    _error(httpx.post(f"{server.base}/v1/chat/completions", json={"messages": MSG}, timeout=TIMEOUT), 401)
    _error(server.post("/v1/chat/completions", {"model": "nope", "messages": MSG}), 404)
    for status, n in before.items():
        assert server.wait_metric("treadle_requests_total", n + 1, model=MODEL, status=status) == n + 1, status
    assert "Traceback" not in server.log()
