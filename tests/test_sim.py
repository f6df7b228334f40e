"""treadle sim: exact times on constructed schedules, the cost model, core sharing, fast-forward equivalence,
the real policy/autoscaler objects, trace loading and the command."""

from __future__ import annotations

import gzip
import json
import pkgutil

import pytest

import treadle.sim as sim_pkg
from treadle.engine.outputs import ScheduledRequest, SchedulerOutput
from treadle.engine.scheduler import SchedulerConfig
from treadle.fleet.autoscaler import AutoscalerConfig
from treadle.gateway.policies import POLICIES, make_policy
from treadle.gateway.policies.base import RoutingPolicy
from treadle.sampling_params import SamplingParams
from treadle.sim.cost_model import (
    COEFFS,
    CostModel,
    Fit,
    StepShape,
    distinct_kv,
    from_step_point,
    load_cost_model,
    shape_of,
    step_point,
)
from treadle.sim.machine import Machine
from treadle.sim.results import records, result
from treadle.sim.simulator import FleetConfig, Simulation
from treadle.sim.workload import SimRequest, rows_of, synthetic_day, trace_requests

ONE_SECOND = CostModel({1: Fit(a=1.0)})  # every step takes exactly 1 s


def req(i: str, prompt: list[int], out: int, at: float | None = 0.0, **kw: object) -> SimRequest:
    return SimRequest(i, lambda p=prompt: list(p), out, arrival_s=at, **kw)


def run(reqs, cost=ONE_SECOND, policy="round_robin", **fleet) -> Simulation:
    fleet.setdefault("engine", SchedulerConfig(max_num_batched_tokens=512, num_blocks=256))
    return Simulation(reqs, make_policy(policy), cost, FleetConfig(**fleet)).run()


def test_known_schedule_gives_known_times() -> None:
    # t=0 step 1: A's prefill (first token at 1). t=1 step 2: A decodes, B (arrived 0.5) prefills:
    # A ends at 2, B's first token at 2. t=2 step 3: B decodes and ends at 3.
    a, b = req("a", list(range(100, 116)), 2, 0.0), req("b", list(range(200, 216)), 2, 0.5)
    s = run([a, b])
    assert (a.first_token_s, a.end_s, b.first_token_s, b.end_s) == (1.0, 2.0, 2.0, 3.0)
    summary = result(s, None)["summary"]
    assert summary["ttft_ms"]["p50"] == pytest.approx(1250.0)  # A 1.0 s, B 1.5 s (from its arrival)
    assert summary["e2e_ms"]["mean"] == pytest.approx(2250.0)  # A 2.0 s, B 2.5 s
    assert summary["tpot_ms"]["mean"] == pytest.approx(1000.0)
    assert {r.id: r.replica for r in records(s)} == {"a": a.replica, "b": b.replica} and a.replica  # who served it


def test_chunked_prefill_and_linear_cost() -> None:
    # budget 16: a 40-token prompt prefills in chunks 16, 16, 8 (+ first token), then 2 decodes.
    cost = CostModel({1: Fit(a=0.5, b=0.01, c=0.1)})
    r = req("a", list(range(100, 140)), 3)
    run([r], cost, engine=SchedulerConfig(max_num_batched_tokens=16, num_blocks=64))
    chunks = 3 * 0.5 + 0.01 * 40
    assert r.first_token_s == pytest.approx(chunks)
    assert r.end_s == pytest.approx(chunks + 2 * (0.5 + 0.1))


def test_shape_of_and_fit() -> None:
    p = SamplingParams(max_tokens=4)
    out = SchedulerOutput([
        ScheduledRequest("p", list(range(10)), 20, [], True, p, [], 30),  # prefill chunk at 20..29
        ScheduledRequest("d", [5], 40, [], True, p, [], 30),  # decode at position 40
        ScheduledRequest("q", list(range(6)), 0, [], True, p, [], 6),  # a whole prompt from position 0
    ], [], [])
    shape = shape_of(out)
    assert shape == StepShape(prefill_tokens=16, decode_rows=1, decode_context=40,
                              prefill_attention=(10 * (20 + 5.5) + 6 * 3.5) / 1000, prefill_chunks=2,
                              prefill_gather=30 / 1000,  # only the chunk at 20 copies its context (20 + 10)
                              decode_kv=41)  # the decode row's 40 tokens of context and its new one
    # rows sharing a cached prefix read its blocks once: two rows at positions 40 and 35 (41 and 36 tokens over
    # blocks of 16) share their first two blocks (32 tokens)
    two = SchedulerOutput([ScheduledRequest("x", [1], 40, [7, 8, 9], True, p, [], 30),
                           ScheduledRequest("y", [1], 35, [7, 8, 4], True, p, [], 30)], [], [])
    assert shape_of(two).decode_kv == 41 + 36 - 32 == distinct_kv([(41, [7, 8, 9]), (36, [7, 8, 4])], 16)
    assert distinct_kv([(16, [7, 8])], 16) == 16  # only the blocks its tokens fill count
    assert from_step_point(step_point(shape_of(two), 0.5)) == (shape_of(two), 0.5)
    # a point written before decode_kv (7 numbers) reads its rows' KV as their own
    assert from_step_point([0, 2, 75, 0.0, 0, 0.0, 0.5])[0].decode_kv == 77
    f = Fit(a=1, b=2, c=3, d=4, e=5, f=7, g=11, h=13, i=17, j=19, k=23)
    assert f.seconds(shape) == pytest.approx(1 + 32 + 3 + 160 + 5 * 0.276 + 11 + 13 * 0.03 + 17 + 23 * 41)
    assert f.seconds(StepShape(prefill_tokens=300, prefill_chunks=1)) == pytest.approx(1 + 600 + 7 * (300 - 256) + 17)
    # decode-only steps: one row pays ``a`` alone (the one-row fused step), two or more rows ``a + j``
    assert f.seconds(StepShape(decode_rows=1, decode_context=10)) == pytest.approx(1 + 3 + 40)
    assert f.seconds(StepShape(decode_rows=3, decode_context=30, decode_kv=33)) == pytest.approx(1 + 9 + 120 + 19 + 23 * 33)
    assert StepShape(decode_rows=3).features()[-3:-1] == (0.0, 1.0) and shape.features()[-3:-1] == (1.0, 0.0)
    assert Fit(a=1, f=7, knee=384).seconds(StepShape(prefill_tokens=400)) == pytest.approx(1 + 7 * 16)


def test_cost_model_files(tmp_path) -> None:
    m = CostModel({1: Fit(a=0.1, b=0.001), 2: Fit(a=0.05)}, cores=2, name="x", source="here")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(m.to_json()))
    back = load_cost_model(path)
    assert back.fits == m.fits and back.cores == 2
    assert back.fit_for(1).a == 0.1 and back.fit_for(2).a == 0.05 and back.fit_for(8).a == 0.05
    yml = tmp_path / "c.yaml"
    yml.write_text("cores: 0\nfits:\n  1: {a: 0.2, c: 0.01}\n")
    assert load_cost_model(yml).seconds(StepShape(decode_rows=3)) == pytest.approx(0.23)
    gpu = load_cost_model("gpu-h100-llama3-8b")
    assert "datasheet" in gpu.source and gpu.engine["num_blocks"] > 0
    with pytest.raises(ValueError, match="fits"):
        CostModel.from_json({"cores": 1})
    with pytest.raises(ValueError, match="bundled"):
        load_cost_model("no-such-model")


def test_processor_sharing_is_exact() -> None:
    m = Machine(cores=1)
    assert m.start("a", 1, 1.0, 0.0) == {"a": 1.0}
    ends = m.start("b", 1, 1.0, 0.5)  # from 0.5 both run at half speed: a has 0.5 left -> 1.5
    assert ends == {"a": pytest.approx(1.5), "b": pytest.approx(2.5)}
    assert m.finish("a", 1.5) == {"b": pytest.approx(2.0)}  # b did 0.5 by 1.5, then full speed


def test_core_sharing_in_the_fleet() -> None:
    # two 1-thread replicas on a 1-core machine, one request each at t=0: both steps take 2 s, not 1.
    cost = CostModel({1: Fit(a=1.0)}, cores=1)
    a, b = req("a", list(range(100, 116)), 1), req("b", list(range(200, 216)), 1)
    run([a, b], cost, replicas=2, replicas_per_machine=2)
    assert (a.end_s, b.end_s) == (2.0, 2.0)


def test_prefix_hits_are_the_schedulers() -> None:
    shared = list(range(1000, 1064))
    a, b = req("a", shared + [1, 2, 3], 1, 0.0), req("b", shared + [4, 5, 6], 1, 5.0)
    s = run([a, b], policy="prefix_affinity", replicas=2)
    assert b.cached_tokens == 64 and a.replica == b.replica  # routed to the replica holding the prefix
    assert result(s, None)["prefix_cache_hit_rate"] == pytest.approx(64 / (67 + 67))
    assert s.decisions == {"no_match": 1, "prefix_match": 1}


def _mixed_workload(n: int = 60) -> list[SimRequest]:
    out = []
    for i in range(n):
        prefix = list(range(5000 + (i % 3) * 100, 5000 + (i % 3) * 100 + 48))
        out.append(req(f"r{i}", prefix + [i] * (10 + i % 7), 5 + (i * 7) % 23, at=i * 0.0625))
    return out


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_fast_forward_is_exact(policy: str) -> None:
    # binary fractions: step-by-step sums and the stretch's closed form are then both exact
    cost = CostModel({1: Fit(a=2**-4, b=2**-10, c=2**-7, d=2**-13, k=2**-12)})
    eng = SchedulerConfig(max_num_batched_tokens=64, num_blocks=16, max_num_seqs=6)  # small: preemptions
    outcomes = []
    for fast in (False, True):
        reqs = _mixed_workload()
        s = run(reqs, cost, policy, replicas=3, engine=eng, fast_forward=fast)
        res = result(s, None)
        outcomes.append(([(r.id, r.first_token_s, r.end_s, r.cached_tokens, r.replica) for r in reqs],
                         res["prefix_cache_hit_rate"], res["preemptions"], s.decisions))
        assert (s.fast_forwarded_steps > 0) == fast
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2] > 0  # the case exercises preemption


def test_policies_are_the_gateways_own_objects() -> None:
    # no module of the simulator defines a routing policy: it drives the classes the gateway uses
    for info in pkgutil.iter_modules(sim_pkg.__path__):
        mod = __import__(f"treadle.sim.{info.name}", fromlist=["_"])
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, RoutingPolicy):
                assert obj in POLICIES.values() or obj is RoutingPolicy, f"{info.name} defines {obj}"
    policy = make_policy("prefix_affinity")
    Simulation([req("a", list(range(100, 164)), 2)], policy, ONE_SECOND, FleetConfig()).run()
    assert len(policy.indexes["r0"]) == 4  # the object the simulation was given was driven


def test_autoscaler_scales_up_with_startup_delay() -> None:
    scale = AutoscalerConfig(min_replicas=1, max_replicas=3, target_load_per_replica=2, upscale_delay_s=0,
                             downscale_delay_s=1000, startup_time_s=5)
    reqs = [req(f"r{i}", list(range(100 * i, 100 * i + 16)), 30) for i in range(1, 5)]
    s = run(reqs, replicas=1, autoscale=scale, startup_s=5, interval_s=1.0)
    assert s.scale_events[0] == (1.0, 2, "scale_up")  # load 4 / target 2 at the first tick
    assert (6.0, 2, 2) in s.timeline  # launched at 1, ready at the first probe 5 s later
    res = result(s, None)
    end = max(r.end_s for r in reqs)
    assert res["replica_hours"] == pytest.approx((end + (end - 1.0)) / 3600)


def test_closed_loop_sessions_wait_for_the_previous_turn() -> None:
    a1 = req("a1", list(range(100, 116)), 2, None, session="a", turn=0)
    a2 = req("a2", list(range(100, 132)), 2, None, session="a", turn=1)
    b1 = req("b1", list(range(300, 316)), 2, None)
    run([a1, a2, b1], concurrency=1)
    assert a2.sent_s == a1.end_s and b1.sent_s == a2.end_s


def test_trace_files_and_synthetic_day(tmp_path) -> None:
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [
        {"timestamp": 1000, "input_length": 40, "output_length": 3, "hash_ids": [1, 2]},
        {"timestamp": 3000, "input_length": 40, "output_length": 2, "hash_ids": [1, 2]}]))
    rows = rows_of(str(jl))
    assert [r[0] for r in rows] == [0.0, 2.0]
    reqs = trace_requests(rows, "t", rate_scale=2.0, tokens_per_hash=16)
    assert [r.arrival_s for r in reqs] == [0.0, 1.0]
    p0, p1 = reqs[0].make_prompt(), reqs[1].make_prompt()
    assert len(p0) == round(40 * 16 / 512) and p0 == p1  # same hash ids -> the same tokens
    csvf = tmp_path / "t.csv"
    csvf.write_text("arrival_s,input_tokens,output_tokens\n0.5,20,4\n0.0,10,2\n")
    assert rows_of(str(csvf)) == [(0.0, 10, 2, None), (0.5, 20, 4, None)]
    day = synthetic_day([(float(t), 10, 2, None) for t in range(0, 3600, 10)], hours=24, seed=0)
    per_hour = [sum(1 for r in day if h * 3600 <= r[0] < (h + 1) * 3600) for h in range(24)]
    assert per_hour[14] > 300 and per_hour[2] < 80  # peak at 14:00, trough at 02:00
    with pytest.raises(ValueError, match="input_tokens"):
        bad = tmp_path / "bad.csv"
        bad.write_text("arrival_s,x\n0,1\n")
        rows_of(str(bad))


def test_command_writes_a_sim_file_the_report_reads(tmp_path) -> None:
    from treadle.cli import main
    from treadle.report.loading import load_results

    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{i * 0.2},{20 + i},{40}\n" for i in range(30)))
    cost = tmp_path / "c.json"
    cost.write_text(json.dumps({"cores": 0, "fits": {"1": {"a": 0.05, "b": 0.001}},
                                "engine": {"num_blocks": 64, "max_model_len": 512}}))
    out = tmp_path / "sim.json"
    assert main(["sim", "--trace", str(trace), "--replicas", "1,2", "--policy", "round_robin,least_loaded",
                 "--cost", str(cost), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["kind"] == "sim" and len(data["runs"]) == 4
    assert all(r["summary"]["completed"] == 30 for r in data["runs"])
    assert len(load_results([tmp_path])["sim"]) == 1
    assert main(["sim", "--trace", str(trace), "--autoscale", "--min-replicas", "1", "--max-replicas", "3",
                 "--target-load", "1", "--upscale-delay", "0", "--startup", "1", "--cost", str(cost),
                 "--out", str(tmp_path / "auto.json")]) == 0
    auto = json.loads((tmp_path / "auto.json").read_text())["runs"][0]
    assert auto["autoscale"]["max_replicas"] == 3 and auto["max_replicas"] > 1
    assert main(["report", str(out), str(tmp_path / "auto.json"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "REPORT.md").read_text()
    assert "Simulation (treadle sim)" in md and "sim0_timeline.png" in md and "autoscale 1-3" in md


def test_fit_recovers_known_coefficients() -> None:
    from treadle.sim.calibrate import errors, fit

    truth = Fit(a=0.02, b=0.001, c=0.004, d=0.00001, e=0.0005, f=0.0003, g=0.002, h=0.006, i=0.003, j=0.0015,
                knee=384, k=0.000004)
    shapes = [StepShape(p * k, d, d * ctx, k * p * (s + (p + 1) / 2) / 1000, k, k * (s + p) / 1000 if s else 0.0,
                        d * (ctx + 1) - share * (d - 1) * ctx)  # ``share``: the rows' contexts are one prefix
              for p in (0, 16, 64, 384, 512) for k in (1, 2) for d in (0, 1, 4) for ctx in (32, 256)
              for s in (0, 128) for share in (0, 1) if (p or (d and k == 1)) and not (share and d < 2)]
    points = [(sh, truth.seconds(sh)) for sh in shapes]
    got = fit(points, knee=384)
    assert got.knee == 384
    for k in COEFFS:
        assert getattr(got, k) == pytest.approx(getattr(truth, k), rel=1e-6, abs=1e-12)
    assert errors(got, points)["max_ape"] < 1e-6


def test_calibrate_runs_the_engine_on_a_tiny_model(tiny_llama) -> None:
    from treadle.sim.calibrate import calibrate

    model = calibrate(str(tiny_llama), [1], num_kv_blocks=64, log=lambda _: None,
                      prefill=[(16, 0), (32, 64)], decode=[(1, 32), (4, 32)], mixed=[(2, 24)], distinct=[(2, 24)])
    f = model.fits[1]
    assert f.a > 0 and model.cores >= 1
    err = model.fit_error["1"]
    assert err["in_sample"]["steps"] >= 8 and err["held_out"]["mape"] >= 0
    steps = [from_step_point(pt)[0] for pt in err["points"]]
    # two-row decode steps: the distinct scenario's rows read their own KV; the mixed scenario's two rows share
    # its 256-token prefix (16 full blocks), read once. The decode scenario's four rows share 32 tokens.
    two_rows = {s.decode_context + 2 - s.decode_kv for s in steps if s.prefill_tokens == 0 and s.decode_rows == 2}
    assert 0 in two_rows and two_rows <= {0, 256}
    four_rows = [s for s in steps if s.prefill_tokens == 0 and s.decode_rows == 4]
    assert four_rows and all(s.decode_kv == s.decode_context + 4 - 3 * 32 for s in four_rows)
    back = CostModel.from_json(json.loads(json.dumps(model.to_json())))
    assert back.fits == model.fits
    # --repeats 2: twice the steps in one fit, the held-out repetition unchanged in size
    two = calibrate(str(tiny_llama), [1], num_kv_blocks=64, log=lambda _: None, repeats=2,
                    prefill=[(16, 0), (32, 64)], decode=[(1, 32), (4, 32)], mixed=[(2, 24)], distinct=[(2, 24)])
    e2 = two.fit_error["1"]
    assert e2["in_sample"]["steps"] == 2 * err["in_sample"]["steps"] and e2["held_out"]["steps"] == err["held_out"]["steps"]
    assert e2["repeats"] == 2 and "--repeats 2" in two.source
    with pytest.raises(ValueError, match="repeats"):
        calibrate(str(tiny_llama), [1], repeats=0)


def test_calibrate_times_requests_at_the_temperature_asked(tiny_llama, monkeypatch) -> None:
    from treadle.engine.llm_engine import LLMEngine
    from treadle.sim.calibrate import calibrate

    seen: list[float] = []
    add = LLMEngine.add_request
    monkeypatch.setattr(LLMEngine, "add_request", lambda self, rid, prompt, params, *a, **k: (
        seen.append(params.temperature), add(self, rid, prompt, params, *a, **k))[1])
    scenarios = {"prefill": [(16, 0)], "decode": [(2, 32)], "mixed": [], "distinct": []}
    greedy = calibrate(str(tiny_llama), [1], num_kv_blocks=64, log=lambda _: None, **scenarios)
    assert seen and set(seen) == {0.0} and greedy.fit_error["1"]["temperature"] == 0.0
    seen.clear()
    hot = calibrate(str(tiny_llama), [1], num_kv_blocks=64, log=lambda _: None, temperature=0.7, **scenarios)
    assert seen and set(seen) == {0.7}
    assert hot.fit_error["1"]["temperature"] == 0.7 and "--temperature 0.7" in hot.source


def _fleet_file(path, rps: float, ttft_ms: float, hit: float) -> None:
    from treadle.bench.workloads import make_workload

    cfg = {"replicas": 2, "num_kv_blocks": 64, "max_num_seqs": 4, "num_requests": 6, "num_prefixes": 2,
           "prefix_tokens": 40, "max_tokens": 4, "concurrency": 2, "seed": 0}
    work = make_workload("shared-prefix", 6, 0, 4, num_prefixes=2, prefix_tokens=40)
    outcomes = [{"id": w.id, "status": 200, "output_tokens": 3} for w in work]
    summary = {"requests_per_s": rps, "output_tok_s": rps * 10, "ttft_ms": {"p50": ttft_ms},
               "prefix_cache_hit_rate": hit}
    path.write_text(json.dumps({"kind": "bench-fleet", "config": cfg, "scaling": [], "runs": [
        {"workload": "shared-prefix", "policy": "round_robin", "summary": summary, "requests": outcomes}]}))


def test_validate_replays_per_request_outputs_and_groups_repeats(tmp_path, tiny_llama) -> None:
    """Each fleet file's run is replayed with its per-request output lengths (3 tokens each, not the summary's
    mean of 10); the same run in two files is grouped: real mean, spread and the sim's error against the mean."""
    from treadle.cli import main

    cost = tmp_path / "c.json"
    cost.write_text(json.dumps({"cores": 2, "fits": {"1": {"a": 0.05, "b": 0.001}}}))
    _fleet_file(tmp_path / "f1.json", 1.0, 100.0, 0.20)
    _fleet_file(tmp_path / "f2.json", 3.0, 300.0, 0.40)
    out = tmp_path / "v.json"
    assert main(["sim", "validate", "--model", str(tiny_llama), "--cost", str(cost),
                 "--fleet", f"{tmp_path / 'f1.json'},{tmp_path / 'f2.json'}", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    first, second = data["rows"]
    assert first["sim"] == second["sim"]  # the same requests, outputs and fleet: a deterministic replay
    sim = first["sim"]
    assert sim["output_tok_s"] == pytest.approx(3 * sim["requests_per_s"])
    [group] = data["repeated"]
    assert group["run"] == "fleet shared-prefix round_robin x2" and group["repeats"] == 2
    rps = group["metrics"]["requests_per_s"]
    assert (rps["real_mean"], rps["real_min"], rps["real_max"], rps["spread"]) == (2.0, 1.0, 3.0, 1.0)
    assert rps["error"] == pytest.approx(sim["requests_per_s"] / 2.0 - 1.0)
    hit = group["metrics"]["hit_rate"]
    assert hit["real_mean"] == pytest.approx(0.30) and hit["error"] == pytest.approx((sim["hit_rate"] - 0.30) * 100)
    assert data["within_bar"]["throughput"] == [int(abs(rps["error"]) <= 0.15), 1]


def test_within_bar_counts_repeated_runs_against_the_issues_bar() -> None:
    """15% on throughput (output tokens/s where a run has it) and median TTFT, 5 points on hit rate."""
    from treadle.sim.validate_groups import within_bar

    groups = [{"metrics": {"requests_per_s": {"error": 0.149}, "ttft_p50_ms": {"error": -0.16},
                           "hit_rate": {"error": -5.0}}},
              {"metrics": {"requests_per_s": {"error": 0.5}, "output_tok_s": {"error": -0.1}}},
              {"metrics": {"ttft_p50_ms": {"error": None}}}]
    assert within_bar(groups) == {"throughput": [2, 2], "ttft_p50": [0, 1], "hit_rate_points": [1, 1]}


def test_validate_gives_a_fresh_servers_run_its_cold_start(tmp_path, tiny_llama) -> None:
    """A bench serve file whose server had answered nothing before (``server_requests_before`` 0) is replayed
    with the cold start (first step 1 s longer, first request 0.25 s later); one that met a used server (or an
    older file, without the key) without it."""
    from treadle.bench.workloads import make_workload
    from treadle.cli import main

    cost = tmp_path / "c.json"
    cost.write_text(json.dumps({"cores": 2, "fits": {"2": {"a": 0.05, "b": 0.001}}, "latency": {
        "direct": 0.01, "first_request_extra": 0.25, "first_step_extra": 1.0}}))
    files = []
    for name, before in (("fresh", 0.0), ("used", 12.0), ("old", None)):
        summary = {"requests_per_s": 1.0, "ttft_ms": {"p50": 100.0}, "prefix_cache_hit_rate": None}
        if before is not None:
            summary["server_requests_before"] = before
        cfg = {"workload": "sharegpt", "num_requests": 1, "seed": 0, "max_tokens": 2, "concurrency": 1,
               "arrival_mode": "concurrency", "max_prompt_tokens": 40}
        w = make_workload("sharegpt", 1, 0, 2, max_prompt_tokens=40)[0]
        (tmp_path / name).mkdir()  # one server each: no earlier run beside it to replay
        files.append(tmp_path / name / "run.json")
        files[-1].write_text(json.dumps({"kind": "bench-serve", "config": cfg, "summary": summary,
                                         "requests": [{"id": w.id, "status": 200, "output_tokens": 2}]}))
    out = tmp_path / "v.json"
    assert main(["sim", "validate", "--model", str(tiny_llama), "--cost", str(cost), "--fleet", "",
                 "--serve", ",".join(map(str, files)), "--out", str(out)]) == 0
    fresh, used, old = json.loads(out.read_text())["rows"]
    assert (fresh["fresh_server"], used["fresh_server"], old["fresh_server"]) == (True, False, False)
    assert used["sim"]["ttft_p50_ms"] == old["sim"]["ttft_p50_ms"]
    assert fresh["sim"]["ttft_p50_ms"] == pytest.approx(used["sim"]["ttft_p50_ms"] + 1250.0)


def test_co_run_slowdown_is_exact() -> None:
    m = Machine(cores=2, co_run_slowdown=0.25)
    assert m.start("a", 1, 1.0, 0.0) == {"a": 1.0}  # alone: its own speed
    ends = m.start("b", 1, 1.0, 0.5)  # both busy: no oversubscription, but each at 1 / 1.25 = 0.8
    assert ends == {"a": pytest.approx(1.125), "b": pytest.approx(1.75)}
    assert m.finish("a", 1.125) == {"b": pytest.approx(1.625)}  # b did 0.5 by then, the rest alone
    # in the fleet: two 1-thread replicas on one 2-core machine, one single-step request each at t=0
    cost = CostModel({1: Fit(a=1.0)}, cores=2, co_run_slowdown=0.25)
    a, b = req("a", list(range(100, 116)), 1), req("b", list(range(200, 216)), 1)
    run([a, b], cost, replicas=2, replicas_per_machine=2)
    assert (a.end_s, b.end_s) == (1.25, 1.25)
    run([c := req("c", list(range(100, 116)), 1)], cost, replicas=1, replicas_per_machine=2)
    assert c.end_s == 1.0
    # oversubscribed: 3 one-thread steps on 2 cores run at 2/3 / 1.5 = 4/9 of their speed (co-run not applied)
    m = Machine(cores=2, co_run_slowdown=0.25, oversubscribed_slowdown=0.5)
    m.start("a", 1, 1.0, 0.0)
    m.start("b", 1, 1.0, 0.0)
    assert m.start("c", 1, 1.0, 0.0) == {r: pytest.approx(9 / 4) for r in "abc"}
    over = CostModel({1: Fit(a=1.0)}, cores=2, co_run_slowdown=0.25, oversubscribed_slowdown=0.5)
    back = CostModel.from_json(json.loads(json.dumps(over.to_json())))
    assert (back.co_run_slowdown, back.oversubscribed_slowdown) == (0.25, 0.5)


def test_serving_overhead_is_added_per_decode_row() -> None:
    cost = CostModel({1: Fit(a=0.01, c=0.002)}, serving={"replica": 0.001, "gateway": 0.0005, "client": 0.0002})
    assert cost.fit_for(1).c == 0.002  # nothing added unless asked
    fleet = cost.with_overhead(("replica", "gateway", "client"))
    assert fleet.fit_for(1).c == pytest.approx(0.0037)
    assert fleet.seconds(StepShape(decode_rows=4)) == pytest.approx(0.01 + 4 * 0.0037)
    back = CostModel.from_json(json.loads(json.dumps(cost.with_overhead(("replica",)).to_json())))
    assert back.serving == cost.serving and back.overhead_parts == ()  # the parts are a run's choice, not the file's
    assert CostModel({1: Fit(a=0.01)}).with_overhead(("replica",)).overhead_parts == ()  # no figures: unchanged
    with pytest.raises(ValueError, match="overhead part"):
        CostModel({1: Fit(a=0.01)}, overhead_parts=("gateway",))
    from treadle.sim.command import overhead_parts

    with pytest.raises(ValueError, match="--serving-overhead"):
        overhead_parts("replica,proxy")


def test_co_run_and_serving_measurements_on_a_tiny_model(tiny_llama) -> None:
    from treadle.sim.calibrate import co_run_slowdowns
    from treadle.sim.serving_overhead import measure_serving

    co = co_run_slowdowns(str(tiny_llama), [2, 4], 2, num_kv_blocks=64, prefill=[(16, 0), (32, 64)],
                          decode=[(1, 32)], mixed=[])
    assert [c["copies"] for c in co] == [2, 4] and co[0]["steps"] >= 8 and co[1]["steps"] == 2 * co[0]["steps"]
    assert min(c["slowdown"] for c in co) >= 0 and co[0]["solo_after_over_before"] > 0
    got = measure_serving(str(tiny_llama), 1, num_requests=4, concurrency=2, max_tokens=8,
                          max_prompt_tokens=60, log=lambda _: None, fit=Fit(a=0.001, b=1e-5, c=1e-4), cold_repeats=2,
                          finish_rounds=2)
    assert got["requests"] == 4 and 4 <= got["tokens"] <= 32
    # the direct run's decode-only steps, logged by the replica itself (rows decoding beside a prompt chunk
    # are not counted): at most one row per token after each request's first
    assert got["step"] >= 0 and got["step_drift"] > 0 and 1 <= got["step_rows"] <= got["tokens"] - 4
    # /proc counts CPU in 10 ms ticks: a thread of this tiny run may show none, the three together do
    assert min(got["replica"], got["client"], got["gateway"]) >= 0
    assert sum(got["cpu_s"].values()) > 0 and got["cpu_s"]["replica"] == pytest.approx(got["replica"] * got["tokens"])
    assert set(got["latency"]) == {"direct", "gateway", "first_request_extra", "first_step_extra", "step_gap",
                                   "finish_stagger"}
    assert got["step_gaps"]["n"] >= 1 and got["latency"]["step_gap"] == got["step_gaps"]["mean_s"] >= 0
    # two bursts of 2 first requests: at most one gap each
    assert got["latency"]["finish_stagger"] == got["finish_staggers"]["mean_s"] >= 0 and got["finish_staggers"]["n"] <= 2
    assert len(got["cold_samples"]) == 2  # two fresh replicas' first requests; the latency is their median
    assert min(got["latency"].values()) >= 0


def test_request_latency_delays_delivery_exactly() -> None:
    cost = CostModel({1: Fit(a=1.0)}, latency={"gateway": 0.5, "direct": 0.2})
    a = req("a", list(range(100, 116)), 1)
    run([a], cost.with_overhead((), "gateway"))  # routed at 0, reaches the engine at 0.5, one 1-s step
    assert (a.first_token_s, a.end_s) == (1.5, 1.5)
    b, c = req("b", list(range(100, 116)), 1), req("c", list(range(200, 216)), 1, at=0.1)
    run([b, c], cost.with_overhead((), "direct"))  # b at 0.2 runs to 1.2; c (at 0.3) waits for the next step
    assert (b.end_s, c.end_s) == (1.2, 2.2)
    assert cost.with_overhead(()).request_latency_s == 0.0
    cold = CostModel({1: Fit(a=1.0)}, latency={"direct": 0.2, "first_request_extra": 1.0}).with_overhead((), "direct")
    d, e = req("d", list(range(100, 116)), 1), req("e", list(range(200, 216)), 1, at=0.1)
    run([d, e], cold)  # d is the replica's first: there at 0.2, its cold step 0.2-2.2; e (there at 0.3) waits
    assert (d.end_s, e.end_s) == (2.2, 3.2)
    with pytest.raises(ValueError, match="latency path"):
        cost.with_overhead((), "proxy")


def test_simultaneous_arrivals_share_an_idle_replicas_first_step() -> None:
    """The engine thread takes every queued request before it schedules: two requests reaching an idle replica
    at the same instant are prefilled in one step (first tokens at 1, not 1 and 2); one arriving a moment
    later waits for the next step."""
    a, b = req("a", list(range(100, 116)), 1), req("b", list(range(200, 216)), 1)
    run([a, b], ONE_SECOND)
    assert (a.first_token_s, b.first_token_s) == (1.0, 1.0)
    c, d = req("c", list(range(100, 116)), 1), req("d", list(range(200, 216)), 1, at=1e-9)
    run([c, d], ONE_SECOND)
    assert (c.first_token_s, d.first_token_s) == (1.0, 2.0)
    # the same through a request latency: both reach the engine at 0.2
    e, f = req("e", list(range(100, 116)), 1), req("f", list(range(200, 216)), 1)
    run([e, f], CostModel({1: Fit(a=1.0)}, latency={"direct": 0.2}).with_overhead((), "direct"))
    assert (e.first_token_s, f.first_token_s) == (1.2, 1.2)


def test_a_fresh_replicas_first_step_lasts_its_cold_start_longer() -> None:
    """The cold engine: the replica's first step lasts 1 + 0.5 s and holds up the request queued behind it; the
    next step and the other replica's own first step are cold once each."""
    cold = CostModel({1: Fit(a=1.0)}, latency={"direct": 0.0, "first_step_extra": 0.3, "first_request_extra": 0.2}
                     ).with_overhead((), "direct")
    assert cold.cold_start_s == 0.5 and cold.with_overhead(()).cold_start_s == 0.0
    a, b = req("a", list(range(100, 116)), 1), req("b", list(range(200, 216)), 1, at=0.1)
    run([a, b], cold)  # a: 0-1.5 (cold); b waits, then 1.5-2.5
    assert (a.end_s, b.end_s) == (1.5, 2.5)
    c, d = req("c", list(range(100, 116)), 1), req("d", list(range(200, 216)), 1)
    run([c, d], cold, replicas=2)  # one each: both first steps are cold
    assert (c.end_s, d.end_s) == (1.5, 1.5)
    with pytest.raises(ValueError, match="must be >= 0"):
        CostModel({1: Fit(a=1.0)}, cold_start_s=-1.0)


def test_step_jitter_is_seeded_and_bounded() -> None:
    def ends(jitter: float, seed: int) -> list[float]:
        reqs = [req(f"r{i}", list(range(100 * i, 100 * i + 16)), 5, at=0.3 * i) for i in range(6)]
        run(reqs, CostModel({1: Fit(a=1.0)}), replicas=2, step_jitter=jitter, seed=seed)
        return [r.end_s for r in reqs]

    exact = ends(0.0, 0)
    assert ends(0.2, 3) == ends(0.2, 3) != exact  # the same seed, the same run; jitter changes it
    assert ends(0.2, 3) != ends(0.2, 4)
    # every step lasts 0.8-1.2 s; in this case each request ends within 20% of its exact end
    assert all(abs(j - e) <= 0.2 * e + 1e-9 for j, e in zip(ends(0.2, 5), exact, strict=True))
    with pytest.raises(ValueError, match="step_jitter"):
        FleetConfig(step_jitter=1.0)


def _serve_file(path, before: float | None, n: int = 2) -> None:
    from treadle.bench.workloads import make_workload

    summary = {"requests_per_s": 1.0, "ttft_ms": {"p50": 100.0}, "prefix_cache_hit_rate": 0.5,
               "server_requests_before": before}
    cfg = {"workload": "sharegpt", "num_requests": n, "seed": 0, "max_tokens": 2, "concurrency": 1,
           "arrival_mode": "concurrency", "max_prompt_tokens": 40}
    work = make_workload("sharegpt", n, 0, 2, max_prompt_tokens=40)
    path.write_text(json.dumps({"kind": "bench-serve", "config": cfg, "summary": summary,
                                "requests": [{"id": w.id, "status": 200, "output_tokens": 2} for w in work]}))


def test_validate_replays_what_a_reused_server_answered_before(tmp_path, tiny_llama, capsys) -> None:
    """Runs of one server (files in one folder): a run after another first replays the earlier run's requests
    untimed, so the prompts they share are prefix-cache hits, as on the real server; alone it has none."""
    from treadle.cli import main

    cost = tmp_path / "c.json"
    cost.write_text(json.dumps({"cores": 2, "fits": {"2": {"a": 0.05, "b": 0.001}}}))
    (tmp_path / "set").mkdir()
    (tmp_path / "alone").mkdir()
    _serve_file(tmp_path / "set" / "first.json", 0.0)
    _serve_file(tmp_path / "set" / "second.json", 2.0)  # the same two prompts again
    _serve_file(tmp_path / "alone" / "second.json", 0.0)
    out = tmp_path / "v.json"
    serve = ",".join(str(tmp_path / f) for f in ("set/first.json", "set/second.json", "alone/second.json"))
    assert main(["sim", "validate", "--model", str(tiny_llama), "--cost", str(cost), "--fleet", "",
                 "--serve", serve, "--out", str(out)]) == 0
    first, second, alone = json.loads(out.read_text())["rows"]
    assert (first["history_requests"], second["history_requests"], alone["history_requests"]) == (0, 2, 0)
    assert alone["sim"]["hit_rate"] == first["sim"]["hit_rate"]
    assert second["sim"]["hit_rate"] > alone["sim"]["hit_rate"] + 0.3
    assert "warning" not in capsys.readouterr().err  # the two files add up to the count it recorded
    _serve_file(tmp_path / "set" / "third.json", 5.0)  # 5 before, 4 beside it
    assert main(["sim", "validate", "--model", str(tiny_llama), "--cost", str(cost), "--fleet", "",
                 "--serve", str(tmp_path / "set" / "third.json"), "--out", str(out)]) == 0
    assert "answered 5 requests before it, the files beside it hold 4" in capsys.readouterr().err


def test_a_primed_replica_starts_with_the_cache_its_history_left() -> None:
    shared = list(range(3000, 3064))
    hist = [req("h", shared + [9], 3)]
    s = Simulation([req("a", shared + [1, 2], 1, 0.0)], make_policy("round_robin"), ONE_SECOND,
                   FleetConfig(engine=SchedulerConfig(max_num_batched_tokens=512, num_blocks=256)), history=hist)
    s.run()
    assert s.requests[0].cached_tokens == 64 and s.now == 1.0  # one step: the history cost no time
    assert result(s, None)["prefix_cache_hit_rate"] == pytest.approx(64 / 66)  # the history's own lookups not counted
    assert s.steps == 1
    with pytest.raises(ValueError, match="history needs a fixed fleet of 1 replica"):
        Simulation([], make_policy("round_robin"), ONE_SECOND, FleetConfig(replicas=2), history=hist)
    # a history request the engine can never hold is an error, not a hang
    from treadle.engine.request import Request
    from treadle.sim.replica import SimReplica

    small = SimReplica("r0", SchedulerConfig(num_blocks=2, max_model_len=2048), ONE_SECOND, Machine(0))
    with pytest.raises(ValueError, match="prime cannot schedule 1 waiting request"):
        small.prime([Request("x", list(range(100, 200)), SamplingParams(max_tokens=2, ignore_eos=True))])


def test_served_step_excess_is_exact_and_the_engine_reports_its_steps(tiny_llama, tmp_path) -> None:
    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine
    from treadle.sim.served_steps import StepLog, read_steps, step_excess

    fit = Fit(a=0.004, b=0.001, c=0.002, d=1e-6)
    shapes = [StepShape(decode_rows=r, decode_context=100 * r) for r in (1, 4, 16)]
    alone = [(s, 1.1 * fit.seconds(s)) for s in shapes]  # the machine 10% slower than the fit now
    served = [(s, 1.1 * fit.seconds(s) + 0.0007 * s.decode_rows) for s in shapes]
    served.append((StepShape(prefill_tokens=50, decode_rows=3), 9.0))  # steps with a prompt chunk do not count
    got = step_excess(served, alone, fit)
    assert got["step"] == pytest.approx(0.0007) and got["step_drift"] == pytest.approx(1.1)
    assert (got["step_steps"], got["step_rows"]) == (3, 21)
    with pytest.raises(ValueError, match="decode-only steps"):
        step_excess(served[-1:], alone, fit)
    engine = LLMEngine(EngineConfig(model=str(tiny_llama), num_kv_blocks=64, max_num_seqs=4))
    log_path = tmp_path / "steps.jsonl"
    engine.step_observer = StepLog(str(log_path))
    engine.add_request("a", list(range(10, 40)), SamplingParams(max_tokens=5, ignore_eos=True))
    while engine.has_unfinished_requests():
        engine.step()
    steps = read_steps(log_path)
    assert [s.prefill_tokens for s, _ in steps] == [30, 0, 0, 0, 0] and all(t > 0 for _, t in steps)
    assert [s.decode_rows for s, _ in steps] == [0, 1, 1, 1, 1]
    gz = tmp_path / "steps.jsonl.gz"  # a kept log, gzipped, reads the same
    gz.write_bytes(gzip.compress(log_path.read_bytes()))
    assert read_steps(gz) == steps and read_steps(gz, skip=1) == steps[1:]


def test_validate_gives_serve_runs_the_served_step_excess_in_place_of_replica_and_client(tmp_path, tiny_llama) -> None:
    """With ``step`` in the file, serve runs add it per decode row and nothing of the replica's and the client's
    CPU; without it, those two."""
    from treadle.cli import main

    _serve_file(tmp_path / "run.json", 0.0, n=3)
    sims = {}
    for name, serving in (("step0", {"replica": 0.004, "client": 0.006, "step": 0.0}), ("none", {}),
                          ("step10", {"replica": 0.0, "client": 0.0, "step": 0.01}),
                          ("cpu10", {"replica": 0.004, "client": 0.006})):
        cost = tmp_path / f"{name}.json"
        cost.write_text(json.dumps({"cores": 2, "fits": {"2": {"a": 0.05, "b": 0.001, "c": 0.002}},
                                    "serving": serving}))
        out = tmp_path / f"v-{name}.json"
        assert main(["sim", "validate", "--model", str(tiny_llama), "--cost", str(cost), "--fleet", "",
                     "--serve", str(tmp_path / "run.json"), "--out", str(out)]) == 0
        sims[name] = json.loads(out.read_text())["rows"][0]["sim"]["requests_per_s"]
    assert sims["step0"] == pytest.approx(sims["none"]) and sims["step10"] == pytest.approx(sims["cpu10"])
    assert sims["step10"] < sims["step0"]


def test_validate_gives_a_one_replica_scaling_run_the_served_step_excess(tmp_path, tiny_llama) -> None:
    """A scaling run's single replica takes both cores' threads: with ``step`` in the file it gets ``step`` and
    the gateway's CPU; the 2-replica run (1 thread each) keeps replica + gateway + client."""
    from treadle.cli import main

    _fleet_file(tmp_path / "f.json", 1.0, 100.0, 0.2)
    data = json.loads((tmp_path / "f.json").read_text())
    data["runs"] = []
    data["scaling"] = [{"replicas": n, "num_requests": 3, "requests_per_s": 1.0, "output_tok_s": 12.0}
                       for n in (1, 2)]
    (tmp_path / "f.json").write_text(json.dumps(data))
    fits = {"1": {"a": 0.05, "b": 0.001, "c": 0.002}, "2": {"a": 0.03, "b": 0.0005, "c": 0.001}}
    sims = {}
    for name, serving in (("step", {"replica": 0.001, "gateway": 0.002, "client": 0.003, "step": 0.02}),
                          ("none", {"replica": 0.001, "gateway": 0.002, "client": 0.003}),
                          ("same", {"replica": 0.02, "gateway": 0.002, "client": 0.0})):
        cost = tmp_path / f"{name}.json"
        cost.write_text(json.dumps({"cores": 2, "fits": fits, "serving": serving}))
        out = tmp_path / f"v-{name}.json"
        assert main(["sim", "validate", "--model", str(tiny_llama), "--cost", str(cost), "--fleet",
                     str(tmp_path / "f.json"), "--out", str(out)]) == 0
        sims[name] = [r["sim"]["output_tok_s"] for r in json.loads(out.read_text())["rows"]]
    assert sims["step"][0] == pytest.approx(sims["same"][0])  # x1: step + gateway (= replica 0.02 + gateway)
    assert sims["step"][0] < sims["none"][0]
    assert sims["step"][1] == pytest.approx(sims["none"][1])  # x2: the CPU parts, step unused
