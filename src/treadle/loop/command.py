"""``treadle loop --config loop.yaml [--once] [--force]`` and ``treadle loop status --config loop.yaml``.

Without ``--once`` the loop waits for its trigger (N new approved review items, or the schedule),
runs a pass, and waits again, until interrupted; an unfinished pass (a crash, a kill) is resumed
first. ``status`` prints the runs, their steps and the alias's current split (JSON with ``--json``);
``export --out FILE`` writes every version's gating scores and fate (``kind: loop``) for ``treadle report``.
``retry --run N --reason TEXT`` reopens run N, whose canary rolled its candidate back, at its canary (after a
fixed live check or a one-off incident; audited on the version); the next ``treadle loop`` pass runs it.
``sync`` registers production on first use and makes the gateway serve the alias as the store records it
(adapters loaded, route set), then exits without starting or resuming a pass: what a script runs before it
sends traffic to the alias (``--once`` would also run a pass when the trigger has fired).
"""

from __future__ import annotations

import argparse
import json
import time

NAME = "loop"
HELP = "the improvement loop: dataset -> tune -> gate -> canary -> promote or roll back"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", choices=("run", "status", "export", "retry", "sync"),
                   default="run",
                   help="run the loop (default), print its status, export the summary that treadle report plots, "
                        "retry a rolled-back canary (--run, --reason), or sync the gateway's alias to the store "
                        "(register production on first use; runs no pass)")
    p.add_argument("--run", type=int, default=None, help="retry: the loop run whose canary rolled back")
    p.add_argument("--reason", default=None, help="retry: why (stored with the version's history)")
    p.add_argument("--actor", default="cli", help="retry: who asks (stored with the reason)")
    p.add_argument("--out", default="loop-summary.json", help="export: where to write the summary (kind: loop)")
    p.add_argument("--config", required=True, help="loop.yaml (see docs/LOOP.md)")
    p.add_argument("--once", action="store_true", help="resume or run at most one pass, then exit")
    p.add_argument("--force", action="store_true", help="start a pass even if the trigger has not fired")
    p.add_argument("--poll-seconds", type=float, default=60.0, help="how often the trigger is checked")
    p.add_argument("--json", action="store_true", help="status as JSON")


def run(args: argparse.Namespace) -> int:
    from treadle.loop.config import load_config
    from treadle.store import open_store

    cfg = load_config(args.config)
    store = open_store(cfg.db)
    try:
        if args.what == "status":
            return _status(cfg, store, args.json)
        if args.what == "retry":
            return _retry(cfg, store, args)
        if args.what == "export":
            from pathlib import Path

            from treadle.loop.export import loop_summary

            Path(args.out).write_text(json.dumps(loop_summary(store, cfg.alias), indent=1) + "\n")
            print(f"wrote {args.out}")
            return 0
        from treadle.loop.fleet import FleetClient
        from treadle.loop.runner import Loop

        fleet = FleetClient(cfg.gateway.url, cfg.gateway.admin_key)
        loop = Loop(cfg, store, fleet, progress=True)
        if args.what == "sync":
            production = loop.ensure_production()
            routes = {r["alias"]: r["versions"] for r in fleet.routes().get("routes", [])}
            print(json.dumps({"alias": cfg.alias, "production": production, "served": routes.get(cfg.alias)}))
            return 0
        while True:
            done = loop.run_once(force=args.force)
            if done is not None:
                print(json.dumps({"run": done.id, "candidate": done.candidate, "outcome": done.outcome,
                                  "reason": done.reason}), flush=True)
            if args.once:
                return 0
            args.force = False
            time.sleep(args.poll_seconds)
    finally:
        store.close()


def _retry(cfg, store, args: argparse.Namespace) -> int:  # noqa: ANN001
    from treadle.loop.state import reopen_canary
    from treadle.registry.registry import alias_state, record_event

    if args.run is None or not (args.reason or "").strip():
        print("treadle loop retry: --run N and --reason TEXT are required")
        return 2
    alias = alias_state(store, cfg.alias)
    try:
        run = reopen_canary(store, args.run, cfg.alias, alias.production if alias else None)
    except ValueError as e:
        print(f"treadle loop retry: {e}")
        return 2
    record_event(store, run.candidate, "canary_retry", args.actor, alias=cfg.alias, run=run.id, reason=args.reason)
    print(json.dumps({"run": run.id, "candidate": run.candidate, "step": run.step, "reason": args.reason}))
    return 0


def _status(cfg, store, as_json: bool) -> int:  # noqa: ANN001
    from treadle.loop.runner import new_items
    from treadle.loop.state import runs
    from treadle.registry.registry import alias_state

    alias = alias_state(store, cfg.alias)
    out = {"alias": cfg.alias, "weights": alias.weights if alias else None,
           "production": alias.production if alias else None,
           "new_approved": new_items(store, cfg), "trigger": cfg.trigger.min_new_approved,
           "runs": runs(store, cfg.alias)}
    if as_json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"alias {cfg.alias}: {out['weights']} (production {out['production']}); "
          f"{out['new_approved']}/{cfg.trigger.min_new_approved} new approved items toward the next run")
    for r in out["runs"]:
        steps = " -> ".join(f"{s['step']}{'' if s['status'] == 'done' else '(' + s['status'] + ')'}" for s in r["steps"])
        print(f"run {r['id']} [{r['status']}] {r['candidate'] or '-'}: {r['outcome'] or 'at ' + r['step']} "
              f"{('- ' + r['reason'][:160]) if r['reason'] else ''}\n    {steps}")
    return 0
