"""`treadle serve` under load and at the edges of a request's life: 429, disconnects, SIGTERM drain.

The long requests use a tiny model with a 4096-token context: a 4000-token reply takes seconds even
on a fast machine, so each test acts (disconnects, signals) on an observed state -- the first chunk,
a running request -- long before the reply could end. No test waits a fixed time.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from conftest import make_tiny_model
from test_server_support import TIMEOUT, ServerProcess

MODEL = "tiny"
LONG_TOKENS = 4000
LONG = dict(model=MODEL, prompt="The quick brown fox", max_tokens=LONG_TOKENS, temperature=0,
            extra_body={"ignore_eos": True})
KV = ("--num-kv-blocks", "300")  # 4800 tokens: room for one 4000-token reply


@pytest.fixture(scope="module")
def long_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-long"), "llama", max_position_embeddings=4096)


@pytest.fixture(scope="module")
def busy(long_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One running slot and no waiting room: a second concurrent request gets 429."""
    log = tmp_path_factory.mktemp("server-busy") / "server.log"
    srv = ServerProcess(long_llama, log, "--served-model-name", MODEL, "--max-num-seqs", "1", "--max-queue", "0",
                        *KV)
    yield srv
    srv.stop()


def test_queue_full_is_429(busy: ServerProcess) -> None:
    with busy.client() as client:
        stream = client.completions.create(stream=True, **LONG)
        try:
            next(iter(stream))
            with pytest.raises(openai.RateLimitError) as e:
                client.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
            assert e.value.status_code == 429 and e.value.code == "queue_full"
        finally:
            stream.close()
    assert busy.wait_metric("treadle_num_requests_running", 0) == 0
    r = busy.post("/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 2})
    assert r.status_code == 200  # the slot is free again
    assert busy.metric("treadle_requests_total", status="429") >= 1


def test_disconnect_mid_stream_frees_blocks(busy: ServerProcess) -> None:
    aborted0 = busy.metric("treadle_requests_total", 0.0, finish_reason="abort")
    gen0 = busy.metric("treadle_generation_tokens_total")
    with busy.client() as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=LONG_TOKENS,
            stream=True, extra_body={"ignore_eos": True},
        )
        chunks = iter(stream)
        next(chunks)
        next(chunks)
        assert busy.metric("treadle_kv_cache_usage_perc") > 0
        stream.close()
    assert busy.wait_metric("treadle_requests_total", aborted0 + 1, finish_reason="abort") == aborted0 + 1
    assert busy.wait_metric("treadle_num_requests_running", 0) == 0
    assert busy.wait_metric("treadle_kv_cache_usage_perc", 0) == 0
    assert busy.metric("treadle_generation_tokens_total") - gen0 < LONG_TOKENS  # stopped early


def test_disconnect_non_streaming_frees_blocks(busy: ServerProcess) -> None:
    """A client that goes away while its (non-streamed) request runs: the request is aborted, blocks freed."""
    aborted0 = busy.metric("treadle_requests_total", 0.0, finish_reason="abort")
    body = json.dumps({"model": MODEL, "prompt": "Hello", "max_tokens": LONG_TOKENS, "ignore_eos": True}).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", busy.port), timeout=TIMEOUT) as sock:
        sock.sendall(head + body)
        assert busy.wait_metric("treadle_num_requests_running", 1) == 1  # it runs: now hang up
    assert busy.wait_metric("treadle_requests_total", aborted0 + 1, finish_reason="abort") == aborted0 + 1
    assert busy.wait_metric("treadle_num_requests_running", 0) == 0
    assert busy.wait_metric("treadle_kv_cache_usage_perc", 0) == 0


def test_sigterm_drains(long_llama: Path, tmp_path: Path) -> None:
    srv = ServerProcess(long_llama, tmp_path / "server.log", "--served-model-name", MODEL, *KV)
    try:
        result: dict = {}
        first = threading.Event()

        def consume() -> None:
            try:
                with srv.client() as client:
                    text, finish = [], None
                    for ch in client.completions.create(stream=True, **{**LONG, "max_tokens": 2000}):
                        first.set()
                        text.append(ch.choices[0].text)
                        finish = ch.choices[0].finish_reason or finish
                    result["finish"] = finish
            except Exception as e:  # noqa: BLE001 - checked below
                result["error"] = e
            finally:
                first.set()

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        assert first.wait(TIMEOUT)
        srv.terminate()
        ready = httpx.get(f"{srv.base}/ready", timeout=TIMEOUT)
        assert ready.status_code == 503  # draining
        r = srv.post("/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
        t.join(TIMEOUT)
        assert not t.is_alive() and "error" not in result, result
        assert result["finish"] == "length"  # the in-flight stream ran to its end
        assert srv.proc.wait(timeout=TIMEOUT) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{srv.base}/health", timeout=2.0)
        assert "draining 1 in-flight" in srv.log()
    finally:
        srv.stop()
