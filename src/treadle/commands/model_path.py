"""``treadle model-path``: print (converting on first use) the default model's folder."""

from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-convert", action="store_true", help="only print the path; do not convert")


def run(args: argparse.Namespace) -> int:
    from treadle.models.registry import default_model_path

    print(default_model_path(convert=not args.no_convert))
    return 0
