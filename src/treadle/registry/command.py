"""``treadle registry list|show|history|register|promote|rollback``: model versions and aliases in the store.

``promote`` and ``rollback`` change the alias in the store and, with ``--gateway URL --admin-key K``,
push the new split to the gateway's route first (so once the store records a rollback, the gateway
no longer routes to the rolled-back version). Both need ``--reason``/``--actor`` for the audit trail.
"""

from __future__ import annotations

import argparse
import json

NAME = "registry"
HELP = "model registry: versions with lineage, aliases and their history; promote and roll back"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help="the store (default: $TREADLE_DB, else ~/.cache/treadle/treadle.db)")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every version and every alias")
    s = sub.add_parser("show", help="one version: lineage, evals, gate verdicts, events")
    s.add_argument("version")
    s = sub.add_parser("history", help="which versions served which share of an alias, and when")
    s.add_argument("alias")
    s = sub.add_parser("register", help="add a version")
    s.add_argument("version")
    s.add_argument("--kind", choices=("base", "adapter", "full"), default="adapter")
    s.add_argument("--base-model", required=True)
    s.add_argument("--path", default=None, help="adapter or model folder")
    s.add_argument("--run-record", default=None, help="treadle tune's run record (JSON file) as lineage")
    s.add_argument("--dataset-id", type=int, action="append", default=[], help="datasets.id it was trained on")
    for name, text in (("promote", "give a version the whole alias (it becomes production)"),
                       ("rollback", "end a canary, or return the alias to the previous production version")):
        s = sub.add_parser(name, help=text)
        s.add_argument("alias")
        if name == "promote":
            s.add_argument("version")
        s.add_argument("--reason", required=name == "rollback", default=None)
        s.add_argument("--actor", default="cli")
        s.add_argument("--gateway", default=None, help="also set the gateway's route (its URL)")
        s.add_argument("--admin-key", default=None, help="the gateway's --admin-api-key")


def run(args: argparse.Namespace) -> int:
    from treadle.registry import registry as reg
    from treadle.store import open_store

    store = open_store(args.db)
    try:
        if args.action == "list":
            print(json.dumps({"versions": reg.versions(store), "aliases": reg.aliases(store)}, indent=1))
        elif args.action == "show":
            print(json.dumps(reg.show(store, args.version), indent=1))
        elif args.action == "history":
            print(json.dumps(reg.history(store, args.alias), indent=1))
        elif args.action == "register":
            from pathlib import Path

            from treadle.tuning.record import file_sha256

            record = json.loads(Path(args.run_record).read_text()) if args.run_record else None
            weights = Path(args.path or "", "adapter_model.safetensors")
            digest = file_sha256(weights) if args.path and weights.is_file() else (record or {}).get("adapter_hash")
            vid = reg.register(store, args.version, args.kind, args.base_model, args.path, digest, args.dataset_id,
                               record)
            print(json.dumps({"registered": args.version, "id": vid}))
        elif args.action == "promote":
            _push(args, {args.version: 1.0})
            print(json.dumps(reg.promote(store, args.alias, args.version, args.actor, args.reason).__dict__))
        else:
            cur = reg.alias_state(store, args.alias)
            if cur is None or cur.production is None:
                raise reg.RegistryError(f"alias {args.alias!r} has no production version to roll back to")
            target = cur.production if len(cur.weights) > 1 else reg.previous_production(store, args.alias)
            if target is None:
                raise reg.RegistryError(f"alias {args.alias!r}: no earlier production version to roll back to")
            _push(args, {target: 1.0})
            state, gone = reg.rollback(store, args.alias, args.actor, args.reason)
            print(json.dumps({**state.__dict__, "rolled_back": gone}))
    finally:
        store.close()
    return 0


def _push(args: argparse.Namespace, weights: dict[str, float]) -> None:
    if args.gateway:
        from treadle.loop.fleet import FleetClient

        fleet = FleetClient(args.gateway, args.admin_key)
        try:
            fleet.set_route(args.alias, weights)
        finally:
            fleet.close()
