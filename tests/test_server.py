"""`treadle serve` through the official openai client: chat, completions, streaming, usage, logprobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from test_server_support import TIMEOUT, ServerProcess

MODEL = "tiny"
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello world! How are you?"}]


@pytest.fixture(scope="module")
def server(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    srv = ServerProcess(tiny_llama, log, "--served-model-name", MODEL, api_key="sekret")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess):  # noqa: ANN201
    with server.client() as c:
        yield c


def test_health_ready_models(server: ServerProcess, client) -> None:  # noqa: ANN001
    assert httpx.get(f"{server.base}/health", timeout=TIMEOUT).status_code == 200
    assert httpx.get(f"{server.base}/ready", timeout=TIMEOUT).json()["status"] == "ready"
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_plain(client) -> None:  # noqa: ANN001
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, temperature=0)
    c = r.choices[0]
    assert r.object == "chat.completion" and c.message.role == "assistant"
    assert isinstance(c.message.content, str) and c.finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 8
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.prompt_tokens_details.cached_tokens >= 0
    # content as a list of text parts renders like the joined string
    parts = [CHAT[0], {"role": "user", "content": [{"type": "text", "text": "Hello world!"},
                                                   {"type": "text", "text": "How are you?"}]}]
    joined = [CHAT[0], {"role": "user", "content": "Hello world!\nHow are you?"}]
    a = client.chat.completions.create(model=MODEL, messages=parts, max_tokens=8, temperature=0)
    b = client.chat.completions.create(model=MODEL, messages=joined, max_tokens=8, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.prompt_tokens == b.usage.prompt_tokens


def test_chat_stream_matches_plain(client) -> None:  # noqa: ANN001
    kw = dict(model=MODEL, messages=CHAT, max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
    plain = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == plain.choices[0].message.content
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


def test_stream_wire_format(server: ServerProcess) -> None:
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server.base}/v1/completions", json=body, headers=server.headers,
                      timeout=TIMEOUT) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "text_completion"


def test_completions_prompt_forms(client, tiny_llama: Path) -> None:  # noqa: ANN001
    from treadle.models.tokenizer import Tokenizer

    tok = Tokenizer(tiny_llama)
    kw = dict(model=MODEL, max_tokens=6, temperature=0, extra_body={"ignore_eos": True})
    one = client.completions.create(prompt="The quick brown fox", **kw)
    assert one.object == "text_completion" and len(one.choices) == 1 and one.usage.completion_tokens == 6
    two = client.completions.create(prompt=["The quick brown fox", "Paged attention"], **kw)
    assert [c.index for c in two.choices] == [0, 1]
    assert two.choices[0].text == one.choices[0].text
    assert two.usage.completion_tokens == 12
    ids = tok.encode("The quick brown fox")
    by_ids = client.completions.create(prompt=ids, **kw)
    assert by_ids.choices[0].text == one.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids) == one.usage.prompt_tokens
    batch = client.completions.create(prompt=[ids, tok.encode("Hi")], **kw)
    assert len(batch.choices) == 2 and batch.choices[0].text == one.choices[0].text


def test_n_and_seed(client) -> None:  # noqa: ANN001
    kw = dict(model=MODEL, messages=CHAT, max_tokens=10, temperature=1.0, extra_body={"ignore_eos": True})
    r = client.chat.completions.create(n=3, seed=7, **kw)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert r.usage.completion_tokens == 30
    a = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    assert a == b
    c = client.completions.create(model=MODEL, prompt="Hello", n=2, seed=3, max_tokens=5, stream=True)
    got = sorted({ch.choices[0].index for ch in c})
    assert got == [0, 1]


def test_stop(client) -> None:  # noqa: ANN001
    kw = dict(model=MODEL, prompt="The quick brown fox", temperature=0, max_tokens=24,
              extra_body={"ignore_eos": True})
    full = client.completions.create(**kw).choices[0].text
    stop = next(full[i : i + 2] for i in range(len(full) // 2, len(full) - 1)
                if "\ufffd" not in full[i : i + 2])
    r = client.completions.create(stop=[stop], **kw).choices[0]
    assert r.text == full[: full.index(stop)] and r.finish_reason == "stop"
    streamed = client.completions.create(stop=stop, stream=True, **kw)
    assert "".join(ch.choices[0].text for ch in streamed) == r.text


def test_logprobs_chat(client) -> None:  # noqa: ANN001
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=5, temperature=0,
                                       logprobs=True, top_logprobs=2, extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)  # greedy: the top token


def test_echo_logprobs_match_transformers(client, tiny_llama: Path) -> None:  # noqa: ANN001
    import torch
    import transformers

    from treadle.models.tokenizer import Tokenizer

    text = "The quick brown fox jumps over the lazy dog."
    ids = Tokenizer(tiny_llama).encode(text)
    r = client.completions.create(model=MODEL, prompt=text, max_tokens=1, echo=True, logprobs=1, temperature=0)
    lp = r.choices[0].logprobs
    assert r.choices[0].text.startswith(text)
    assert len(lp.tokens) == len(ids) + 1 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama, torch_dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    want = [logits[i - 1, ids[i]].item() for i in range(1, len(ids))]
    assert lp.token_logprobs[1 : len(ids)] == pytest.approx(want, abs=2e-3)
    # max_tokens=0 with echo scores the prompt only (lm-eval style)
    z = client.completions.create(model=MODEL, prompt=text, max_tokens=0, echo=True, logprobs=0)
    assert z.choices[0].text == text and z.usage.completion_tokens == 0
    assert z.choices[0].logprobs.token_logprobs[1:] == pytest.approx(want, abs=2e-3)
    # vLLM's prompt_logprobs
    v = client.completions.create(model=MODEL, prompt=text, max_tokens=1, extra_body={"prompt_logprobs": 1})
    plp = v.choices[0].model_extra["prompt_logprobs"]
    assert len(plp) == len(ids) and plp[0] is None
    assert plp[1][str(ids[1])]["logprob"] == pytest.approx(want[0], abs=2e-3)


def test_usage_cached_tokens(server: ServerProcess, client) -> None:  # noqa: ANN001
    prompt = " ".join(["Continuous batching lets new requests join the running batch."] * 8)
    kw = dict(model=MODEL, prompt=prompt, max_tokens=2, temperature=0)
    hits0 = server.metric("treadle_prefix_cache_hits_total")
    first = client.completions.create(**kw)
    second = client.completions.create(**kw)
    assert first.usage.prompt_tokens > 64
    assert second.usage.prompt_tokens_details.cached_tokens > 0
    assert second.usage.prompt_tokens_details.cached_tokens <= second.usage.prompt_tokens
    assert server.metric("treadle_prefix_cache_hits_total") > hits0
    streamed = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert streamed[-1].usage.prompt_tokens_details.cached_tokens > 0


def test_extras_and_ignored_fields(client) -> None:  # noqa: ANN001
    r = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_completion_tokens=5, temperature=0.7, top_p=0.9, seed=1,
        presence_penalty=0.5, frequency_penalty=0.5, user="u1", metadata={"k": "v"}, store=False,
        parallel_tool_calls=False, service_tier="auto",
        extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": True},
    )
    assert r.usage.completion_tokens == 5
    assert r.choices[0].finish_reason == "length"


def test_request_id_and_metrics(server: ServerProcess) -> None:
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 2}
    r = server.post("/v1/completions", body, headers={"x-request-id": "trace-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
    generated = server.post("/v1/completions", body).headers["x-request-id"]
    assert len(generated) >= 16
    assert server.wait_log("request_id=trace-42")
    for name in ("treadle_time_to_first_token_seconds_count", "treadle_inter_token_latency_seconds_count",
                 "treadle_e2e_request_latency_seconds_count", "treadle_request_queue_time_seconds_count",
                 "treadle_prompt_tokens_total", "treadle_generation_tokens_total",
                 "treadle_prefix_cache_queries_total"):
        assert server.metric(name, model=MODEL) > 0, name
    assert server.metric("treadle_requests_total", finish_reason="length", status="200") > 0
    for name in ("treadle_num_requests_running", "treadle_num_requests_waiting", "treadle_kv_cache_usage_perc"):
        assert server.metric(name, model=MODEL) >= 0
