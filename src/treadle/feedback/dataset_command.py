"""``treadle dataset build|list|show|lineage``: curated, versioned datasets from the feedback store."""

from __future__ import annotations

import argparse
import json
import sys

from treadle.feedback.dedup import TEMPLATE_SHARE

NAME = "dataset"
HELP = "curated datasets from reviewed feedback: build, list, show, lineage"


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dataset_cmd", required=True)
    b = sub.add_parser("build", help="the next version: sft/preference/kto JSONL + manifest.json in --out")
    b.add_argument("--out", required=True, help="folder for the files")
    b.add_argument("--name", default="feedback", help="dataset name (versions count up per name)")
    b.add_argument("--dev-share", type=float, default=0.1, help="share of responses in the dev split (stratified)")
    b.add_argument("--replay-share", type=float, default=0.2,
                   help="earlier accepted SFT records mixed in, as a share of the new SFT train records")
    b.add_argument("--replay-all", action="store_true",
                   help="mix in every earlier accepted SFT train record instead of a share")
    b.add_argument("--near-duplicate", type=float, default=0.95, help="MiniLM cosine at which records are duplicates")
    b.add_argument("--template-share", type=float, default=TEMPLATE_SHARE,
                   help="a line found in at least this share of the compared texts is a prompt template's and is "
                        "left out of the near-duplicate comparison (above 1: none)")
    b.add_argument("--no-embed", action="store_true", help="exact duplicates only (no embedding model)")
    b.add_argument("--all", action="store_true", help="every reviewed response, not only those new to this name")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--users", default=None, help="only responses whose user matches this pattern (e.g. 'sim-redteam-*')")
    b.add_argument("--exclude-users", default=None, help="never responses whose user matches this pattern")
    b.add_argument("--balance", action="store_true",
                   help="repeat each label's SFT train records up to the largest label's count (at most 5x)")
    b.add_argument("--repeat", action="append", default=[], metavar="LABEL=K",
                   help="the label's SFT train records enter K times (repeatable; instead of --balance)")
    b.add_argument("--cap", action="append", default=[], metavar="LABEL=N",
                   help="at most N responses of the label (seeded sample; repeatable)")
    b.add_argument("--fixed-mix", default=None,
                   help="a dataset name whose newest version's train records join this build (e.g. the safety mix)")
    b.add_argument("--fixed-mix-share", type=float, default=1.0,
                   help="share of the fixed mix's records taken (seeded; e.g. 0.2 to continue a model that has it)")
    b.add_argument("--seen-by", default=None, metavar="VERSION",
                   help="a registry version to continue (treadle tune --init-adapter): only its training datasets "
                        "count as earlier, so responses it never learned are new and replay comes from what it did")
    sub.add_parser("list", help="every dataset version")
    sh = sub.add_parser("show", help="one version's manifest and sources (NAME, NAME:VERSION or #ID)")
    sh.add_argument("dataset")
    ln = sub.add_parser("lineage", help="the datasets a response or feedback row reached")
    g = ln.add_mutually_exclusive_group(required=True)
    g.add_argument("--response", default=None)
    g.add_argument("--feedback", type=int, default=None)
    for sp in sub.choices.values():
        sp.add_argument("--db", default=None, help="the store URL")


def _seen_by(store: object, version: str | None) -> tuple[int, ...] | None:
    """The training datasets of registry version ``version`` (None without one)."""
    if version is None:
        return None
    from treadle.registry import registry as reg

    try:
        return tuple(reg.get(store, version)["dataset_ids"])
    except reg.RegistryError as e:
        raise ValueError(f"--seen-by: {e}") from None


def _label_ints(pairs: list[str], flag: str) -> dict[str, int] | None:
    """['refuse=150', ...] -> {'refuse': 150}; a malformed pair is an error naming the flag."""
    out = {}
    for pair in pairs:
        label, sep, n = pair.partition("=")
        if not sep or not label or not n.strip().lstrip("-").isdigit():
            raise ValueError(f"{flag} takes LABEL=INTEGER, got {pair!r}")
        out[label] = int(n)
    return out or None


def run(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from treadle.feedback import lineage
    from treadle.feedback.dataset import BuildOptions, build
    from treadle.feedback.errors import FeedbackError
    from treadle.store import open_store
    from treadle.store.models import Dataset

    store = open_store(args.db)
    try:
        if args.dataset_cmd == "build":
            opts = BuildOptions(name=args.name, dev_share=args.dev_share, replay_share=args.replay_share,
                                near_threshold=args.near_duplicate, template_share=args.template_share,
                                embed=not args.no_embed, include_all=args.all,
                                seed=args.seed, users=args.users, exclude_users=args.exclude_users,
                                balance=args.balance, fixed_mix=args.fixed_mix, replay_all=args.replay_all,
                                repeat=_label_ints(args.repeat, "--repeat"), cap=_label_ints(args.cap, "--cap"),
                                fixed_mix_share=args.fixed_mix_share, seen_datasets=_seen_by(store, args.seen_by))
            m = build(store, args.out, opts)
            print(json.dumps({k: m[k] for k in ("name", "version", "content_hash", "sources", "counts", "removed",
                                                 "pii_scrubbed", "replay", "balance", "capped", "fixed_mix")},
                             indent=1))
            return 0
        with store.session() as s:
            if args.dataset_cmd == "list":
                for d in s.execute(select(Dataset).order_by(Dataset.id)).scalars():
                    print(json.dumps({"id": d.id, "name": d.name, "version": d.version, "content_hash": d.content_hash,
                                      "created_at": d.created_at.isoformat() + "Z", "out_dir": d.out_dir,
                                      "counts": d.manifest.get("counts"), "tainted": d.tainted_reason}))
            elif args.dataset_cmd == "show":
                d = lineage.find_dataset(s, args.dataset)
                print(json.dumps({"id": d.id, "manifest": d.manifest, "tainted": d.tainted_reason,
                                  "sources": lineage.dataset_sources(s, d)}, indent=1))
            elif args.response:
                print(json.dumps(lineage.datasets_of_response(s, args.response), indent=1))
            else:
                print(json.dumps(lineage.datasets_of_feedback(s, args.feedback), indent=1))
        return 0
    except FeedbackError as e:
        print(f"treadle dataset: error: {e.message}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"treadle dataset: error: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
