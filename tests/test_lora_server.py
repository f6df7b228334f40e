"""Multi-LoRA through `treadle serve` and the official openai client (adapters named as the model)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from lora_support import make_peft_adapter, merged_model, reference_logits
from test_server_support import ServerProcess

BASE = "tiny"
ADMIN = "admin-key"


@pytest.fixture(scope="module")
def loras(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("srv-loras")
    return {"a": make_peft_adapter(tiny_llama, root / "a", seed=11),
            "b": make_peft_adapter(tiny_llama, root / "b", seed=12, r=2, targets=("q_proj", "down_proj"))}


@pytest.fixture(scope="module")
def server(tiny_llama: Path, loras, tmp_path_factory) -> Iterator[ServerProcess]:  # noqa: ANN001
    log = tmp_path_factory.mktemp("lora-server") / "server.log"
    srv = ServerProcess(tiny_llama, log, "--served-model-name", BASE, "--lora", f"a={loras['a']}",
                        "--admin-api-key", ADMIN, "--max-loras", "2", api_key="user-key")
    yield srv
    srv.stop()


def admin(server: ServerProcess, path: str, body: dict, key: str = ADMIN):  # noqa: ANN201
    return server.post(path, body, headers={"Authorization": f"Bearer {key}"})


def test_models_list_base_and_adapters_with_parent_and_root(server, loras) -> None:  # noqa: ANN001
    with server.client() as c:
        cards = {m.id: m.model_dump() for m in c.models.list().data}
    assert cards[BASE]["parent"] is None and cards[BASE]["prefix_hash"]["block_size"] == 16
    assert cards["a"]["parent"] == BASE and cards["a"]["root"] == str(loras["a"].resolve())
    assert len(cards["a"]["version"]) == 16


def test_adapter_as_model_equals_merged_transformers(server, tiny_llama, loras) -> None:  # noqa: ANN001
    prompt = [5, 17, 99, 23, 41, 8, 77, 3]
    with server.client() as c:
        r = c.completions.create(model="a", prompt=prompt, max_tokens=6, temperature=0,
                                 extra_body={"ignore_eos": True})
        base = c.completions.create(model=BASE, prompt=prompt, max_tokens=6, temperature=0,
                                    extra_body={"ignore_eos": True})
        with pytest.raises(openai.NotFoundError) as e:
            c.completions.create(model="nope", prompt=prompt, max_tokens=2)
    assert r.model == "a" and e.value.code == "model_not_found" and "nope" in e.value.message
    ref = merged_model(tiny_llama, loras["a"])
    ids = list(prompt)
    for _ in range(6):  # transformers' greedy continuation with the adapter merged
        ids.append(int(reference_logits(ref, ids)[-1].argmax()))
    assert r.choices[0].text == _tokenizer(tiny_llama).decode(ids[len(prompt):])
    assert r.choices[0].text != base.choices[0].text
    version = _cards(server)["a"]["version"]
    assert server.metric("treadle_requests_total", model_name="a", model_version=version, status="200") >= 1
    assert server.metric("treadle_e2e_request_latency_seconds_count", model_name=BASE, model_version="base") >= 1


def _tokenizer(path: Path):  # noqa: ANN202
    from treadle.models.tokenizer import Tokenizer

    return Tokenizer(path)


def _cards(server: ServerProcess) -> dict[str, dict]:
    with server.client() as c:
        return {m.id: m.model_dump() for m in c.models.list().data}


def test_load_and_unload_need_the_admin_key_and_report_bad_input(server, loras, tmp_path) -> None:  # noqa: ANN001
    body = {"lora_name": "b", "lora_path": str(loras["b"])}
    assert admin(server, "/v1/load_lora_adapter", body, key="user-key").status_code == 401
    bad = admin(server, "/v1/load_lora_adapter", {"lora_name": "c", "lora_path": str(tmp_path / "missing")})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_lora_adapter"
    assert "lora_path" in bad.json()["error"]["message"]
    dora = shutil.copytree(loras["b"], tmp_path / "dora")
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    r = admin(server, "/v1/load_lora_adapter", {"lora_name": "c", "lora_path": str(dora)})
    assert r.status_code == 400 and "use_dora" in r.json()["error"]["message"]
    r = admin(server, "/v1/load_lora_adapter", {"lora_name": "a", "lora_path": str(loras["b"])})
    assert r.status_code == 400 and r.json()["error"]["code"] == "lora_already_loaded"
    r = admin(server, "/v1/load_lora_adapter", {"lora_name": "c"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "lora_path"
    r = admin(server, "/v1/unload_lora_adapter", {"lora_name": "never"})
    assert r.status_code == 404


def test_load_while_streaming_drops_nothing_and_unload_lets_running_finish(server, loras) -> None:  # noqa: ANN001
    with server.client() as c:
        stream = c.completions.create(model="a", prompt="Hello world", max_tokens=300, temperature=0,
                                      stream=True, extra_body={"ignore_eos": True})
        chunks = iter(stream)
        first = next(chunks)
        r = admin(server, "/v1/load_lora_adapter", {"lora_name": "b", "lora_path": str(loras["b"])})
        assert r.status_code == 200, r.text
        out = c.completions.create(model="b", prompt="Hello world", max_tokens=4, temperature=0)
        assert out.model == "b"
        # A long request on b is running when b is unloaded: it finishes; new requests for b get 404.
        stream_b = c.completions.create(model="b", prompt="Hello", max_tokens=200, temperature=0, stream=True,
                                        extra_body={"ignore_eos": True})
        chunks_b = iter(stream_b)
        next(chunks_b)
        assert admin(server, "/v1/unload_lora_adapter", {"lora_name": "b"}).status_code == 200
        with pytest.raises(openai.NotFoundError):
            c.completions.create(model="b", prompt="Hello", max_tokens=2)
        rest_b = list(chunks_b)
        rest = list(chunks)
    assert rest[-1].choices[0].finish_reason == "length" and rest_b[-1].choices[0].finish_reason == "length"
    assert len("".join(x.choices[0].text for x in [first, *rest])) > 0
    assert "b" not in _cards(server)


def test_cache_salt_separates_prefix_caches(server) -> None:  # noqa: ANN001
    prompt = list(range(20, 70))

    def cached(**extra: object) -> int:
        with server.client() as c:
            r = c.completions.create(model=BASE, prompt=prompt, max_tokens=1, extra_body=extra)
        return r.usage.prompt_tokens_details.cached_tokens if r.usage.prompt_tokens_details else 0

    first = cached(cache_salt="tenant-x")
    assert cached(cache_salt="tenant-x") >= 48 > first
    assert cached(cache_salt="tenant-y") == 0


def test_gateway_fans_out_adapter_loads_and_routes_the_adapter(server, loras, tiny_llama) -> None:  # noqa: ANN001
    from gateway_support import ThreadServer
    from test_gateway import wait_for
    from treadle.gateway.app import Gateway, GatewaySettings, create_gateway_app
    from treadle.gateway.policies import make_policy
    from treadle.gateway.prefix import PrefixHasher

    gw = Gateway(make_policy("prefix_affinity"), GatewaySettings(admin_api_key=ADMIN, replica_api_key="user-key"),
                 PrefixHasher(_tokenizer(tiny_llama), BASE))
    gw.replicas.add(server.base)
    srv = ThreadServer(create_gateway_app(gw))
    try:
        assert wait_for(lambda: len(gw.replicas.routable()) == 1)
        import httpx

        h = {"Authorization": f"Bearer {ADMIN}"}
        r = httpx.post(f"{srv.base}/v1/load_lora_adapter", json={"lora_name": "gw-c", "lora_path": str(loras["b"])},
                       headers=h, timeout=30)
        assert r.status_code == 200, r.text
        import openai as oa

        with oa.OpenAI(base_url=f"{srv.base}/v1", api_key="anything-when-gateway-has-no-key", max_retries=0) as c:
            assert "gw-c" in {m.id for m in c.models.list().data}
            out = c.chat.completions.create(model="gw-c", messages=[{"role": "user", "content": "Hello"}],
                                            max_tokens=3, temperature=0)
            assert out.model == "gw-c"
        r = httpx.post(f"{srv.base}/v1/unload_lora_adapter", json={"lora_name": "gw-c"}, headers=h, timeout=30)
        assert r.status_code == 200
        miss = httpx.post(f"{srv.base}/v1/completions", json={"model": "gw-c", "prompt": "x"}, timeout=30)
        assert miss.status_code == 404
    finally:
        srv.stop()
