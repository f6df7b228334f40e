"""Prometheus series of the feedback side (names in docs/FEEDBACK.md), added to the server's or gateway's
registry:

- ``treadle_interaction_log_records{outcome}``: written, dropped (queue full), failed (store error);
  ``treadle_interaction_log_queue``: records waiting for the writer;
- ``treadle_feedback{model_name, model_version, thumbs}``: current feedback rows (up, down, none) per
  model version, and ``treadle_feedback_thumbs_up_rate{model_name, model_version}`` = up / (up + down).
  Read from the store at scrape time, at most once per ``ttl_s`` (the canary reads them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from treadle.feedback.log import InteractionLog
from treadle.store import Store
from treadle.store.models import Feedback, Interaction

log = logging.getLogger("treadle.feedback")


def feedback_counts(store: Store) -> dict[tuple[str, str, str], int]:
    """(model_name, model_version or '', thumbs or 'none') -> feedback rows."""
    with store.session() as s:
        rows = s.execute(select(Interaction.model_name, Interaction.model_version, Feedback.thumbs, func.count())
                         .join(Interaction, Interaction.id == Feedback.response_id)
                         .group_by(Interaction.model_name, Interaction.model_version, Feedback.thumbs)).all()
    return {(m, v or "", t or "none"): int(n) for m, v, t, n in rows}


class FeedbackCollector(Collector):
    def __init__(self, store: Store, interaction_log: InteractionLog | None, ttl_s: float = 2.0) -> None:
        self.store, self.log, self.ttl_s = store, interaction_log, ttl_s
        self._cache: dict[tuple[str, str, str], int] = {}
        self._at = -1e9

    def _counts(self) -> dict[tuple[str, str, str], int]:
        if time.monotonic() - self._at >= self.ttl_s:
            try:
                self._cache = feedback_counts(self.store)
            except Exception as e:  # noqa: BLE001 - the store is down: serve the last figures
                log.warning("feedback metrics: %r", e)
            self._at = time.monotonic()
        return self._cache

    def collect(self) -> Iterator:
        if self.log is not None:
            c = CounterMetricFamily("treadle_interaction_log_records", "Interaction records by outcome: written, "
                                    "dropped (queue full) or failed (store error).", labels=["outcome"])
            for outcome in ("written", "dropped", "failed"):
                c.add_metric([outcome], float(getattr(self.log, outcome)))
            yield c
            g = GaugeMetricFamily("treadle_interaction_log_queue", "Interaction records waiting to be written.")
            g.add_metric([], float(self.log.pending))
            yield g
        counts = self._counts()
        fam = GaugeMetricFamily("treadle_feedback", "Feedback rows per model version and thumbs (up, down, none).",
                                labels=["model_name", "model_version", "thumbs"])
        rate = GaugeMetricFamily("treadle_feedback_thumbs_up_rate", "Thumbs up / (up + down) per model version.",
                                 labels=["model_name", "model_version"])
        per: dict[tuple[str, str], list[int]] = {}
        for (m, v, t), n in sorted(counts.items()):
            fam.add_metric([m, v, t], float(n))
            ud = per.setdefault((m, v), [0, 0])
            ud[0 if t == "up" else 1] += n if t in ("up", "down") else 0
        for (m, v), (up, down) in per.items():
            if up + down:
                rate.add_metric([m, v], up / (up + down))
        yield fam
        yield rate
