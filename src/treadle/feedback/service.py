"""What one server or gateway process holds for feedback: the store, the interaction log, the key ring;
and the hooks the server and the gateway call (kept here so their own files change by a few lines).

- ``FeedbackService.open(config, api_key=...)`` opens (and migrates) the store and starts the log writer;
- ``install(app, registry)`` adds ``POST /v1/feedback``, the review page and API, and the metrics;
- ``record_server(...)`` / ``record_gateway(...)`` build a record and queue it (never blocking);
- ``close()`` writes what is queued and stops the writer.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from treadle.feedback.config import FeedbackConfig
from treadle.feedback.log import InteractionLog
from treadle.feedback.records import from_response
from treadle.feedback.roles import ANONYMOUS, KeyRing, Principal
from treadle.store import Store, open_store

log = logging.getLogger("treadle.feedback")


class FeedbackService:
    def __init__(self, config: FeedbackConfig, store: Store, keys: KeyRing, interaction_log: InteractionLog | None,
                 source: str) -> None:
        self.config, self.store, self.keys, self.log, self.source = config, store, keys, interaction_log, source

    @classmethod
    def open(cls, config: FeedbackConfig, api_key: str | None = None, admin_key: str | None = None,
             source: str = "serve") -> FeedbackService:
        store = open_store(config.db)
        keys = KeyRing(store, config.keys_file, api_key=api_key, admin_key=admin_key)
        ilog = None
        if config.log_interactions:
            ilog = InteractionLog(store, config.log_queue_size, review_share=config.review_sample,
                                  reviews_per_item=config.reviews_per_item)
        log.info("feedback store %s (interaction log %s)", store.url, "on" if ilog else "off")
        return cls(config, store, keys, ilog, source)

    def install(self, app: Any, registry: Any) -> None:
        from treadle.feedback.api import add_routes
        from treadle.feedback.metrics import FeedbackCollector

        add_routes(app, self)
        registry.register(FeedbackCollector(self.store, self.log))

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        self.store.close()

    def flush_log(self) -> None:
        if self.log is not None:
            self.log.flush(5.0)

    @staticmethod
    def principal(request: Any) -> Principal:
        return getattr(request.state, "principal", None) or ANONYMOUS

    @staticmethod
    def key_user(request: Any) -> str | None:
        p = getattr(request.state, "principal", None)
        return None if p is None or p is ANONYMOUS else p.user

    def record_server(self, request: Any, body: Any, col: Any, stream: bool) -> None:
        """Queue the interaction of one server request (``body``: the pydantic request, ``col``: its Collector)."""
        if self.log is None:
            return
        try:
            finals = [col.final[i] for i in sorted(col.final)]
            if not finals:
                return
            response = {"id": col.rid, "model": col.model, "usage": col.usage(),
                        "choices": [{"index": i, "text": "" if col.prep.drop_output else co.text,
                                     "finish_reason": col._finish(co)} for i, co in enumerate(finals)]}
            m = finals[0].metrics
            ttft = m.ttft if m is not None else None
            e2e = (m.finished_time - m.arrival_time) if m is not None and m.finished_time else None
            version = getattr(request.state, "model_version", None)  # set by the handler when it knows it
            rec = from_response(body.model_dump(exclude_none=True), response, key_user=self.key_user(request),
                                source="serve", stream=stream, ttft_s=ttft, e2e_s=e2e, model_version=version)
            if rec is not None:
                self.log.submit(rec)
        except Exception:  # noqa: BLE001 - logging must never break serving
            log.exception("interaction record failed")

    def record_gateway(self, request: Any, body: dict, response: dict, stream: bool, replica: str | None,
                       t0: float, ttft_s: float | None, cards: list[dict] | None = None) -> None:
        """Queue the interaction of one relayed response (``t0``: the request's monotonic arrival time).

        ``cards`` are the replica's /v1/models cards: the answering model's card gives the record its version.
        """
        if self.log is None:
            return
        try:
            rec = from_response(body, response, key_user=self.key_user(request), source="gateway", stream=stream,
                                replica=replica, ttft_s=ttft_s, e2e_s=time.monotonic() - t0,
                                model_version=version_of(cards or [], response.get("model")))
            if rec is not None:
                self.log.submit(rec)
        except Exception:  # noqa: BLE001 - logging must never break serving
            log.exception("interaction record failed")

    def gateway_record(self, request: Any, body: dict, chat: bool) -> GatewayRecord | None:
        """A recorder for one proxied request (None when the log is off)."""
        return GatewayRecord(self, request, body, chat) if self.log is not None else None


class GatewayRecord:
    """Collects one relayed response (whole JSON, or SSE lines as they pass) and queues its record."""

    def __init__(self, svc: FeedbackService, request: Any, body: dict, chat: bool) -> None:
        from treadle.feedback.records import StreamAccumulator

        self.svc, self.request, self.body, self.chat = svc, request, body, chat
        self.acc = StreamAccumulator()

    def whole(self, content: bytes, replica: str, t0: float, cards: list[dict] | None = None,
              ttft_s: float | None = None) -> None:
        """Record a whole JSON response; ``ttft_s``: from the replica's Server-Timing (``server.timing``)."""
        try:
            response = json.loads(content)
        except ValueError:
            return
        if isinstance(response, dict):
            self.svc.record_gateway(self.request, self.body, response, False, replica, t0, ttft_s, cards)

    def feed(self, line: str) -> None:
        self.acc.feed(line)

    def finish(self, replica: str, t0: float, ttft_s: float | None, cards: list[dict] | None = None) -> None:
        self.svc.record_gateway(self.request, self.body, self.acc.response(self.chat), True, replica, t0, ttft_s,
                                cards)


def version_of(cards: list[dict], model: Any) -> str | None:
    """The model version a replica's /v1/models cards give ``model``: an adapter's content hash, the base
    model's ``base`` (as the replica's own metrics label it), None when the replica does not list it or its
    card says neither (no ``version``, no ``parent`` field)."""
    from treadle.server.metrics import BASE_VERSION

    card = next((c for c in cards if c.get("id") == model), None)
    if card is None:
        return None
    if card.get("version"):
        return str(card["version"])
    return BASE_VERSION if "parent" in card and card["parent"] is None else None  # a root model card
