"""``treadle review list|show|approve|correct|reject|label|scan|withdraw``: the review queue from the command line.

The CLI works on the store directly (``--db``), acting as ``--as NAME`` (default: $USER) with the reviewer
role (``--admin``: the admin role, which may re-decide a decided item). Every action is stored like one
from the page. ``withdraw`` (admin: whoever can open the store) takes back a reviewer's actions, see
:mod:`treadle.feedback.withdraw`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

NAME = "review"
HELP = "expert review queue: list, show, approve, correct, reject, label, scan (classifier rule), withdraw"


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="review_cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", default=None, help="the store URL (default: $TREADLE_DB or ~/.cache/treadle/treadle.db)")
        sp.add_argument("--json", action="store_true", help="print JSON")

    def actor(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("item_id", type=int)
        sp.add_argument("--as", dest="who", default=None, help="reviewer name (default: $USER)")
        sp.add_argument("--admin", action="store_true", help="act with the admin role")
        sp.add_argument("--label", default=None, help="also set the item's label (e.g. the intent)")
        common(sp)

    ls = sub.add_parser("list", help="open items (or --status S)")
    ls.add_argument("--status", default=None, choices=["pending", "adjudication", "approved", "corrected", "rejected"])
    ls.add_argument("--reviewer", default=None, help="only items this reviewer has not decided")
    ls.add_argument("--limit", type=int, default=50)
    common(ls)
    sh = sub.add_parser("show", help="one item: conversation, feedback, reviews")
    sh.add_argument("item_id", type=int)
    common(sh)
    actor(sub.add_parser("approve", help="the reply is good"))
    c = sub.add_parser("correct", help="replace the reply")
    actor(c)
    c.add_argument("--reply", default=None, help="the corrected reply (or --reply-file)")
    c.add_argument("--reply-file", default=None)
    r = sub.add_parser("reject", help="unsafe, off_topic, wrong or other")
    actor(r)
    r.add_argument("--reason", required=True)
    lab = sub.add_parser("label", help="set the item's label without deciding")
    actor(lab)
    sc = sub.add_parser("scan", help="queue what the safety and coherence checks flag in a sample of traffic")
    sc.add_argument("--sample", type=int, default=200)
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--reviews-per-item", type=int, default=1)
    common(sc)
    wd = sub.add_parser("withdraw", help="take back a reviewer's actions (all, in a time window, or one label's); "
                        "their items are decided again from the remaining reviews")
    wd.add_argument("--reviewer", required=True, help="whose actions")
    wd.add_argument("--reason", required=True, help="why (stored with every withdrawn action)")
    wd.add_argument("--since", default=None, help="only actions made at or after this time (ISO 8601, UTC)")
    wd.add_argument("--until", default=None, help="only actions made before this time (ISO 8601, UTC)")
    wd.add_argument("--label", default=None, help="only actions that set this label")
    wd.add_argument("--as", dest="who", default=None, help="the admin's name for the record (default: $USER)")
    wd.add_argument("--dry-run", action="store_true", help="count what would change; change nothing")
    common(wd)


def run(args: argparse.Namespace) -> int:
    from treadle.feedback import review
    from treadle.feedback.errors import FeedbackError
    from treadle.feedback.roles import Principal
    from treadle.store import open_store

    store = open_store(args.db)
    cmd = args.review_cmd
    try:
        if cmd == "scan":
            from treadle.feedback.scan import scan

            res = scan(store, args.sample, args.seed, args.reviews_per_item)
            print(json.dumps({"checked": res.checked, "flagged": res.flagged, "queued": res.queued}))
            return 0
        with store.session() as s:
            if cmd == "withdraw":
                from treadle.feedback.withdraw import parse_time, withdraw

                res = withdraw(s, Principal(args.who or getpass.getuser(), "admin"), args.reviewer, args.reason,
                               parse_time(args.since, "since"), parse_time(args.until, "until"), args.label,
                               dry_run=args.dry_run)
                out = res.json()
                if not args.json:
                    out.pop("item_ids")
                print(json.dumps(out, indent=1 if args.json else None))
                return 0
            if cmd == "list":
                items = review.queue(s, reviewer=args.reviewer, status=args.status, limit=args.limit)
                rows = [review.item_json(s, i) for i in items]
                if args.json:
                    print(json.dumps({"progress": review.progress(s), "items": rows}, indent=1))
                else:
                    print(f"{'id':>6}  {'status':<12} {'reasons':<28} reply")
                    for it in rows:
                        reply = ((it["interaction"] or {}).get("output") or "").replace("\n", " ")[:60]
                        print(f"{it['id']:>6}  {it['status']:<12} {','.join(it['reasons']):<28} {reply}")
                    print(json.dumps(review.progress(s)))
                return 0
            if cmd == "show":
                print(json.dumps(review.item_json(s, review.get_item(s, args.item_id)), indent=1))
                return 0
            who = Principal(args.who or getpass.getuser(), "admin" if args.admin else "reviewer")
            action = {"approve": "approve", "correct": "correct", "reject": "reject", "label": "label"}[cmd]
            reply = getattr(args, "reply", None)
            if getattr(args, "reply_file", None):
                reply = open(args.reply_file, encoding="utf-8").read()
            item = review.act(s, args.item_id, who, action, reply=reply, reason=getattr(args, "reason", None),
                              label=args.label)
            out = review.item_json(s, item)
        print(json.dumps(out, indent=1) if args.json else f"item {out['id']}: {out['status']}"
              + (f" (label {out['final_label']})" if out["final_label"] else ""))
        return 0
    except FeedbackError as e:
        print(f"treadle review: error ({e.status}): {e.message}", file=sys.stderr)
        return 2
    finally:
        store.close()
