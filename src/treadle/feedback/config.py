"""Feedback options of ``treadle serve`` and ``treadle gateway`` (a config dataclass; the flags follow it)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeedbackConfig:
    db: str | None = field(default=None, metadata={"help": "the store: sqlite:///PATH or postgresql+psycopg://... "
                                                   "(default: $TREADLE_DB, else ~/.cache/treadle/treadle.db)"})
    log_interactions: bool = field(default=True, metadata={"help": "record every served response in the store"})
    keys_file: str | None = field(default=None, metadata={"help": "API keys with roles (JSON/YAML: "
                                                          "{keys: [{key, user, role}]}); keys in the store count too"})
    review_sample: float = field(default=0.02, metadata={"help": "share of logged responses put on the review "
                                                         "queue at random"})
    reviews_per_item: int = field(default=1, metadata={"help": "independent reviews each review item needs"})
    log_queue_size: int = field(default=10000, metadata={"help": "records the interaction log may hold before "
                                                         "it drops (and counts) new ones"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.review_sample <= 1.0:
            raise ValueError(f"--review-sample must be within [0, 1], got {self.review_sample}")
        if self.reviews_per_item < 1:
            raise ValueError(f"--reviews-per-item must be >= 1, got {self.reviews_per_item}")
        if self.log_queue_size < 1:
            raise ValueError(f"--log-queue-size must be >= 1, got {self.log_queue_size}")


def add_feedback_args(p: argparse.ArgumentParser) -> None:
    """Register the FeedbackConfig flags (by hand until the config-to-argparse helper is in main)."""
    help_of = {f.name: f.metadata["help"] for f in dataclasses.fields(FeedbackConfig)}
    p.add_argument("--db", default=None, help=help_of["db"])
    p.add_argument("--no-log-interactions", dest="log_interactions", action="store_false",
                   help="do not record served responses (the feedback API and /review still work)")
    p.add_argument("--keys-file", default=None, help=help_of["keys_file"])
    p.add_argument("--review-sample", type=float, default=0.02, help=help_of["review_sample"])
    p.add_argument("--reviews-per-item", type=int, default=1, help=help_of["reviews_per_item"])
    p.add_argument("--log-queue-size", type=int, default=10000, help=help_of["log_queue_size"])


def feedback_config_from_args(args: argparse.Namespace) -> FeedbackConfig:
    return FeedbackConfig(db=args.db, log_interactions=args.log_interactions, keys_file=args.keys_file,
                          review_sample=args.review_sample, reviews_per_item=args.reviews_per_item,
                          log_queue_size=args.log_queue_size)
