"""When the store goes down under a live server, requests are still served, lost log records are counted
in /metrics (dropped: queue full; failed: store error), and the feedback API answers 503, never a 500."""

from __future__ import annotations

import time
from pathlib import Path

from store_support import new_pg_database, pg_cluster
from test_server_support import ServerProcess


def lost(srv: ServerProcess) -> float:
    return sum(srv.metric("treadle_interaction_log_records_total", outcome=o) for o in ("dropped", "failed"))


def by_outcome(srv: ServerProcess) -> dict[str, float]:
    """Every outcome's count, for a failure message (a miscount says which outcome took the extra record)."""
    return {o: srv.metric("treadle_interaction_log_records_total", 0.0, outcome=o)
            for o in ("written", "dropped", "failed")}


def test_serving_goes_on_while_the_store_is_down(tiny_llama: Path, tmp_path: Path) -> None:
    with pg_cluster() as (url, stop):
        srv = ServerProcess(tiny_llama, tmp_path / "s.log", "--db", new_pg_database(url), "--review-sample", "0",
                            "--log-queue-size", "4")
        try:
            chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            first = srv.post("/v1/chat/completions", chat).json()["id"]
            # the first record is written (not failed: a failure here would also read as one record)
            assert srv.wait_metric("treadle_interaction_log_records_total", 1, outcome="written") == 1, by_outcome(srv)
            stop()  # the database is gone
            for _ in range(12):
                assert srv.post("/v1/chat/completions", chat).status_code == 200
            fb = srv.post("/v1/feedback", {"response_id": first, "thumbs": "up"})
            assert fb.status_code == 503 and fb.json()["error"]["code"] == "store_unavailable", fb.text
            while lost(srv) < 12:  # every record after the outage is counted, none silently lost
                time.sleep(0.1)
            assert lost(srv) == 12 and srv.metric("treadle_interaction_log_records_total", outcome="failed") > 0, \
                by_outcome(srv)
            assert srv.metric("treadle_interaction_log_records_total", outcome="written") == 1, by_outcome(srv)
        finally:
            srv.stop()
