"""The feedback side of a live `treadle serve` on SQLite and on PostgreSQL: every response logged (plain and
streamed, with user, model, tokens, latency), POST /v1/feedback with roles, the review API, the metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from test_server_support import ServerProcess
from treadle.server.timing import parse_server_timing
from treadle.store import open_store
from treadle.store.models import Feedback, Interaction, ReviewItem

KEYS = {"keys": [{"key": "k-alice", "user": "alice", "role": "user"}, {"key": "k-bob", "user": "bob"},
                 {"key": "k-rev", "user": "rita", "role": "reviewer"}, {"key": "k-admin", "user": "root", "role": "admin"}]}


def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(KEYS))
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("fb-server")
    if request.param == "sqlite":
        db = f"sqlite:///{tmp / 'fb.db'}"
    else:
        from store_support import new_pg_database

        db = new_pg_database(request.getfixturevalue("postgres_server"))
    srv = ServerProcess(tiny_llama, tmp / "server.log", "--db", db, "--keys-file", str(keys_file(tmp)),
                        "--review-sample", "0", "--served-model-name", "tiny")
    yield srv, db
    srv.stop()


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _chat(srv: ServerProcess, key: str, stream: bool = False, user: str | None = None) -> str:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 6,
            "temperature": 0.0, "stream": stream}
    if user:
        body["user"] = user
    if stream:
        body["stream_options"] = {"include_usage": True}
    r = httpx.post(f"{srv.base}/v1/chat/completions", json=body, headers=_h(key), timeout=30)
    assert r.status_code == 200, r.text
    if not stream:  # a whole response says when its first token was ready (server/timing.py)
        t = parse_server_timing(r.headers.get("server-timing"))
        assert 0 < t["ttft"] <= t["e2e"], r.headers
    if not stream:
        return r.json()["id"]
    lines = [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: ") and ln != "data: [DONE]"]
    return json.loads(lines[0])["id"]


def test_log_feedback_roles_and_metrics(served) -> None:  # noqa: ANN001
    srv, db = served
    assert httpx.post(f"{srv.base}/v1/chat/completions", json={"messages": []}, timeout=30).status_code == 401
    plain = _chat(srv, "k-alice")
    streamed = _chat(srv, "k-alice", stream=True, user="end-user-7")
    bobs = _chat(srv, "k-bob")
    ok = httpx.post(f"{srv.base}/v1/feedback", json={"response_id": plain, "thumbs": "up", "rating": 4},
                    headers=_h("k-alice"), timeout=30)
    assert ok.status_code == 200 and ok.json()["user"] == "alice", ok.text
    down = httpx.post(f"{srv.base}/v1/feedback", headers=_h("k-alice"), timeout=30,
                      json={"response_id": streamed, "thumbs": "down", "correction": "A better reply."})
    assert down.status_code == 200, down.text
    for payload, key, status, param in [({"response_id": bobs, "thumbs": "up"}, "k-alice", 403, None),
                                        ({"response_id": "chatcmpl-nope", "thumbs": "up"}, "k-alice", 404, "response_id"),
                                        ({"response_id": plain, "rating": 9}, "k-alice", 400, "rating"),
                                        ({"response_id": plain, "thumbs": "up"}, "wrong", 401, None)]:
        r = httpx.post(f"{srv.base}/v1/feedback", json=payload, headers=_h(key), timeout=30)
        assert r.status_code == status and r.json()["error"]["param"] == param, r.text
    store = open_store(db)
    with store.session() as s:
        rows = {i.id: i for i in s.execute(select(Interaction)).scalars()}
        assert {plain, streamed, bobs} <= set(rows)
        p, st = rows[plain], rows[streamed]
        assert (p.user, p.key_user, p.model_name, p.endpoint, p.stream) == ("alice", "alice", "tiny", "chat", False)
        assert (st.user, st.key_user, st.stream) == ("end-user-7", "alice", True)
        assert p.request == {"messages": [{"role": "user", "content": "Hello there"}]}
        assert p.params["max_tokens"] == 6 and p.completion_tokens == 6 and p.finish_reason == "length"
        assert p.output and st.output and p.ttft_s is not None and p.e2e_s >= p.ttft_s
        assert s.execute(select(ReviewItem.reasons).where(ReviewItem.response_id == streamed)).scalar() == \
            ["thumbs_down", "correction"]
        assert len(s.execute(select(Feedback)).scalars().all()) == 2
    store.close()
    assert srv.metric("treadle_feedback", model_name="tiny", thumbs="up") == 1
    assert srv.metric("treadle_feedback_thumbs_up_rate", model_name="tiny") == 0.5
    assert srv.metric("treadle_interaction_log_records_total", outcome="written") >= 3
    assert srv.metric("treadle_interaction_log_records_total", outcome="dropped") == 0
    assert 'action="/review/login"' in httpx.get(f"{srv.base}/review", timeout=30).text  # the page's login form
    # the review API: a user key may not, a reviewer key may
    assert httpx.get(f"{srv.base}/review/api/queue", headers=_h("k-alice"), timeout=30).status_code == 403
    q = httpx.get(f"{srv.base}/review/api/queue", headers=_h("k-rev"), timeout=30).json()
    item = next(i for i in q["items"] if i["response_id"] == streamed)
    paged = httpx.get(f"{srv.base}/review/api/queue", params={"offset": 1}, headers=_h("k-rev"), timeout=30).json()
    assert paged["items"] == q["items"][1:]
    bad = httpx.get(f"{srv.base}/review/api/queue", params={"offset": "-2"}, headers=_h("k-rev"), timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "offset", bad.text
    r = httpx.post(f"{srv.base}/review/api/items/{item['id']}", headers=_h("k-rev"), timeout=30,
                   json={"action": "correct", "reply": "A better reply.", "label": "greeting"})
    assert r.status_code == 200 and r.json()["status"] == "corrected", r.text
    again = httpx.post(f"{srv.base}/review/api/items/{item['id']}", headers=_h("k-rev"), json={"action": "approve"},
                       timeout=30)
    assert again.status_code == 409
    # queueing by hand: admin only, all-or-nothing, named errors
    enq = f"{srv.base}/review/api/enqueue"
    assert httpx.post(enq, headers=_h("k-rev"), json={"response_ids": [streamed]}, timeout=30).status_code == 403
    for body, param in [({"response_ids": []}, "response_ids"), ({"response_ids": [streamed], "reason": "x"}, "reason"),
                        ({"response_ids": [streamed], "required_reviews": 0}, "required_reviews"),
                        ({"response_ids": [streamed], "extra": 1}, "extra")]:
        bad = httpx.post(enq, headers=_h("k-admin"), json=body, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param, bad.text
    unknown = httpx.post(enq, headers=_h("k-admin"), json={"response_ids": [streamed, "nope"]}, timeout=30)
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["error"]["message"], unknown.text
    ok = httpx.post(enq, headers=_h("k-admin"), json={"response_ids": [streamed], "reason": "red_team"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["items"][0]["status"] == "corrected", ok.text  # decided stays decided
    assert "red_team" in ok.json()["items"][0]["reasons"]
    # withdrawing a reviewer's actions: admin only, named errors; the item goes back on the queue
    wd = f"{srv.base}/review/api/withdraw"
    assert httpx.post(wd, headers=_h("k-rev"), json={"reviewer": "rita", "reason": "x"}, timeout=30).status_code == 403
    for body, param in [({"reviewer": "rita"}, "reason"), ({"reviewer": "rita", "reason": "x", "since": "soon"}, "since"),
                        ({"reviewer": "rita", "reason": "x", "dry_run": "yes"}, "dry_run"), ({"extra": 1}, "extra")]:
        bad = httpx.post(wd, headers=_h("k-admin"), json=body, timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param, bad.text
    done = httpx.post(wd, headers=_h("k-admin"), json={"reviewer": "rita", "reason": "test"}, timeout=30)
    assert done.status_code == 200 and done.json()["item_ids"] == [item["id"]], done.text
    assert done.json()["status_after"] == {"pending": 1}
    shown = httpx.get(f"{srv.base}/review/api/items/{item['id']}", headers=_h("k-admin"), timeout=30).json()
    assert shown["status"] == "pending" and shown["actions"][0]["withdrawn"]["by"] == "root", shown
    # a key with the admin role passes the adapter admin API's check (no --admin-api-key needed); others do not
    gone = httpx.post(f"{srv.base}/v1/unload_lora_adapter", json={"lora_name": "nope"}, headers=_h("k-admin"),
                      timeout=30)
    assert gone.status_code == 404, gone.text
    denied = httpx.post(f"{srv.base}/v1/unload_lora_adapter", json={"lora_name": "nope"}, headers=_h("k-rev"),
                        timeout=30)
    assert denied.status_code in (401, 403), denied.text

