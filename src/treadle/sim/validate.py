"""``treadle sim validate``: replay ``treadle bench fleet`` and ``treadle bench serve`` runs in the simulator
and put its predictions beside the measurements.

For every run in the files: the same requests (``bench.workloads.make_workload`` with the run's settings;
chat prompts tokenized with the model's chat template exactly as the gateway and the replica do), the same
arrival process (closed loop with the run's concurrency and sessions, or trace arrivals), the same fleet
(replicas, threads split over this machine's cores as ``bench fleet`` does, all on one machine, KV blocks,
``max_num_seqs``, the same policy object) and the output lengths the run really produced (per request where
the file has them: ``bench serve`` records and ``bench fleet`` files written since 2026-12-02; the run's mean
for older fleet files, which keep only summaries).
Compared: requests/s (output tokens/s for the scaling runs), median TTFT, prefix-cache hit rate.
Repeated runs (the same run in several files) are also grouped: the real runs' mean, range and spread
(max - min over the mean) beside the simulation's error against their mean, so the error reads against the
measurement's own noise.
A ``bench serve`` run on a server that had answered earlier runs (its ``server_requests_before``; the
sets of ``scripts/bench_report_runs.sh`` share one server) first replays those runs' requests untimed on the
simulated replica, so that its prefix cache starts as the real one did (``_server_history``).
Nothing is fitted to these runs: the cost model comes from ``treadle sim calibrate``.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import replace
from pathlib import Path

from treadle.bench.workloads import make_workload
from treadle.engine.scheduler import SchedulerConfig
from treadle.fleet.threads import split_threads
from treadle.gateway.policies import make_policy
from treadle.sim.cost_model import CostModel, load_cost_model
from treadle.sim.results import result
from treadle.sim.simulator import FleetConfig, Simulation
from treadle.sim.validate_groups import group_line, relative_error, repeated, within_bar
from treadle.sim.workload import SimRequest


class _Tokens:
    """Prompt token ids as the replica sees them (the gateway's tokenization, chat template included)."""

    def __init__(self, model: str) -> None:
        from treadle.gateway.prefix import PrefixHasher, model_folder
        from treadle.models.config import ModelConfig
        from treadle.models.tokenizer import Tokenizer

        folder = model_folder(model)
        self.hasher = PrefixHasher(Tokenizer(folder), "validate")
        self.model_cfg = ModelConfig.from_folder(folder)

    def __call__(self, w) -> list[int]:  # noqa: ANN001 - a WorkloadRequest
        if isinstance(w.prompt, list):
            return list(w.prompt)
        if w.prompt is not None:
            return self.hasher.token_ids({"prompt": w.prompt}, False)
        return self.hasher.token_ids({"messages": w.messages}, True)

    def engine(self, num_blocks: int | None, max_num_seqs: int) -> SchedulerConfig:
        if num_blocks is None:  # treadle serve's default: 2 GiB of fp32 KV
            num_blocks = int(2.0 * 1024**3) // (self.model_cfg.kv_bytes_per_token(4) * 16)
        return SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=512, num_blocks=num_blocks,
                               max_model_len=min(self.model_cfg.max_position_embeddings, num_blocks * 16))


def _simulate(reqs: list[SimRequest], policy: str, cost: CostModel, n: int, engine: SchedulerConfig,
              concurrency: int | None, cores: int, noise: tuple[int, float] = (1, 0.0), interval_s: float = 1.0,
              policy_params: dict | None = None, history: list[SimRequest] | None = None) -> dict:
    """The run simulated ``noise[0]`` times, each step's cost jittered by +-``noise[1]`` (seeds 0, 1, ...;
    one exact run when the jitter is 0): the mean of each figure, and its range under ``range``.
    ``interval_s``: the gateway's metrics scrape period in the real run; ``policy_params`` its policy's options;
    ``history``: what the (one) replica answered before the run (``Simulation``)."""
    repeats, jitter = noise if noise[1] > 0 else (1, 0.0)
    threads = split_threads(n, cores)[-1]
    runs = []
    for seed in range(repeats):
        fleet = FleetConfig(replicas=n, threads=threads, replicas_per_machine=n, engine=engine,
                            concurrency=concurrency, startup_s=0.0, step_jitter=jitter, seed=seed,
                            interval_s=interval_s)
        res = result(Simulation(copy.deepcopy(reqs), make_policy(policy, **(policy_params or {})), cost, fleet,
                                copy.deepcopy(history)).run(), None)
        s = res["summary"]
        runs.append({"requests_per_s": s["requests_per_s"], "output_tok_s": s["output_tok_s"],
                     "ttft_p50_ms": s["ttft_ms"]["p50"], "hit_rate": res["prefix_cache_hit_rate"]})
    out: dict = {"threads": threads, "repeats": repeats, "jitter": jitter, "range": {}}
    for k in runs[0]:
        vals = [r[k] for r in runs if r[k] is not None]
        out[k] = sum(vals) / len(vals) if vals else None
        out["range"][k] = [min(vals), max(vals)] if vals else None
    return out


def _sim_requests(work: list, tokens: _Tokens, out_len: dict[str, int] | int) -> list[SimRequest]:
    out = []
    for w in work:
        ids = tokens(w)
        n_out = out_len.get(w.id, w.max_tokens) if isinstance(out_len, dict) else out_len
        out.append(SimRequest(w.id, (lambda ids=ids: ids), max(1, n_out), arrival_s=w.arrival_s, session=w.session,
                              turn=w.turn))
    return out


def _outputs(records: list[dict]) -> dict[str, int]:
    """Output tokens per request id of the successful requests (empty when the file kept none)."""
    return {r["id"]: r["output_tokens"] for r in records if r.get("status") == 200}


def fleet_workload(cfg: dict, workload: str) -> list:
    """The requests of one ``bench fleet`` run (``shared-prefix`` or ``mooncake``) from its file's config."""
    if workload == "shared-prefix":
        return make_workload(workload, cfg["num_requests"], cfg["seed"], cfg["max_tokens"],
                             num_prefixes=cfg["num_prefixes"], prefix_tokens=cfg["prefix_tokens"])
    return make_workload(workload, cfg["mooncake_requests"], cfg["seed"], cfg["max_tokens"],
                         sessions=cfg["mooncake_rows"] == "sessions")


def _fleet_rows(path: Path, cost: CostModel, tokens: _Tokens, cores: int, log,  # noqa: ANN001
                noise: tuple[int, float] = (1, 0.0), filling_cost: CostModel | None = None) -> list[dict]:
    """The rows of a ``bench fleet`` file; ``filling_cost`` (default ``cost``) for a run whose replicas run
    several threads each (one replica filling the machine's cores)."""
    from treadle.fleet import bench_fleet

    data = json.loads(path.read_text())
    p = argparse.ArgumentParser()
    bench_fleet.register(p)
    cfg = vars(p.parse_args([]))
    cfg.update({k: v for k, v in data.get("config", {}).items() if k in cfg})
    engine = tokens.engine(cfg["num_kv_blocks"], cfg["max_num_seqs"])
    rows = []
    for run in data.get("runs", []):
        wl, s = run["workload"], run["summary"]
        work = fleet_workload(cfg, wl)
        mean_out = round(s["output_tok_s"] / s["requests_per_s"]) if s["requests_per_s"] else cfg["max_tokens"]
        reqs = _sim_requests(work, tokens, _outputs(run.get("requests", [])) or mean_out)
        params = {k: cfg[k] for k in ("max_load_gap", "balance") if cfg.get(k) is not None}  # as bench fleet passes
        sim = _simulate(reqs, run["policy"], cost, cfg["replicas"], engine, cfg["concurrency"], cores, noise,
                        bench_fleet.HEALTH_INTERVAL_S, params if run["policy"] == "prefix_affinity" else None)
        rows.append({"source": str(path), "run": f"fleet {wl} {run['policy']} x{cfg['replicas']}",
                     "real": {"requests_per_s": s["requests_per_s"], "ttft_p50_ms": s["ttft_ms"]["p50"],
                              "hit_rate": s.get("prefix_cache_hit_rate")}, "sim": sim})
        log(_line(rows[-1]))
    for sc in data.get("scaling", []):
        n = sc["replicas"]
        # older files did not record the request count; their scaling runs all used 24
        work = make_workload("sharegpt", sc.get("num_requests", 24), cfg["seed"], cfg["max_tokens"] * 4)
        mean_out = round(sc["output_tok_s"] / sc["requests_per_s"])
        reqs = _sim_requests(work, tokens, _outputs(sc.get("requests", [])) or mean_out)
        run_cost = filling_cost if filling_cost is not None and split_threads(n, cores)[-1] > 1 else cost
        sim = _simulate(reqs, "least_loaded", run_cost, n, engine, cfg["concurrency"], cores, noise,
                        bench_fleet.HEALTH_INTERVAL_S)
        rows.append({"source": str(path), "run": f"fleet scaling sharegpt least_loaded x{n}",
                     "real": {"requests_per_s": sc["requests_per_s"], "output_tok_s": sc["output_tok_s"]}, "sim": sim})
        log(_line(rows[-1]))
    return rows


def _serve_work(data: dict) -> list:
    """The requests of one ``bench serve`` file, as it sent them (trace arrivals from 0, time-scaled)."""
    c = data["config"]
    opts = {k: c.get(k) for k in ("num_prefixes", "prefix_tokens", "rate_scale", "length_scale", "window",
                                  "tokens_per_hash", "max_prompt_tokens", "vocab_size")}
    work = make_workload(c["workload"], c["num_requests"], c["seed"], c["max_tokens"], **opts)
    if c.get("arrival_mode") == "trace":
        first = min(w.arrival_s for w in work)
        work = [replace(w, arrival_s=(w.arrival_s - first) * (c.get("time_scale") or 1.0)) for w in work]
    return work


def _server_history(path: Path, data: dict, tokens: _Tokens, log) -> list[SimRequest]:  # noqa: ANN001
    """What the run's server answered before it: the ``bench serve`` files beside ``path`` whose
    ``server_requests_before`` is smaller (the earlier runs of one server, as ``scripts/bench_report_runs.sh``
    and ``scripts/sim_validation_serve_runs.sh`` write them), in that order, with their real output lengths.
    Empty for a fresh server; a warning when those files do not add up to the count the run recorded."""
    before = data["summary"].get("server_requests_before") or 0
    if not before:
        return []
    earlier = []
    for other in sorted(path.parent.glob("*.json")):
        if other == path:
            continue
        try:
            d = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        if d.get("kind") != "bench-serve":
            continue
        n = d.get("summary", {}).get("server_requests_before")
        if n is not None and n < before:
            earlier.append((n, d))
    earlier.sort(key=lambda x: x[0])
    hist: list[SimRequest] = []
    for _, d in earlier:
        hist += _sim_requests(_serve_work(d), tokens, _outputs(d.get("requests", [])) or d["config"]["max_tokens"])
    if len(hist) != before:
        log(f"warning: {path}: its server answered {before:.0f} requests before it, the files beside it "
            f"hold {len(hist)}; simulating those")
    return hist


def serve_costs(base: CostModel) -> tuple[CostModel, CostModel]:
    """How ``validate`` prices a ``bench serve`` run: (on a server that answered requests before, on a fresh
    server). bench serve runs one after another against one long-lived server (scripts/bench_report_runs.sh,
    scripts/sim_validation_serve_runs.sh): only a set's first run meets a fresh server (its file says so since
    2026-12-03: ``server_requests_before`` 0), and only that one gets the cold start. A file with the served step
    excess (``step``, measured in the bench serve setup: one replica filling the cores, the client beside it)
    uses it in place of the replica's and the client's CPU per token."""
    parts = ("step",) if "step" in base.serving else ("replica", "client")
    fresh = base.with_overhead(parts, "direct")
    return replace(fresh, cold_start_s=0.0), fresh


def _serve_rows(path: Path, cost: CostModel, tokens: _Tokens, cores: int, log,  # noqa: ANN001
                noise: tuple[int, float] = (1, 0.0), fresh_cost: CostModel | None = None) -> list[dict]:
    """One row for a ``bench serve`` file; ``fresh_cost`` (with a fresh server's cold start) replaces ``cost``
    when the file says its server had answered no request before the run (``server_requests_before`` 0).
    A server that had answered requests runs them first, untimed (``_server_history``): its prefix cache
    holds what they left."""
    data = json.loads(path.read_text())
    c, s = data["config"], data["summary"]
    fresh = s.get("server_requests_before") == 0
    if fresh and fresh_cost is not None:
        cost = fresh_cost
    work = _serve_work(data)
    outs = _outputs(data.get("requests", []))
    trace = c.get("arrival_mode") == "trace"
    history = _server_history(path, data, tokens, log)
    sim = _simulate(_sim_requests(work, tokens, outs), "least_loaded", cost, 1, tokens.engine(None, 128),
                    None if trace else c["concurrency"], cores, noise, history=history)
    row = {"source": str(path), "run": f"serve {c['workload']} {'trace' if trace else 'c=' + str(c['concurrency'])}",
           "fresh_server": fresh, "history_requests": len(history),
           "real": {"requests_per_s": s["requests_per_s"], "ttft_p50_ms": s["ttft_ms"]["p50"],
                    "hit_rate": s.get("prefix_cache_hit_rate")}, "sim": sim}
    log(_line(row))
    return [row]


def _line(row: dict) -> str:
    r, s = row["real"], row["sim"]
    key = "output_tok_s" if "output_tok_s" in r else "requests_per_s"
    parts = [f"{row['run']}: {key} {s[key]:.3f} vs {r[key]:.3f} ({relative_error(s[key], r[key]):+.0%})"]
    if r.get("ttft_p50_ms"):
        parts.append(f"TTFT p50 {s['ttft_p50_ms']:,.0f} vs {r['ttft_p50_ms']:,.0f} ms "
                     f"({relative_error(s['ttft_p50_ms'], r['ttft_p50_ms']):+.0%})")
    if r.get("hit_rate") is not None and s.get("hit_rate") is not None:
        parts.append(f"hit {s['hit_rate']:.1%} vs {r['hit_rate']:.1%} ({(s['hit_rate'] - r['hit_rate']) * 100:+.1f} pt)")
    return "; ".join(parts)


def validate(args: argparse.Namespace, log) -> int:  # noqa: ANN001
    import os

    base = load_cost_model(args.cost)
    noise = (args.sim_repeats, args.jitter)
    cores = base.cores or os.cpu_count() or 1
    tokens = _Tokens(args.model)
    rows: list[dict] = []
    # the serving work that shared the real runs' cores: bench fleet runs the gateway and the client in one
    # process beside the replicas; bench serve runs the client beside the replica
    fleet_cost = base.with_overhead(("replica", "gateway", "client"), "gateway")
    # a replica of several threads filling the machine's cores (a one-replica scaling run) is slowed by that CPU
    # beyond its own time (a straggling thread holds up its step): the served step excess, when measured, in
    # place of the replica's and the client's CPU (the gateway's is not in that measurement)
    filling = base.with_overhead(("step", "gateway"), "gateway") if "step" in base.serving else fleet_cost
    serve_cost, fresh_serve = serve_costs(base)
    for f in [x for x in args.fleet.split(",") if x]:
        rows += _fleet_rows(Path(f), fleet_cost, tokens, cores, log, noise, filling)
    for f in [x for x in args.serve.split(",") if x]:
        rows += _serve_rows(Path(f), serve_cost, tokens, cores, log, noise, fresh_serve)
    for row in rows:
        r, s = row["real"], row["sim"]
        row["error"] = {"requests_per_s": relative_error(s["requests_per_s"], r.get("requests_per_s")),
                        "output_tok_s": relative_error(s["output_tok_s"], r.get("output_tok_s")),
                        "ttft_p50": relative_error(s.get("ttft_p50_ms"), r.get("ttft_p50_ms")),
                        "hit_rate_points": None if r.get("hit_rate") is None or s["hit_rate"] is None
                        else (s["hit_rate"] - r["hit_rate"]) * 100}
    groups = repeated(rows)
    for g in groups:
        log(group_line(g))
    bar = within_bar(groups)
    if groups:
        log("within the bar (15% on throughput and median TTFT, 5 points on hit rate, against the real mean): "
            + ", ".join(f"{k} {a} of {b}" for k, (a, b) in bar.items()))
    Path(args.out).write_text(json.dumps({"kind": "sim-validation", "cost_model": args.cost, "within_bar": bar,
                                          "co_run_slowdown": base.co_run_slowdown, "serving": base.serving,
                                          "latency": base.latency, "sim_repeats": args.sim_repeats,
                                          "jitter": args.jitter,
                                          "rows": rows,
                                          "repeated": groups}, indent=1))
    log(f"wrote {args.out}")
    return 0

