"""The interaction log writer: a bounded queue and one background thread; the request path never waits.

``submit`` puts a record on the queue (``put_nowait``) or, when the queue is full, drops it and counts
it. The writer thread takes up to ``batch_size`` records at a time and inserts them in one transaction
(one ``executemany``); a failed batch (store down, disk full) is counted as failed and the writer backs
off (``retry_s``) while new records keep queueing, then dropping. After each batch a ``review_share`` of
the new records is put on the review queue (the random-sample rule). Counters: ``written``, ``dropped``,
``failed`` (exported by :mod:`treadle.feedback.metrics`).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from treadle.feedback.records import InteractionRecord
from treadle.store import Store
from treadle.store.models import Interaction

log = logging.getLogger("treadle.feedback")
_STOP = object()


class InteractionLog:
    def __init__(self, store: Store, max_queue: int = 10000, batch_size: int = 256, review_share: float = 0.0,
                 retry_s: float = 1.0, seed: int | None = None, reviews_per_item: int = 1) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if not 0.0 <= review_share <= 1.0:
            raise ValueError(f"review_share must be within [0, 1], got {review_share}")
        self.store, self.batch_size, self.review_share, self.retry_s = store, batch_size, review_share, retry_s
        self.reviews_per_item = reviews_per_item
        self.q: queue.Queue = queue.Queue(maxsize=max_queue)
        self.written = self.dropped = self.failed = 0
        self._rng = random.Random(seed)
        self._thread = threading.Thread(target=self._run, name="treadle-interaction-log", daemon=True)
        self._thread.start()

    def submit(self, record: InteractionRecord) -> bool:
        """Queue ``record`` for writing; False (and counted as dropped) when the queue is full."""
        try:
            self.q.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    @property
    def pending(self) -> int:
        return self.q.qsize()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued record has been written or failed; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.q.unfinished_tasks

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout``), then stop the thread."""
        self.flush(timeout)
        try:
            self.q.put(_STOP, timeout=1.0)
        except queue.Full:
            pass
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while True:
            first = self.q.get()
            if first is _STOP:
                self.q.task_done()
                return
            batch = [first]
            stop = False
            while len(batch) < self.batch_size:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self.q.task_done()
                    stop = True
                    break
                batch.append(item)
            try:
                self._write(batch)
                self.written += len(batch)
            except Exception as e:  # noqa: BLE001 - the store is slow or down: count, back off, go on
                self.failed += len(batch)
                log.warning("interaction log: %d record(s) not written: %r", len(batch), e)
                time.sleep(self.retry_s)
            finally:
                for _ in batch:
                    self.q.task_done()
            if stop:
                return

    def _write(self, batch: list[InteractionRecord]) -> None:
        rows = [r.row() for r in batch]
        try:
            with self.store.session() as s:
                s.execute(insert(Interaction), rows)
        except IntegrityError:  # a repeated id: write the others one by one
            for row in rows:
                try:
                    with self.store.session() as s:
                        s.execute(insert(Interaction), [row])
                except IntegrityError:
                    log.warning("interaction log: response id %s already recorded", row["id"])
        if self.review_share > 0:
            picked = [r.id for r in batch if self._rng.random() < self.review_share]
            if picked:
                from treadle.feedback.review import enqueue

                try:  # the rows are written: a failure here only loses the random sample
                    with self.store.session() as s:
                        for rid in picked:
                            enqueue(s, rid, "random", self.reviews_per_item)
                except Exception as e:  # noqa: BLE001
                    log.warning("interaction log: random review sample not queued: %r", e)
