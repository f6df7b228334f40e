"""Each routing rule on constructed state (no processes): round_robin, least_loaded, prefix_affinity."""

from __future__ import annotations

import pytest

from treadle.engine.kv_cache_manager import extra_hash_key, hash_token_blocks
from treadle.gateway.policies import Decision, ReplicaLoad, RouteRequest, make_policy
from treadle.gateway.policies.base import least_loaded_of
from treadle.gateway.policies.prefix_affinity import PrefixAffinity
from treadle.gateway.prefix import PrefixHasher
from treadle.gateway.replicas import parse_metrics


def loads(*pairs: tuple[str, int]) -> list[ReplicaLoad]:
    return [ReplicaLoad(rid, inflight=n) for rid, n in pairs]


def req(*blocks: int, key: bytes = b"m|") -> RouteRequest:
    """A request whose prompt is the given 16-token blocks (block v = [v] * 16)."""
    ids = [t for v in blocks for t in [v] * 16]
    return RouteRequest(key, tuple(hash_token_blocks(ids, 16)))


def route(p: PrefixAffinity, r: RouteRequest, cands: list[ReplicaLoad]) -> Decision:
    d = p.choose(r, cands)
    p.on_routed(r, d)
    return d


def test_registry_names_and_bad_input() -> None:
    for name in ("round_robin", "least_loaded", "prefix_affinity"):
        assert make_policy(name).name == name
    with pytest.raises(ValueError, match="policy must be one of"):
        make_policy("random")
    with pytest.raises(ValueError, match="max_load_gap must be >= 0"):
        make_policy("prefix_affinity", max_load_gap=-1)
    with pytest.raises(ValueError, match="bad parameters"):
        make_policy("round_robin", nope=1)


def test_round_robin_cycles_ignoring_load() -> None:
    p = make_policy("round_robin")
    cands = loads(("a", 9), ("b", 0), ("c", 0))
    assert [p.choose(RouteRequest(), cands).replica_id for _ in range(4)] == ["a", "b", "c", "a"]


def test_least_loaded_counts_waiting_and_rotates_ties() -> None:
    p = make_policy("least_loaded")
    cands = [ReplicaLoad("a", 1, 2), ReplicaLoad("b", 2, 0), ReplicaLoad("c", 2, 0)]
    assert least_loaded_of(cands).replica_id == "b"  # a: 1 + 2 = 3 > 2
    assert [p.choose(RouteRequest(), cands).replica_id for _ in range(3)] == ["b", "c", "b"]
    # equal load: fewer in flight first (the rest of the load is queued on the replica)
    assert least_loaded_of([ReplicaLoad("x", 2, 1), ReplicaLoad("y", 1, 2)]).replica_id == "y"


def test_prefix_affinity_no_match_goes_least_loaded_then_sticks() -> None:
    p = PrefixAffinity()
    cands = loads(("a", 3), ("b", 1), ("c", 2))
    d = route(p, req(1, 2, 3), cands)
    assert (d.replica_id, d.reason, d.matched_blocks) == ("b", "no_match", 0)
    d = route(p, req(1, 2, 9), loads(("a", 0), ("b", 3), ("c", 0)))  # b is busier but holds 2 blocks
    assert (d.replica_id, d.reason, d.matched_blocks) == ("b", "prefix_match", 2)


def test_prefix_affinity_longest_match_wins_and_ties_take_lower_load() -> None:
    p = PrefixAffinity()
    p.on_routed(req(1), Decision("a", "x"))
    p.on_routed(req(1, 2, 3), Decision("b", "x"))
    p.on_routed(req(1, 2, 3), Decision("c", "x"))
    d = p.choose(req(1, 2, 3, 4), loads(("a", 0), ("b", 2), ("c", 1)))
    assert (d.replica_id, d.reason, d.matched_blocks) == ("c", "prefix_match", 3)
    # the match is of leading blocks: block 3 under another parent does not count
    assert p.index("b").match(PrefixAffinity.keyed(req(7, 2, 3))) == 0


def test_prefix_affinity_load_bound_falls_back_to_least_loaded() -> None:
    p = PrefixAffinity(max_load_gap=2)
    p.on_routed(req(1, 2), Decision("a", "x"))
    at_bound = p.choose(req(1, 2), [ReplicaLoad("a", 3, 0), ReplicaLoad("b", 1, 0)])
    assert (at_bound.replica_id, at_bound.reason) == ("a", "prefix_match")  # 3 <= 1 + 2
    over = p.choose(req(1, 2), [ReplicaLoad("a", 2, 2), ReplicaLoad("b", 1, 0)])  # 4 > 1 + 2
    assert (over.replica_id, over.reason, over.matched_blocks) == ("b", "overloaded", 0)


def test_prefix_affinity_min_match_blocks() -> None:
    p = PrefixAffinity(min_match_blocks=2)
    p.on_routed(req(1), Decision("a", "x"))
    assert p.choose(req(1, 5), loads(("a", 1), ("b", 0))).reason == "no_match"


def test_prefix_affinity_cost_balance_weighs_match_against_queue() -> None:
    p = PrefixAffinity(balance="cost")
    p.on_routed(req(1, 2, 3, 4), Decision("a", "x"))  # first request: W = its uncached 64 tokens
    assert p.mean_uncached == 64
    p.mean_uncached = 32.0  # W: two blocks of work per queued request
    # cost(a) = 1 x 32 + (5 - 4) x 16 = 48 < cost(b) = 0 + 5 x 16 = 80: the long match is worth the queue
    d = p.choose(req(1, 2, 3, 4, 5), loads(("a", 1), ("b", 0)))
    assert (d.replica_id, d.reason, d.matched_blocks) == ("a", "prefix_match", 4)
    # cost(a) = 2 x 32 + 16 = 80 = cost(b): tie -> lower load; load outweighed the longer match
    d = p.choose(req(1, 2, 3, 4, 5), loads(("a", 2), ("b", 0)))
    assert (d.replica_id, d.reason, d.matched_blocks) == ("b", "overloaded", 0)
    # the gap rule would still send it to a (2 <= 0 + 4)
    gap = PrefixAffinity()
    gap.on_routed(req(1, 2, 3, 4), Decision("a", "x"))
    assert gap.choose(req(1, 2, 3, 4, 5), loads(("a", 2), ("b", 0))).replica_id == "a"
    assert gap.mean_uncached is None  # W is the cost rule's alone
    # W follows what is routed: 4 of 5 blocks cached -> 16 uncached tokens
    p.on_routed(req(1, 2, 3, 4, 5), Decision("a", "prefix_match", 4))
    assert p.mean_uncached == pytest.approx(0.9 * 32 + 0.1 * 16)


def test_prefix_affinity_cost_balance_spreads_a_header_every_replica_holds() -> None:
    p = PrefixAffinity(balance="cost", max_load_gap=0)
    for rid in "abc":
        p.on_routed(req(1), Decision(rid, "x"))
    d = p.choose(req(1, 7, 8), loads(("a", 2), ("b", 1), ("c", 3)))
    assert (d.replica_id, d.matched_blocks) == ("b", 1)  # equal matches: the least work ahead
    p.on_routed(req(1, 2, 3, 4, 5, 6), Decision("c", "x"))
    p.mean_uncached = 1.0  # queueing is cheap: the match wins the cost, but the load bound still holds
    d = p.choose(req(1, 2, 3, 4, 5, 6), loads(("a", 0), ("c", 1)))
    assert (d.replica_id, d.reason) == ("a", "overloaded")
    with pytest.raises(ValueError, match="balance"):
        PrefixAffinity(balance="tokens")
    with pytest.raises(ValueError, match="cost_ema"):
        PrefixAffinity(cost_ema=0.0)


def test_prefix_affinity_keys_separate_models_and_adapters() -> None:
    p = PrefixAffinity()
    p.on_routed(req(1, 2, key=b"base|"), Decision("a", "x"))
    d = p.choose(req(1, 2, key=b"lora1|"), loads(("a", 1), ("b", 0)))
    assert (d.replica_id, d.reason) == ("b", "no_match")


def test_prefix_affinity_index_is_bounded_lru() -> None:
    p = PrefixAffinity(index_blocks=4, min_index_blocks=1)
    p.on_routed(req(1, 2), Decision("a", "x"))
    p.on_routed(req(5, 6), Decision("a", "x"))
    p.on_routed(req(1), Decision("a", "x"))  # touch block 1: now most recent
    p.on_routed(req(8), Decision("a", "x"))  # 5 hashes > 4: the oldest, (1, 2), goes
    idx = p.index("a")
    assert len(idx) == 4
    assert idx.match(p.keyed(req(1, 2))) == 1 and idx.match(p.keyed(req(5, 6))) == 2


def test_prefix_affinity_reported_hits_correct_the_index() -> None:
    p = PrefixAffinity(index_blocks=100, min_index_blocks=2, shrink=0.5, grow_blocks=10)
    r = req(*range(1, 9))  # 8 blocks
    p.on_routed(r, Decision("a", "x"))
    d = p.choose(r, loads(("a", 0)))
    assert d.matched_blocks == 8
    p.on_result(r, d, cached_tokens=3 * 16 + 5)  # only 3 blocks really hit: the cache is smaller
    assert p.index("a").capacity == 4 and len(p.index("a")) == 4
    d = Decision("a", "prefix_match", 4)
    p.on_result(r, d, cached_tokens=4 * 16)  # prediction held: capacity grows
    assert p.index("a").capacity == 14
    fresh = req(20, 21, 22)
    p.on_result(fresh, Decision("b", "no_match", 0), cached_tokens=2 * 16)  # b held blocks we did not know
    assert p.index("b").match(p.keyed(fresh)) == 2
    p.remove_replica("b")
    assert "b" not in p.indexes


def test_gateway_hashes_equal_the_engine_blocks(tiny_llama) -> None:  # noqa: ANN001
    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine
    from treadle.models.tokenizer import Tokenizer

    hasher = PrefixHasher(Tokenizer(tiny_llama), "tiny")
    messages = [{"role": "system", "content": "You are terse. " * 20}, {"role": "user", "content": "Hi"}]
    engine = LLMEngine(EngineConfig(model=str(tiny_llama), threads=1, num_kv_blocks=32))
    _, ids = engine.tokenize_prompt(messages)
    expected = tuple(hash_token_blocks(ids, 16))
    assert len(expected) >= 4
    assert hasher.route_request({"model": "tiny", "messages": messages}, chat=True).block_hashes == expected
    assert hasher.route_request({"prompt": ids}, chat=False).block_hashes == expected
    salted = hasher.route_request({"prompt": ids, "cache_salt": "s"}, chat=False)
    assert salted.block_hashes == tuple(hash_token_blocks(ids, 16, extra_hash_key(None, "s")))
    assert hasher.route_request({"model": "lora-x", "prompt": ids}, chat=False).key != b"tiny|"


def test_replica_metrics_map_treadle_and_vllm_names() -> None:
    # the waiting queue (least_loaded's and prefix_affinity's load) comes from these names
    treadle = 'treadle_num_requests_waiting{model="m"} 2.0\ntreadle_kv_cache_usage_perc{model="m"} 0.5\n'
    assert parse_metrics(treadle) == {"waiting": 2.0, "kv_usage": 0.5}
    vllm = ('# HELP vllm:num_requests_waiting Waiting.\nvllm:num_requests_waiting{engine="0",model_name="m"} 3.0\n'
            'vllm:num_requests_waiting{engine="1",model_name="m"} 1.0\nvllm:num_requests_running{model_name="m"} 5.0\n'
            'vllm:kv_cache_usage_perc{model_name="m"} 0.25\nvllm:prefix_cache_queries_total{model_name="m"} 100.0\n'
            'vllm:prefix_cache_hits_total{model_name="m"} 40.0\n')
    assert parse_metrics(vllm) == {"waiting": 4.0, "running": 5.0, "kv_usage": 0.25, "prefix_queries": 100.0,
                                   "prefix_hits": 40.0}  # summed over engines
    older = vllm.replace("vllm:kv_cache", "vllm:gpu_cache").replace("vllm:prefix", "vllm:gpu_prefix")
    assert parse_metrics(older) == parse_metrics(vllm)
