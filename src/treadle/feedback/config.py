"""Feedback options of ``treadle serve`` and ``treadle gateway`` (a config dataclass; the flags follow it)."""

from __future__ import annotations

import argparse
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
    """Register the FeedbackConfig flags (``--db``, ``--log-interactions/--no-log-interactions``, ...)."""
    from treadle.config_args import add_dataclass_args

    add_dataclass_args(p.add_argument_group("feedback"), FeedbackConfig)


def feedback_config_from_args(args: argparse.Namespace) -> FeedbackConfig:
    from treadle.config_args import dataclass_from_args

    return dataclass_from_args(FeedbackConfig, args)
