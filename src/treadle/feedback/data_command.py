"""``treadle data delete --user U``: retention (see :func:`treadle.feedback.lineage.delete_user`)."""

from __future__ import annotations

import argparse
import json

NAME = "data"
HELP = "retention: `data delete --user U` removes a user's records"


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_cmd", required=True)
    d = sub.add_parser("delete", help="remove a user's logs and feedback; redact and mark built datasets")
    d.add_argument("--user", required=True)
    d.add_argument("--db", default=None, help="the store URL")


def run(args: argparse.Namespace) -> int:
    from treadle.feedback.lineage import delete_user
    from treadle.store import open_store

    store = open_store(args.db)
    try:
        with store.session() as s:
            out = delete_user(s, args.user)
        print(json.dumps(out, indent=1))
    finally:
        store.close()
    return 0
