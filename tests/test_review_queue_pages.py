"""The review queue pages (``offset``), and simulated experts find their items behind a crowded queue."""

from __future__ import annotations

from pathlib import Path

import httpx

from treadle.feedback import review
from treadle.feedback.simulate import SimReport, decide_queue
from treadle.store import open_store
from treadle.store.models import Interaction


def test_queue_offset_pages_by_age(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'q.db'}")
    with store.session() as s:
        for i in range(7):
            s.add(Interaction(id=f"r{i}", user="u", endpoint="chat", params={}, request={}, output="x", source="serve",
                              model_name="m"))
        s.flush()
        ids = [review.enqueue(s, f"r{i}", "manual").id for i in range(7)]
    with store.session() as s:
        pages = [[i.id for i in review.queue(s, reviewer="rev", limit=3, offset=o)] for o in (0, 3, 6, 9)]
    assert pages == [ids[:3], ids[3:6], ids[6:], []]
    store.close()


def test_experts_decide_their_items_behind_500_older_ones() -> None:
    items = [{"id": i, "response_id": f"old-{i}", "reasons": ["thumbs_down"], "status": "pending"} for i in range(500)]
    items += [{"id": 500 + i, "response_id": f"mine-{i}", "reasons": ["thumbs_down"], "status": "pending"}
              for i in range(5)]
    decided: list[int] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "GET":
            limit, offset = int(req.url.params["limit"]), int(req.url.params.get("offset", 0))
            open_items = [i for i in items if i["id"] not in decided]
            return httpx.Response(200, json={"items": open_items[offset:offset + limit]})
        decided.append(int(req.url.path.rsplit("/", 1)[1]))
        return httpx.Response(200, json={})

    rep = SimReport()
    sent = {f"mine-{i}": {} for i in range(5)}
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://test") as client:
        decide_queue(client, None, sent, lambda rid: {"action": "approve", "label": "x"}, rep)
    assert sorted(decided) == [500, 501, 502, 503, 504] and rep.expert_approved == 5  # the old ones stay open
