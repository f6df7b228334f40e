"""``treadle keys add|list|revoke``: API keys with roles kept in the store (as SHA-256; the key is shown once)."""

from __future__ import annotations

import argparse
import json

NAME = "keys"
HELP = "API keys with roles (user, reviewer, admin) in the store: add, list, revoke"


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_cmd", required=True)
    add = sub.add_parser("add", help="create a key and print it (once)")
    add.add_argument("--user", required=True)
    add.add_argument("--role", default="user", choices=["user", "reviewer", "admin"])
    add.add_argument("--key", default=None, help="use this key instead of a random one")
    sub.add_parser("list", help="owners, roles, dates (never the keys)")
    rv = sub.add_parser("revoke", help="revoke every key of a user")
    rv.add_argument("--user", required=True)
    for sp in (add, *sub.choices.values()):
        if not any(a.dest == "db" for a in sp._actions):
            sp.add_argument("--db", default=None, help="the store URL")


def run(args: argparse.Namespace) -> int:
    from sqlalchemy import select, update

    from treadle.feedback.roles import hash_key, new_key
    from treadle.store import open_store
    from treadle.store.models import ApiKey, utcnow

    store = open_store(args.db)
    try:
        with store.session() as s:
            if args.keys_cmd == "add":
                key = args.key or new_key()
                s.add(ApiKey(key_hash=hash_key(key), user=args.user, role=args.role))
                print(key)
            elif args.keys_cmd == "list":
                for k in s.execute(select(ApiKey).order_by(ApiKey.id)).scalars():
                    print(json.dumps({"user": k.user, "role": k.role, "created_at": k.created_at.isoformat(),
                                      "revoked": k.revoked_at is not None}))
            else:
                n = s.execute(update(ApiKey).where(ApiKey.user == args.user, ApiKey.revoked_at.is_(None))
                              .values(revoked_at=utcnow())).rowcount
                print(f"revoked {n} key(s) of {args.user}")
    finally:
        store.close()
    return 0
