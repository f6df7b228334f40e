"""Model-aware gateway: route aliases (weighted, sticky, monotone), routing by served model, the
admin API, and the prefix-hash contract shared with the engine (no engine imports in the gateway)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway_support import FakeReplica, ThreadServer
from test_gateway import metric, wait_for
from treadle.gateway.app import Gateway, GatewaySettings, create_gateway_app
from treadle.gateway.policies import make_policy
from treadle.gateway.routes import Route, RouteTable

T = 30.0
USERS = [f"user-{i}" for i in range(4000)]


def shares(route: Route) -> dict[str, float]:
    picks = [route.choose(u) for u in USERS]
    return {v: picks.count(v) / len(USERS) for v, _ in route.versions}


def test_route_split_follows_the_weights_and_is_sticky() -> None:
    route = Route.parse("bot", {"v3": 0.9, "v4": 0.1})
    s = shares(route)
    assert abs(s["v4"] - 0.1) < 0.03 and abs(s["v3"] - 0.9) < 0.03
    assert all(route.choose(u) == route.choose(u) for u in USERS[:200])
    three = shares(Route.parse("bot", {"a": 1, "b": 2, "c": 1}))
    assert abs(three["b"] - 0.5) < 0.04 and abs(three["a"] - 0.25) < 0.04
    assert shares(Route.parse("bot", {"a": 1, "b": 0})) == {"a": 1.0, "b": 0.0}


def test_route_is_monotone_when_a_share_grows() -> None:
    steps = [{"v3": 0.9, "v4": 0.1}, {"v3": 0.7, "v4": 0.3}, {"v3": 0.5, "v4": 0.5}, {"v3": 0.0, "v4": 1.0}]
    on_v4: set[str] = set()
    for weights in steps:
        route = Route.parse("bot", weights)
        now = {u for u in USERS if route.choose(u) == "v4"}
        assert on_v4 <= now, "a user on the growing version was moved off it"
        on_v4 = now
    assert on_v4 == set(USERS)
    # A third version's growth only takes users to it.
    before = Route.parse("bot", {"a": 1, "b": 1, "c": 1})
    after = Route.parse("bot", {"a": 1, "b": 1, "c": 3})
    for u in USERS[:1000]:
        if after.choose(u) != before.choose(u):
            assert after.choose(u) == "c"


@pytest.mark.parametrize("versions", [{}, {"x": -1}, {"x": 0}, {"bot": 1}, [1], {"x": float("nan")}])
def test_bad_routes_are_refused(versions) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="versions"):
        Route.parse("bot", versions)


def test_route_table_resolves_aliases_only() -> None:
    table = RouteTable()
    table.set(Route.parse("bot", {"v4": 1}))
    assert table.resolve("bot", "u") == ("v4", "bot")
    assert table.resolve("v3", "u") == ("v3", None)
    assert table.resolve(None, "u") == (None, None)


def test_gateway_imports_no_engine_code_and_no_torch() -> None:
    code = ("import sys, treadle.gateway.app, treadle.gateway.command, treadle.gateway.prefix;"
            "bad = [m for m in sys.modules if m.startswith('treadle.engine') or m == 'torch'];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_gateway_hashes_equal_engine_block_hashes(tiny_llama: Path, tmp_path: Path) -> None:
    """Same request, adapter and salt: the gateway's chain (from the replica's advertised card)
    equals the engine's block hashes."""
    from types import SimpleNamespace

    from lora_support import make_peft_adapter
    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine
    from treadle.gateway.prefix import PrefixHasher
    from treadle.models.tokenizer import Tokenizer
    from treadle.sampling_params import SamplingParams
    from treadle.server.lora_routes import model_cards

    adapter = make_peft_adapter(tiny_llama, tmp_path / "a", seed=5, r=2)
    engine = LLMEngine(EngineConfig(model=str(tiny_llama), num_kv_blocks=64, block_size=4, threads=1,
                                    lora_modules=(("a", str(adapter)),)))
    cards = {c["id"]: c for c in model_cards("tiny", SimpleNamespace(engine=engine), engine.loras.by_name, 0)}
    hasher = PrefixHasher(Tokenizer(tiny_llama), "tiny")
    messages = [{"role": "system", "content": "The quick brown fox jumps over the lazy dog."},
                {"role": "user", "content": "Hello world! How are you today?"}]
    seen = set()
    for model, salt in (("tiny", None), ("tiny", "tenant-1"), ("a", None), ("a", "tenant-1")):
        rid = f"{model}-{salt}"
        engine.add_request(rid, messages, SamplingParams(max_tokens=1), lora_name=None if model == "tiny" else model,
                           cache_salt=salt)
        req = engine.scheduler.requests[rid]
        engine.scheduler.kv.update_block_hashes(req)
        body = {"model": model, "messages": messages} | ({"cache_salt": salt} if salt else {})
        gw = hasher.route_request(body, chat=True, card=cards[model])
        assert len(req.block_hashes) >= 4
        assert list(gw.block_hashes) == req.block_hashes
        seen.add(gw.block_hashes[0])
    assert len(seen) == 4  # base, salt and adapter all separate the chains


@pytest.fixture()
def fleet():  # noqa: ANN201 - two fake replicas serving different adapter versions, and a gateway
    a = FakeReplica("A", models=("base", "v3"))
    b = FakeReplica("B", models=("base", "v4"))
    gw = Gateway(make_policy("least_loaded"), GatewaySettings(admin_api_key="adm", api_key="k"))
    for r in (a, b):
        gw.replicas.add(r.base)
    srv = ThreadServer(create_gateway_app(gw))
    assert wait_for(lambda: len(gw.replicas.routable()) == 2)
    yield gw, srv, a, b
    srv.stop()
    a.stop()
    b.stop()


def test_gateway_routes_by_model_and_alias_with_admin_api(fleet) -> None:  # noqa: ANN001
    gw, srv, a, b = fleet
    user_h = {"Authorization": "Bearer k"}
    admin_h = {"Authorization": "Bearer adm"}
    for _ in range(4):  # a version goes only to the replica serving it
        r = httpx.post(f"{srv.base}/v1/completions", headers=user_h, json={"model": "v4", "prompt": "x"}, timeout=T)
        assert r.json()["served_by"] == "B"
    miss = httpx.post(f"{srv.base}/v1/completions", headers=user_h, json={"model": "v9", "prompt": "x"}, timeout=T)
    assert miss.status_code == 404 and miss.json()["error"]["code"] == "model_not_found"
    # The admin API needs the admin key; versions must be served.
    route = {"versions": {"v3": 0.5, "v4": 0.5}}
    assert httpx.put(f"{srv.base}/admin/routes/bot", json=route, headers=user_h, timeout=T).status_code == 401
    bad = httpx.put(f"{srv.base}/admin/routes/bot", json={"versions": {"v9": 1}}, headers=admin_h, timeout=T)
    assert bad.status_code == 400 and "v9" in bad.json()["error"]["message"]
    deep = httpx.put(f"{srv.base}/admin/routes/bot", content=b"[" * 3000 + b"]" * 3000,
                     headers={**admin_h, "content-type": "application/json"}, timeout=T)
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]["message"]
    assert httpx.put(f"{srv.base}/admin/routes/bot", json=route, headers=admin_h, timeout=T).status_code == 200
    listed = httpx.get(f"{srv.base}/admin/routes", headers=admin_h, timeout=T).json()["routes"]
    assert listed == [{"alias": "bot", "versions": {"v3": 0.5, "v4": 0.5}}]
    ids = {m["id"] for m in httpx.get(f"{srv.base}/v1/models", headers=user_h, timeout=T).json()["data"]}
    assert ids == {"base", "v3", "v4", "bot"}
    # Sticky per user: each user always lands on one version, served by the replica holding it.
    expected = Route.parse("bot", route["versions"])
    for i in range(12):
        user = f"u{i}"
        got = {httpx.post(f"{srv.base}/v1/completions", headers=user_h, json={"model": "bot", "prompt": "x",
                                                                              "user": user}, timeout=T).json()["model"]
               for _ in range(2)}
        assert got == {expected.choose(f"user:{user}")}
    total = sum(metric(srv.base, "treadle_gateway_route_decisions_total", alias="bot", version=v) for v in ("v3", "v4"))
    assert total == 24 and metric(srv.base, "treadle_gateway_route_decisions_total", alias="bot", version="v3") > 0
    # Without a user the API key decides: one key, one version.
    picks = {httpx.post(f"{srv.base}/v1/completions", headers=user_h, json={"model": "bot", "prompt": "x"},
                        timeout=T).json()["model"] for _ in range(3)}
    assert len(picks) == 1
    assert httpx.delete(f"{srv.base}/admin/routes/bot", headers=admin_h, timeout=T).status_code == 200
    gone = httpx.post(f"{srv.base}/v1/completions", headers=user_h, json={"model": "bot", "prompt": "x"}, timeout=T)
    assert gone.status_code == 404


def test_admin_routes_take_a_key_with_the_admin_role(tmp_path: Path) -> None:
    """Keys with roles (treadle.feedback.roles) reach the route admin API too: admin yes, user no."""
    import json

    from treadle.feedback.config import FeedbackConfig

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"key": "root-key", "user": "ops", "role": "admin"},
                                         {"key": "user-key", "user": "u", "role": "user"}]}))
    replica = FakeReplica("A", models=("base", "v3"))
    settings = GatewaySettings(feedback=FeedbackConfig(db=f"sqlite:///{tmp_path / 'gw.db'}", keys_file=str(keys)))
    gw = Gateway(make_policy("least_loaded"), settings)  # no --admin-api-key
    gw.replicas.add(replica.base)
    srv = ThreadServer(create_gateway_app(gw))
    try:
        assert wait_for(lambda: len(gw.replicas.routable()) == 1)
        route = {"versions": {"v3": 1.0}}
        url = f"{srv.base}/admin/routes/bot"
        assert httpx.put(url, json=route, headers={"Authorization": "Bearer user-key"}, timeout=30).status_code in (401, 403)
        ok = httpx.put(url, json=route, headers={"Authorization": "Bearer root-key"}, timeout=30)
        assert ok.status_code == 200, ok.text
        listed = httpx.get(f"{srv.base}/admin/routes", headers={"Authorization": "Bearer root-key"}, timeout=30)
        assert [r["alias"] for r in listed.json()["routes"]] == ["bot"]
    finally:
        srv.stop()
        replica.stop()
