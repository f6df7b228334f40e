"""Scheduler tests driven by a fake model runner that always samples token 7 (no torch)."""

from __future__ import annotations

import pytest

from treadle.engine.outputs import RunnerOutput, SchedulerOutput
from treadle.engine.request import FinishReason, Request, RequestStatus
from treadle.engine.scheduler import Scheduler, SchedulerConfig
from treadle.sampling_params import SamplingParams

TOKEN = 7


def make_sched(**kw) -> Scheduler:
    cfg = dict(block_size=4, num_blocks=64, max_num_batched_tokens=64, max_num_seqs=16, max_model_len=256)
    cfg.update(kw)
    return Scheduler(SchedulerConfig(**cfg))


def make_req(rid: str, n_prompt: int, max_tokens: int = 4, base: int = 0, eos=(), **params) -> Request:
    tokens = [100 + base + (i % 50) for i in range(n_prompt)]
    return Request(rid, tokens, SamplingParams(max_tokens=max_tokens, **params), eos_token_ids=eos)


def fake_run(out: SchedulerOutput) -> RunnerOutput:
    return RunnerOutput({s.request_id: TOKEN for s in out.scheduled if s.sample})


def step(sched: Scheduler) -> tuple[SchedulerOutput, list[Request]]:
    out = sched.schedule()
    updated = sched.update_from_output(out, fake_run(out))
    sched.check_integrity()
    return out, updated


def chunks(out: SchedulerOutput) -> dict[str, tuple[int, int, bool]]:
    """request id -> (start_pos, num_tokens, sample)."""
    return {s.request_id: (s.start_pos, s.num_tokens, s.sample) for s in out.scheduled}


def run_to_end(sched: Scheduler, max_steps: int = 1000) -> list[SchedulerOutput]:
    outs = []
    for _ in range(max_steps):
        if not sched.has_unfinished():
            return outs
        outs.append(step(sched)[0])
    raise AssertionError("scheduler did not finish")


def assert_all_free(sched: Scheduler) -> None:
    sched.check_integrity()
    pool = sched.kv.pool
    assert pool.num_free_blocks == pool.num_blocks
    assert sched.kv.req_blocks == {}


# ------------------------------------------------------------------------- basics
def test_single_request_prefill_then_decode() -> None:
    s = make_sched()
    r = make_req("r", 10, max_tokens=3)
    s.add_request(r)
    out, updated = step(s)
    assert chunks(out) == {"r": (0, 10, True)}
    assert out.scheduled[0].token_ids == r.prompt_token_ids
    assert out.scheduled[0].block_ids == [0, 1, 2]
    assert updated == [r] and r.output_token_ids == [TOKEN]
    out, _ = step(s)
    assert chunks(out) == {"r": (10, 1, True)}
    assert out.scheduled[0].token_ids == [TOKEN]
    out, _ = step(s)
    assert chunks(out) == {"r": (11, 1, True)}
    assert r.is_finished and r.finish_reason == FinishReason.LENGTH
    assert r.output_token_ids == [TOKEN] * 3
    assert_all_free(s)
    out = s.schedule()
    assert out.is_empty and out.finished_ids == ["r"]


def test_token_budget_is_respected_and_filled() -> None:
    budget = 16
    s = make_sched(max_num_batched_tokens=budget)
    lengths = [5, 23, 9, 40, 3, 17, 12, 30]
    reqs = [make_req(f"r{i}", n, max_tokens=5, base=i) for i, n in enumerate(lengths)]
    for r in reqs:
        s.add_request(r)
    progress = {r.request_id: 0 for r in reqs}
    first = True
    for out in run_to_end(s):
        assert out.num_scheduled_tokens <= budget
        if first:
            assert out.num_scheduled_tokens == budget  # plenty of work: the budget is used in full
            first = False
        for sr in out.scheduled:  # chunks are contiguous and in order
            assert sr.start_pos == progress[sr.request_id]
            progress[sr.request_id] += sr.num_tokens
    for r, n in zip(reqs, lengths, strict=True):
        assert r.finish_reason == FinishReason.LENGTH
        assert r.output_token_ids == [TOKEN] * 5
        assert progress[r.request_id] == n + 4  # the last sampled token is never fed back
    assert_all_free(s)


def test_chunked_prefill_does_not_stall_running_decodes() -> None:
    s = make_sched(max_num_batched_tokens=10)
    a, b = make_req("a", 3, max_tokens=50), make_req("b", 4, max_tokens=50, base=10)
    s.add_request(a)
    s.add_request(b)
    out, _ = step(s)
    assert chunks(out) == {"a": (0, 3, True), "b": (0, 4, True)}
    long = make_req("long", 40, max_tokens=2, base=20)
    s.add_request(long)
    seen = []
    for i in range(5):
        out, _ = step(s)
        c = chunks(out)
        # Both decodes get their token every step, the long prompt takes the rest of the budget.
        assert c["a"] == (3 + i, 1, True)
        assert c["b"] == (4 + i, 1, True)
        seen.append(c["long"])
        assert out.num_scheduled_tokens == 10
    assert seen == [(0, 8, False), (8, 8, False), (16, 8, False), (24, 8, False), (32, 8, True)]
    assert long.output_token_ids == [TOKEN]
    assert a.num_output_tokens == 6 and b.num_output_tokens == 6


def test_long_prefill_token_threshold_caps_a_chunk() -> None:
    s = make_sched(max_num_batched_tokens=64, long_prefill_token_threshold=6)
    r = make_req("r", 15, max_tokens=1)
    s.add_request(r)
    sizes = [chunks(o)["r"] for o in run_to_end(s)]
    # Every prefill chunk is capped, not only the one that admits the request.
    assert sizes == [(0, 6, False), (6, 6, False), (12, 3, True)]


def test_max_num_seqs_is_respected() -> None:
    s = make_sched(max_num_seqs=2)
    reqs = [make_req(f"r{i}", 5, max_tokens=3, base=i) for i in range(5)]
    for r in reqs:
        s.add_request(r)
    admitted_order = []
    for out in run_to_end(s):
        assert len(s.running) <= 2
        assert len(out.scheduled) <= 2
        for sr in out.scheduled:
            if sr.start_pos == 0:
                admitted_order.append(sr.request_id)
    assert admitted_order == [f"r{i}" for i in range(5)]  # FCFS
    assert all(r.finish_reason == FinishReason.LENGTH for r in reqs)
    assert_all_free(s)


def test_fcfs_waiting_head_is_not_overtaken() -> None:
    # 8 blocks of 4: "first" holds 4, the head of the queue needs 5, a small one behind needs 1.
    s = make_sched(num_blocks=8)
    first = make_req("first", 16, max_tokens=3)
    s.add_request(first)
    step(s)
    assert s.kv.block_ids("first") == [0, 1, 2, 3]
    big = make_req("big", 20, max_tokens=2, base=5)
    small = make_req("small", 3, max_tokens=2, base=9)
    s.add_request(big)
    s.add_request(small)
    out, _ = step(s)
    assert set(chunks(out)) == {"first"}  # small would fit but must not overtake big
    assert list(s.waiting) == [big, small]
    order = []
    for out in run_to_end(s):
        for sr in out.scheduled:
            if sr.start_pos == 0:
                order.append(sr.request_id)
    assert order == ["big", "small"]
    assert_all_free(s)


def test_new_requests_join_the_running_batch() -> None:
    s = make_sched()
    a = make_req("a", 5, max_tokens=10)
    s.add_request(a)
    step(s)
    b = make_req("b", 6, max_tokens=2, base=3)
    s.add_request(b)
    out, _ = step(s)
    assert chunks(out) == {"a": (5, 1, True), "b": (0, 6, True)}
    assert s.running == [a, b]


# ------------------------------------------------------------------------- preemption
def test_preemption_by_recompute() -> None:
    # 6 blocks of 4 tokens; three 8-token prompts take 2 blocks each. The 9th token of the
    # first request needs a third block: the most recently admitted request ("c") is preempted.
    s = make_sched(num_blocks=6, max_num_batched_tokens=64)
    a = make_req("a", 8, max_tokens=4)
    b = make_req("b", 8, max_tokens=4, base=10)
    c = make_req("c", 8, max_tokens=4, base=20)
    for r in (a, b, c):
        s.add_request(r)
    out, _ = step(s)  # prefill all three (2 full blocks each), one token sampled each
    assert chunks(out) == {"a": (0, 8, True), "b": (0, 8, True), "c": (0, 8, True)}
    assert s.kv.pool.num_free_blocks == 0
    late = make_req("late", 3, max_tokens=1, base=30)
    s.add_request(late)
    c_blocks = s.kv.block_ids("c")

    out, _ = step(s)
    assert out.preempted_ids == ["c"]
    assert chunks(out) == {"a": (8, 1, True), "b": (8, 1, True)}
    assert c.status == RequestStatus.PREEMPTED
    assert c.num_computed_tokens == 0
    assert c.num_preemptions == 1 and s.num_preemptions == 1
    assert s.kv.block_ids("c") == []
    assert list(s.waiting) == [c, late]  # the FRONT of the queue, ahead of a later arrival
    assert c.output_token_ids == [TOKEN]  # generated tokens are kept and recomputed later
    # c's blocks went back to the pool and were reused by a and b.
    assert sorted(s.kv.block_ids("a")[2:] + s.kv.block_ids("b")[2:]) == sorted(c_blocks)
    assert s.kv.pool.num_free_blocks == 0

    resumed_at = None
    for out in run_to_end(s):
        c_chunk = chunks(out).get("c")
        if c_chunk and resumed_at is None:
            resumed_at = c_chunk
    # c resumes from position 0 (or a cached prefix, block aligned), recomputing prompt + its token.
    assert resumed_at is not None
    assert resumed_at[0] % 4 == 0 and resumed_at[0] + resumed_at[1] == 9 and resumed_at[2]
    for r in (a, b, c, late):
        assert r.finish_reason == FinishReason.LENGTH
    assert c.output_token_ids == [TOKEN] * 4
    assert late.output_token_ids == [TOKEN]
    assert_all_free(s)


def test_preemption_without_prefix_cache_restarts_from_zero() -> None:
    s = make_sched(num_blocks=6, enable_prefix_caching=False)
    reqs = [make_req(n, 7, max_tokens=6, base=10 * i) for i, n in enumerate("abc")]
    for r in reqs:
        s.add_request(r)
    starts: dict[str, list[int]] = {r.request_id: [] for r in reqs}
    preempted = []
    for out in run_to_end(s):
        preempted += out.preempted_ids
        for sr in out.scheduled:
            if sr.num_tokens > 1:
                starts[sr.request_id].append(sr.start_pos)
    assert preempted and preempted[0] == "c"
    assert all(p == 0 for v in starts.values() for p in v)  # every prefill restarts at 0
    assert len(starts["c"]) >= 2
    for r in reqs:
        assert r.output_token_ids == [TOKEN] * 6
    assert s.num_preemptions == len(preempted)
    assert_all_free(s)


def test_a_request_may_preempt_itself() -> None:
    # Three 3-token prompts in 3 blocks: when "b" needs a second block, "c" is preempted and then
    # "b" is the last running request and preempts itself; both resume once "a" is done.
    s = make_sched(num_blocks=3, max_model_len=12)
    a = make_req("a", 3, max_tokens=8)
    b = make_req("b", 3, max_tokens=8, base=5)
    c = make_req("c", 3, max_tokens=8, base=9)
    for r in (a, b, c):
        s.add_request(r)
    preempted = []
    for out in run_to_end(s):
        preempted += out.preempted_ids
        assert out.num_scheduled_tokens <= 64
    assert preempted
    for r in (a, b, c):
        assert r.output_token_ids == [TOKEN] * 8
    assert_all_free(s)


def test_integrity_after_preemption_and_abort_of_a_preempted_request() -> None:
    s = make_sched(num_blocks=6)
    reqs = [make_req(n, 8, max_tokens=6, base=10 * i) for i, n in enumerate("abc")]
    for r in reqs:
        s.add_request(r)
    step(s)
    out, _ = step(s)
    assert out.preempted_ids == ["c"]
    s.check_integrity()
    assert s.finish_request("c", FinishReason.ABORT) is reqs[2]
    assert reqs[2].finish_reason == FinishReason.ABORT
    assert reqs[2] not in s.waiting
    s.check_integrity()
    run_to_end(s)
    assert_all_free(s)


# ------------------------------------------------------------------------- abort
def test_abort_frees_every_block_at_any_time() -> None:
    s = make_sched(max_num_batched_tokens=8, num_blocks=32)
    dec = make_req("dec", 5, max_tokens=100)
    s.add_request(dec)
    step(s)
    step(s)  # decoding
    mid = make_req("mid", 30, max_tokens=5, base=7)  # prefill over several steps
    wait = make_req("wait", 6, max_tokens=5, base=3)  # still waiting
    s.add_request(mid)
    s.add_request(wait)
    step(s)
    assert 0 < mid.num_computed_tokens < mid.num_prompt_tokens
    assert s.kv.block_ids("mid") and s.kv.block_ids("dec")
    assert wait.status == RequestStatus.WAITING

    for rid in ("wait", "mid", "dec"):
        req = s.finish_request(rid, FinishReason.ABORT)
        assert req is not None and req.finish_reason == FinishReason.ABORT and req.is_finished
        assert s.kv.block_ids(rid) == []
        s.check_integrity()
    assert s.finish_request("dec", FinishReason.ABORT) is None  # idempotent
    assert not s.has_unfinished()
    assert_all_free(s)
    out = s.schedule()
    assert out.is_empty and sorted(out.finished_ids) == ["dec", "mid", "wait"]


def test_abort_while_a_step_runs() -> None:
    s = make_sched()
    a, b = make_req("a", 5, max_tokens=10), make_req("b", 5, max_tokens=10, base=1)
    s.add_request(a)
    s.add_request(b)
    out = s.schedule()
    s.finish_request("a", FinishReason.ABORT)  # between schedule() and update_from_output()
    updated = s.update_from_output(out, fake_run(out))
    assert updated == [b]
    assert a.output_token_ids == []
    s.check_integrity()
    run_to_end(s)
    assert_all_free(s)


def test_duplicate_request_id_rejected() -> None:
    s = make_sched()
    s.add_request(make_req("x", 3))
    with pytest.raises(ValueError, match="already"):
        s.add_request(make_req("x", 3))


# ------------------------------------------------------------------------- stopping
def test_stop_token_id_and_eos() -> None:
    s = make_sched()
    stop = make_req("stop", 4, max_tokens=10, stop_token_ids=[TOKEN])
    eos = make_req("eos", 4, max_tokens=10, base=1, eos=(TOKEN,))
    ign = make_req("ign", 4, max_tokens=3, base=2, eos=(TOKEN,), ignore_eos=True)
    mint = make_req("mint", 4, max_tokens=10, base=3, eos=(TOKEN,), min_tokens=2)
    for r in (stop, eos, ign, mint):
        s.add_request(r)
    run_to_end(s)
    assert stop.finish_reason == FinishReason.STOP and stop.stop_reason == TOKEN
    assert stop.output_token_ids == [TOKEN]
    assert eos.finish_reason == FinishReason.STOP and eos.stop_reason is None
    assert eos.output_token_ids == [TOKEN]
    assert ign.finish_reason == FinishReason.LENGTH and ign.output_token_ids == [TOKEN] * 3
    assert mint.finish_reason == FinishReason.STOP and mint.output_token_ids == [TOKEN] * 2
    assert_all_free(s)


def test_max_model_len_ends_a_request_with_length() -> None:
    s = make_sched(max_model_len=10)
    r = make_req("r", 7, max_tokens=100)
    s.add_request(r)
    run_to_end(s)
    assert r.finish_reason == FinishReason.LENGTH
    assert r.num_tokens == 10


def test_stats() -> None:
    s = make_sched(num_blocks=10)
    a = make_req("a", 9, max_tokens=5)
    s.add_request(a)
    s.add_request(make_req("b", 9, max_tokens=5))  # same prompt: hits a's 2 full blocks
    step(s)
    st = s.make_stats()
    assert st["running"] == 2 and st["waiting"] == 0
    assert st["kv_blocks_total"] == 10
    assert st["kv_blocks_used"] == 4  # a: 3 blocks, b: 2 shared + 1 own -> 4 distinct blocks
    assert st["prefix_cache_queried_tokens"] == 18
    assert st["prefix_cache_hit_tokens"] == 8
    assert s.requests["b"].num_cached_tokens == 8


def test_prefill_cap_applies_only_to_steps_that_carry_decodes() -> None:
    s = make_sched(max_num_batched_tokens=64, prefill_tokens_per_decode_step=5)
    a = make_req("a", 20, max_tokens=50)
    s.add_request(a)
    out, _ = step(s)
    assert chunks(out) == {"a": (0, 20, True)}  # nothing decoding yet: the whole prompt at once
    b, c = make_req("b", 7, max_tokens=2, base=10), make_req("c", 4, max_tokens=2, base=20)
    s.add_request(b)
    s.add_request(c)
    out, _ = step(s)
    # a decodes, so b and c share 5 prompt tokens: b takes them all, c waits (FCFS).
    assert chunks(out) == {"a": (20, 1, True), "b": (0, 5, False)}
    out, _ = step(s)
    assert chunks(out) == {"a": (21, 1, True), "b": (5, 2, True), "c": (0, 3, False)}
    assert out.num_scheduled_tokens == 1 + 5
    run_to_end(s)
    assert_all_free(s)
