"""Crash safety: feedback and review calls answer 2xx only after their commit, so every one that got a
2xx before the server was killed with SIGKILL is in the store after a restart."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import select

from test_server_support import ServerProcess
from treadle.store import open_store
from treadle.store.models import Feedback, ReviewAction


def test_acknowledged_writes_survive_sigkill(tiny_llama: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    srv = ServerProcess(tiny_llama, tmp_path / "s1.log", "--db", db, "--review-sample", "0")
    acked_fb: set[str] = set()
    acked_review: set[int] = set()
    lock, kill_now = threading.Lock(), threading.Event()
    try:
        ids = [srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": f"hi {i}"}],
                                                 "max_tokens": 2}).json()["id"] for i in range(40)]
        assert srv.wait_metric("treadle_interaction_log_records_total", 40) == 40  # the log has written them
        for rid in ids[:10]:  # reviewed below, during the crash window
            assert srv.post("/v1/feedback", {"response_id": rid, "thumbs": "down"}).status_code == 200
        items = httpx.get(f"{srv.base}/review/api/queue", timeout=30).json()["items"]
        assert len(items) == 10

        def feedback(rid: str) -> None:
            try:
                r = httpx.post(f"{srv.base}/v1/feedback", json={"response_id": rid, "thumbs": "down",
                                                                "correction": f"fixed {rid}"}, timeout=30)
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                with lock:
                    acked_fb.add(rid)
                    if len(acked_fb) + len(acked_review) >= 12:
                        kill_now.set()

        def review(item: dict) -> None:
            try:
                r = httpx.post(f"{srv.base}/review/api/items/{item['id']}", json={"action": "approve"}, timeout=30)
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                with lock:
                    acked_review.add(item["id"])

        with ThreadPoolExecutor(6) as pool:
            jobs = [pool.submit(feedback, rid) for rid in ids[10:]] + [pool.submit(review, it) for it in items]
            kill_now.wait(timeout=120)
            srv.proc.kill()  # SIGKILL: no drain, no shutdown hooks
            srv.proc.wait(timeout=30)
            for j in jobs:
                j.result()
    finally:
        srv.stop()
    assert len(acked_fb) >= 1, "nothing was acknowledged before the kill"
    srv2 = ServerProcess(tiny_llama, tmp_path / "s2.log", "--db", db, "--review-sample", "0")
    try:
        queue = httpx.get(f"{srv2.base}/review/api/queue", params={"limit": 200}, timeout=30).json()
        open_ids = {i["id"] for i in queue["items"]}
        assert not (open_ids & acked_review)  # approved items are no longer open
    finally:
        srv2.stop()
    store = open_store(db)
    with store.session() as s:
        have = {f.response_id: f for f in s.execute(select(Feedback)).scalars()}
        for rid in acked_fb:
            assert have[rid].correction == f"fixed {rid}"
        approved = set(s.execute(select(ReviewAction.item_id).where(ReviewAction.action == "approve")).scalars())
        assert acked_review <= approved
    store.close()
