"""One `treadle bench fleet` run replayed request by request in the simulator (no jitter), beside what the real
run recorded per request (cached tokens and TTFT, kept since 2026-12-03), with each routing decision the
simulated gateway made (reason, replica, and every replica's in-flight and scraped waiting count).

Usage: python3 scripts/sim_diag/replay_fleet_run.py COST FLEET.json WORKLOAD POLICY
  e.g. cpu-smollm2 docs/results/fleet-repeats-2026-12-03/fleet-r3.json shared-prefix prefix_affinity
"""

import copy
import json
import sys

from treadle.fleet.bench_fleet import HEALTH_INTERVAL_S
from treadle.gateway.policies import make_policy
from treadle.sim.cost_model import load_cost_model
from treadle.sim.results import result
from treadle.sim.simulator import FleetConfig, Simulation
from treadle.sim.validate import _outputs, _sim_requests, _Tokens, fleet_workload


def main() -> None:
    cost_name, path, workload, policy = sys.argv[1:5]
    cost = load_cost_model(cost_name).with_overhead(("replica", "gateway", "client"), "gateway")
    data = json.load(open(path))
    cfg = data["config"]
    tok = _Tokens(cfg.get("model", "default"))
    run = next(r for r in data["runs"] if r["policy"] == policy and r["workload"] == workload)
    work = fleet_workload(cfg, workload)
    pol = make_policy(policy)
    decisions: dict[str, tuple] = {}
    choose = pol.choose

    def logged(request, candidates):  # noqa: ANN001, ANN202
        d = choose(request, candidates)
        logged.last = (d.reason, d.replica_id, [(c.replica_id, c.inflight, c.waiting) for c in candidates])
        return d

    pol.choose = logged
    sim = Simulation(copy.deepcopy(_sim_requests(work, tok, _outputs(run["requests"]))), pol, cost,
                     FleetConfig(replicas=cfg["replicas"], threads=1, replicas_per_machine=cfg["replicas"],
                                 engine=tok.engine(cfg["num_kv_blocks"], cfg["max_num_seqs"]),
                                 concurrency=cfg["concurrency"], startup_s=0.0, interval_s=HEALTH_INTERVAL_S))
    arrive = sim._arrive

    def arrive_logged(r) -> None:  # noqa: ANN001
        arrive(r)
        decisions[r.id] = (round(sim.now, 2), getattr(logged, "last", None))

    sim._arrive = arrive_logged
    sim.run()
    res = result(sim, None)
    print(f"simulated: routing {res['routing']}, hit rate {res['prefix_cache_hit_rate']:.1%}; real: routing "
          f"{run.get('routing')}, hit rate {run['summary'].get('prefix_cache_hit_rate'):.1%}")
    real = {r["id"]: r for r in run["requests"]}
    done = {r.id: r for r in sim.done}
    for w in work:
        s, r = done[w.id], real[w.id]
        differs = "cached_tokens" in r and (s.cached_tokens > 100) != (r["cached_tokens"] > 100)
        print(f"{w.id:14s} sim {s.replica} cached {s.cached_tokens:5d} ttft {s.first_token_s - s.sent_s:6.2f} | real "
              f"{r.get('replica') or '?'} cached {r.get('cached_tokens', -1):5d} ttft {r.get('ttft_s') or -1:6.2f} | "
              f"{decisions[w.id]}" + ("  <-- hit differs" if differs else ""))
    print(stays(work, {w.id: done[w.id].replica for w in work}, "simulated"))
    if all(real[w.id].get("replica") for w in work):  # fleet runs since 2026-12-04 name each request's replica
        print(stays(work, {w.id: real[w.id]["replica"] for w in work}, "real"))


def stays(work: list, replica_of: dict[str, str], label: str) -> str:
    """How often a session's next turn went to the replica that served its previous turn (where its history is
    cached), and how many replicas each served."""
    same = turns = 0
    last: dict[str, str] = {}
    for w in sorted((w for w in work if w.session is not None), key=lambda w: (w.session, w.turn)):
        if w.session in last:
            turns += 1
            same += replica_of[w.id] == last[w.session]
        last[w.session] = replica_of[w.id]
    served: dict[str, int] = {}
    for w in work:
        served[replica_of[w.id]] = served.get(replica_of[w.id], 0) + 1
    return f"{label}: {same} of {turns} later turns on their previous turn's replica; served per replica {served}"


if __name__ == "__main__":
    main()
