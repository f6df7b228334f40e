"""``treadle report RESULTS.json... --out DIR``: Markdown + self-contained HTML report with plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", help="Treadle result JSON files or folders of them")
    p.add_argument("--out", required=True, help="folder for REPORT.md, report.html and the PNG figures")
    p.add_argument("--title", default="Treadle performance report")


def run(args: argparse.Namespace) -> int:
    from treadle.report.build import build
    from treadle.report.loading import load_results
    from treadle.report.render import write_report

    res = load_results(args.results)
    paths = write_report(build(res, args.title), Path(args.out), args.title)
    for s in res.skipped:
        print(f"[report] skipped {s}", file=sys.stderr)
    print(f"[report] wrote {paths['markdown']} and {paths['html']} ({len(paths) - 2} figures)", file=sys.stderr)
    return 0
