"""``treadle sim``: simulate a gateway and a fleet of replicas on a trace; ``treadle sim calibrate`` fits the
cost model on this machine; ``treadle sim validate`` replays ``treadle bench fleet``/``bench serve`` results.

``treadle sim --trace azure-conv --replicas 16 --policy least_loaded,prefix_affinity --out sim.json`` runs
one simulation per policy (and per ``--replicas`` value when several are given: ``--replicas 1,4,16``) and
writes a ``kind: sim`` file that ``treadle report`` reads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from treadle.gateway.command import add_autoscale_flags, autoscaler_config


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="run", choices=("run", "calibrate", "validate"),
                   help="run a simulation (default), calibrate the cost model, or validate against bench results")
    p.add_argument("--trace", default="azure-conv", help="azure-conv, azure-code, mooncake, or a CSV/JSONL file "
                   "(arrival_s|timestamp, input_tokens|input_length, output_tokens|output_length[, hash_ids])")
    p.add_argument("--rate-scale", type=float, default=1.0, help="arrival rate multiplier (2 = twice the trace's rate)")
    p.add_argument("--length-scale", type=float, default=1.0, help="Azure/file token counts multiplier")
    p.add_argument("--tokens-per-hash", type=int, default=512, help="Mooncake: tokens per hash id (512 = real)")
    p.add_argument("--num-requests", type=int, default=None, help="the first N requests of the trace")
    p.add_argument("--synthetic-day", type=int, default=0, metavar="HOURS",
                   help="tile the one-hour trace over HOURS hours with a daily rate curve (SYNTHETIC)")
    p.add_argument("--synthetic-hour-s", type=float, default=3600.0,
                   help="seconds of the trace each synthetic hour replays (less than 3600 compresses the day)")
    p.add_argument("--replicas", default="1", help="fixed fleet size, or several: 1,4,16 (initial size with --autoscale)")
    add_autoscale_flags(p)
    p.add_argument("--startup", type=float, default=None, help="replica launch-to-ready seconds (default: the cost file's)")
    p.add_argument("--interval", type=float, default=1.0, help="health probe / scrape / autoscaler period (s)")
    p.add_argument("--policy", default="least_loaded", help="routing policy, or several: round_robin,least_loaded,prefix_affinity")
    p.add_argument("--max-load-gap", type=int, default=None, help="prefix_affinity's load bound (default: the policy's)")
    p.add_argument("--index-blocks", type=int, default=None, help="prefix_affinity's index size (default: the policy's)")
    p.add_argument("--balance", choices=("gap", "cost"), default=None, help="prefix_affinity's balance rule")
    from treadle.sim.cost_model import bundled_names

    p.add_argument("--cost", default="cpu-smollm2", help="cost model file (JSON/YAML) or bundled name "
                   f"({', '.join(bundled_names())})")
    p.add_argument("--threads", type=int, default=1, help="threads per replica (picks the cost model's fit)")
    p.add_argument("--replicas-per-machine", type=int, default=0, help="replicas sharing one machine of the cost "
                   "model's cores (0: as many as it has cores for)")
    for name in ("max-num-seqs", "max-num-batched-tokens", "num-kv-blocks", "max-model-len"):
        p.add_argument(f"--{name}", type=int, default=None, help="engine setting (default: the cost file's)")
    p.add_argument("--concurrency", type=int, default=None, help="closed loop with this many clients (default: "
                   "open loop at the trace's arrival times)")
    p.add_argument("--slo", default="ttft_ms=2000,tpot_ms=100", help="goodput SLO, as bench serve's --slo")
    p.add_argument("--no-fast-forward", action="store_true", help="step every decode through the scheduler")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="sim.json")
    # calibrate / validate
    p.add_argument("--model", default="default", help="calibrate: the model to time")
    p.add_argument("--calibrate-threads", default="1,2", help="calibrate: thread counts to fit")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="calibrate: time steps by CPU time / "
                   "threads (robust on a shared machine) or by the wall clock")
    p.add_argument("--co-run", action="store_true", help="calibrate: also measure the slowdown of 1-thread "
                   "engines running at once, one per core, then two per core, each step against the same step on "
                   "one engine alone right before and after (use --clock wall)")
    p.add_argument("--serving", action="store_true", help="calibrate: also measure the serving path's CPU per "
                   "output token (replica event loop, gateway, client) on a real replica, its request latency and "
                   "cold start (median of three fresh replicas), and its steps' excess over the same requests on "
                   "an engine alone (step)")
    p.add_argument("--repeats", type=int, default=1, help="calibrate: measure the scenarios this many times per "
                   "thread count and fit all their steps together (the held-out repetition stays one)")
    p.add_argument("--temperature", type=float, default=0.0, help="calibrate: the timed requests sample at this "
                   "temperature (default 0: greedy, as treadle bench sends; sampled rows cost a little more)")
    p.add_argument("--base", default=None, help="calibrate: start from this cost file (its fits for thread counts "
                   "not in --calibrate-threads are kept)")
    p.add_argument("--serving-overhead", default="replica", help="the cost file's serving parts added to each "
                   "decode row: comma list of replica,gateway,client,step ('' for none; validate adds those that "
                   "shared the real runs' machine)")
    p.add_argument("--request-latency", choices=("gateway", "direct", ""), default="gateway", help="the cost "
                   "file's request latency outside the engine to apply: through a gateway (default), direct, or "
                   "'' for none; with a path, also its served step gap and fresh replicas' cold start")
    p.add_argument("--fleet", default="docs/results/bench-fleet.json", help="validate: bench fleet result files, "
                   "comma separated")
    p.add_argument("--sim-repeats", type=int, default=1, help="validate: simulate each run this many times with "
                   "--jitter (its spread beside the real runs')")
    p.add_argument("--jitter", type=float, default=0.0, help="validate: each step's cost x uniform(1-J, 1+J) in "
                   "the repeats (0: one exact run)")
    p.add_argument("--serve", default="", help="validate: bench serve result files, comma separated")


def _log(msg: str) -> None:
    print(f"[sim] {msg}", file=sys.stderr, flush=True)


def engine_config(args: argparse.Namespace, cost):  # noqa: ANN001, ANN201 - CostModel -> SchedulerConfig
    from treadle.engine.scheduler import SchedulerConfig

    e = dict(cost.engine)
    for flag, key in (("max_num_seqs", "max_num_seqs"), ("max_num_batched_tokens", "max_num_batched_tokens"),
                      ("num_kv_blocks", "num_blocks"), ("max_model_len", "max_model_len")):
        if getattr(args, flag) is not None:
            e[key] = getattr(args, flag)
    fields = set(SchedulerConfig.__dataclass_fields__)
    cfg = SchedulerConfig(**{k: v for k, v in e.items() if k in fields})
    # as LLMEngine does: one request must always fit in the KV cache
    from dataclasses import replace

    return replace(cfg, max_model_len=min(cfg.max_model_len, cfg.num_blocks * cfg.block_size))


def policy_params(args: argparse.Namespace, name: str) -> dict:
    if name != "prefix_affinity":
        return {}
    return {k: v for k, v in (("max_load_gap", args.max_load_gap), ("index_blocks", args.index_blocks),
                              ("balance", args.balance)) if v is not None}


def run(args: argparse.Namespace) -> int:
    if args.action == "calibrate":
        from treadle.sim.calibrate import calibrate
        from treadle.sim.cost_model import load_cost_model

        threads = [int(t) for t in args.calibrate_threads.split(",") if t]
        model = calibrate(args.model, threads, seed=args.seed, clock=args.clock, log=_log, co_run=args.co_run,
                          serving=args.serving, base=load_cost_model(args.base) if args.base else None,
                          repeats=args.repeats, temperature=args.temperature)
        Path(args.out).write_text(json.dumps(model.to_json(), indent=2))
        _log(f"wrote {args.out}")
        return 0
    if args.action == "validate":
        from treadle.sim.validate import validate

        return validate(args, _log)
    return simulate(args)


def simulate(args: argparse.Namespace) -> int:
    from treadle.bench.meta import make_meta
    from treadle.bench.summary import parse_slo
    from treadle.gateway.policies import make_policy
    from treadle.sim.cost_model import load_cost_model
    from treadle.sim.results import result
    from treadle.sim.simulator import FleetConfig, Simulation
    from treadle.sim.workload import rows_of, synthetic_day, trace_requests

    cost = load_cost_model(args.cost).with_overhead(overhead_parts(args.serving_overhead),
                                                    args.request_latency or None)
    eng = engine_config(args, cost)
    slo = parse_slo(args.slo)
    rows = rows_of(args.trace)
    label = Path(args.trace).stem if Path(args.trace).exists() else args.trace
    if args.synthetic_day:
        rows = synthetic_day(rows, args.synthetic_day, args.seed, hour_s=args.synthetic_hour_s)
        label += (f" (SYNTHETIC {args.synthetic_day} h day, tiled with a daily rate curve"
                  + (f", each hour compressed to the trace's first {args.synthetic_hour_s:g} s)"
                     if args.synthetic_hour_s < 3600 else ")"))
    sizes = [int(x) for x in str(args.replicas).split(",") if x]
    startup = args.startup if args.startup is not None else float(cost.engine.get("startup_s", 10.0))
    out = {"kind": "sim", "trace": label, "cost_model": {"name": cost.name, "source": cost.source, "file": args.cost,
                                                         "overhead_parts": list(cost.overhead_parts),
                                                         "request_latency_s": cost.request_latency_s,
                                                         "co_run_slowdown": cost.co_run_slowdown},
           "engine": eng.__dict__, "slo": slo, "runs": []}
    for n in sizes:
        scale = autoscaler_config(args, args.max_replicas or n) if args.autoscale else None
        if scale is not None:
            from dataclasses import replace

            scale = replace(scale, startup_time_s=startup)  # what the fleet controller would measure
        for name in [x for x in args.policy.split(",") if x]:
            reqs = trace_requests(rows, label.split()[0], rate_scale=args.rate_scale, length_scale=args.length_scale,
                                  tokens_per_hash=args.tokens_per_hash, max_prompt_tokens=eng.max_model_len - 1,
                                  num_requests=args.num_requests, seed=args.seed)
            fleet = FleetConfig(replicas=max(n, args.min_replicas) if scale else n, threads=args.threads,
                                replicas_per_machine=args.replicas_per_machine, engine=eng, autoscale=scale,
                                startup_s=startup, interval_s=args.interval, concurrency=args.concurrency,
                                fast_forward=not args.no_fast_forward)
            t0, c0 = time.perf_counter(), time.process_time()
            sim = Simulation(reqs, make_policy(name, **policy_params(args, name)), cost, fleet).run()
            res = result(sim, slo)
            res.update(policy=name, replicas=n, autoscale=scale.__dict__ if scale else None,
                       wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0, requests=len(reqs))
            out["runs"].append(res)
            s = res["summary"]
            _log(f"{name} x {n}{' (autoscaled)' if scale else ''}: {s['requests_per_s']:.2f} req/s, TTFT p50 "
                 f"{_ms(s['ttft_ms'], 'p50')} p99 {_ms(s['ttft_ms'], 'p99')} ms, TPOT p50 {_ms(s['tpot_ms'], 'p50')} ms, "
                 f"goodput {s['goodput_req_s'] or 0:.2f} req/s, hit {res['prefix_cache_hit_rate'] or 0:.1%}, "
                 f"{res['replica_hours']:.2f} replica-h; simulated in {res['wall_s']:.1f} s")
    out["meta"] = make_meta(seed=args.seed)
    out["config"] = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str)) or v is None}
    Path(args.out).write_text(json.dumps(out, indent=1))
    _log(f"wrote {args.out}")
    return 0


def overhead_parts(spec: str) -> tuple[str, ...]:
    from treadle.sim.cost_model import SERVING_PARTS

    parts = tuple(x for x in spec.split(",") if x)
    bad = [x for x in parts if x not in SERVING_PARTS]
    if bad:
        raise ValueError(f"--serving-overhead: unknown part(s) {bad}; valid: {', '.join(SERVING_PARTS)}")
    return parts


def _ms(stats: dict | None, key: str) -> str:
    return "-" if not stats else f"{stats[key]:,.0f}"
