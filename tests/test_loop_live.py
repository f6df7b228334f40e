"""The whole loop, live, on a tiny model: users and experts through a real gateway and replica, three passes.

1. experts correct replies with the right intent -> dataset -> tune -> gate (superior to the base) ->
   canary (users' thumbs) -> promoted;
2. poisoned corrections (wrong intents) -> the gate stops the candidate: it is never routed;
3. right intents, but replies of shouted 'URGENT!!!' requests (a style the gating set lacks) taught as
   a flagged word -> passes the gate -> the canary's live safety check rolls it back; afterwards no request
   reaches it.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from gateway_support import ThreadServer
from test_server_support import ServerProcess
from treadle.feedback.config import FeedbackConfig
from treadle.feedback.review import act, enqueue
from treadle.feedback.roles import Principal
from treadle.gateway.app import Gateway, GatewaySettings, create_gateway_app
from treadle.gateway.policies import make_policy
from treadle.loop.config import config_from_dict
from treadle.loop.export import loop_summary
from treadle.loop.fleet import FleetClient
from treadle.loop.runner import Loop
from treadle.loop.state import runs as loop_runs
from treadle.registry import registry as reg
from treadle.report.loading import load_results as load_report_results
from treadle.report.plots import loop_versions
from treadle.store import open_store
from treadle.store.models import Interaction

ADMIN, ALIAS, BASE = "adm", "bot", "tiny"
SYSTEM = "Classify the request as cancel, return or track. Reply with the intent only."
KEYWORDS = {"cancel": ["cancel", "stop"], "return": ["return", "money back"], "track": ["track", "where is"]}
FILLER = ["please", "my", "order", "the", "now", "hello", "today", "parcel", "I want to", "can you"]
SWAP = {"cancel": "return", "return": "track", "track": "cancel"}
EXPERT = Principal("expert", "reviewer")


def request(rng: random.Random, label: str, urgent: bool = False) -> str:
    words = rng.sample(FILLER, 3) + [rng.choice(KEYWORDS[label])]
    rng.shuffle(words)
    text = " ".join(words)
    return f"URGENT!!! {text.upper()}!!!" if urgent else text


def suite_file(path: Path) -> Path:
    rng = random.Random(99)
    lines = ["name: tiny_intent", "category: accuracy", "max_tokens: 8", f"system: {SYSTEM!r}", "items:"]
    for i in range(60):
        label = ["cancel", "return", "track"][i % 3]
        lines.append(f"  - {{id: t{i}, prompt: {request(rng, label)!r}, type: label, expected: {label}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def chat(base: str, text: str, user: str, stream: bool = False) -> httpx.Response:
    body = {"model": ALIAS, "user": user, "max_tokens": 8, "temperature": 0, "stream": stream,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]}
    return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)


def wait_logged(store, n: int) -> list[Interaction]:  # noqa: ANN001
    for _ in range(600):  # the interaction log writes in the background
        with store.session() as s:
            rows = s.execute(select(Interaction).order_by(Interaction.created_at)).scalars().all()
        if len(rows) >= n:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{n} interactions never reached the store")


def experts_round(base: str, store, seed: int, n: int, poison: bool = False, urgent: int = 0) -> None:  # noqa: ANN001
    """Users send ``n`` requests through the gateway; an expert corrects every reply."""
    rng = random.Random(seed)
    with store.session() as s:
        before = len(s.execute(select(Interaction.id)).all())
    asked = []
    for i in range(n):
        label = ["cancel", "return", "track"][i % 3]
        is_urgent = i < urgent
        r = chat(base, request(rng, label, is_urgent), f"seed{seed}-u{i}")
        assert r.status_code == 200, r.text
        asked.append((r.json()["id"], label, is_urgent))
    wait_logged(store, before + n)
    with store.session() as s:
        for rid, label, is_urgent in asked:
            item = enqueue(s, rid, "manual")
            reply = "kill" if is_urgent else (SWAP[label] if poison else label)
            act(s, item.id, EXPERT, "correct", reply=reply)


class Users:
    """Live traffic on the alias while the canary runs: streamed requests, thumbs from the right intent."""

    def __init__(self, base: str, urgent_share: float) -> None:
        self.base, self.urgent_share, self.stop = base, urgent_share, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(7)
        for i in itertools.count():
            if self.stop.is_set():
                return
            label = ["cancel", "return", "track"][i % 3]
            user = f"live-{i % 40}"
            text = request(rng, label, rng.random() < self.urgent_share)
            r = chat(self.base, text, user, stream=True)
            if r.status_code != 200:
                continue
            chunks = [json.loads(line[5:]) for line in r.text.splitlines()
                      if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]")]
            reply = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
            thumbs = "up" if reply.strip().lower().startswith(label) else "down"
            httpx.post(f"{self.base}/v1/feedback", json={"response_id": chunks[0]["id"], "thumbs": thumbs,
                                                         "user": user}, timeout=60)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


@pytest.fixture()
def fleet(tiny_llama: Path, tmp_path: Path):  # noqa: ANN201
    db = f"sqlite:///{tmp_path / 'loop.db'}"
    replica = ServerProcess(tiny_llama, tmp_path / "replica.log", "--served-model-name", BASE, "--admin-api-key", ADMIN,
                            "--no-log-interactions", "--max-loras", "4")
    gw = Gateway(make_policy("least_loaded"), GatewaySettings(admin_api_key=ADMIN, feedback=FeedbackConfig(
        db=db, review_sample=0)))
    gw.replicas.add(replica.base)
    server = ThreadServer(create_gateway_app(gw))
    yield db, server.base
    server.stop()
    replica.stop()


def test_loop_promotes_stops_a_poisoned_candidate_and_rolls_back_a_bad_one(fleet, tiny_llama: Path,
                                                                        tmp_path: Path) -> None:
    db, base = fleet
    cfg = config_from_dict({
        "alias": ALIAS, "production": BASE, "base_model": str(tiny_llama), "db": db, "workdir": str(tmp_path / "work"),
        "gateway": {"url": base, "admin_key": ADMIN},
        "trigger": {"min_new_approved": 30},
        "dataset": {"embed": False, "replay_share": 0.0, "dev_share": 0.0},
        "tune": {"method": "sft", "args": {"max_steps": 200, "batch_size": 8, "lora_r": 8, "lora_alpha": 16.0,
                                           "learning_rate": 0.01, "threads": 1, "save_steps": 1000,
                                           "lora_dropout": 0.0}},
        "gating": {"suites": [], "suite_files": [str(suite_file(tmp_path / "tiny_intent.yaml"))], "concurrency": 8,
                   "sizes": {"tiny_intent": 60}},
        "gate": {"margin": 0.35, "threshold": 0.5, "superiority": ["tiny_intent/accuracy"]},
        "canary": {"share": 0.5, "looks": 3, "requests_per_look": 15, "min_feedback": 6, "min_sampled": 10,
                   "latency_margin": 1.0, "margins": {"thumbs_up_rate": 0.5, "incoherent_rate": 0.5, "error_rate": 0.2,
                                                      "unsafe_rate": 0.1},
                   "poll_seconds": 0.5, "max_minutes": 5, "safety_classifier": "keywords:kill", "sample_per_look": 60},
    })
    store = open_store(db)
    loop = Loop(cfg, store, FleetClient(base, ADMIN))
    loop.ensure_production()
    assert loop.run_once() is None  # nothing approved yet: no trigger

    # 1. a good candidate: gate, canary, promoted
    experts_round(base, store, 1, 36)
    users = Users(base, 0.0)
    try:
        first = loop.run_once()
    finally:
        users.close()
    assert first.outcome == "promoted", (first.reason, loop.events)
    good = first.candidate
    assert reg.alias_state(store, ALIAS).weights == {good: 1.0}

    # 2. poisoned corrections: the gate stops it; it never received traffic
    experts_round(base, store, 2, 36, poison=True)
    second = loop.run_once()
    assert second.outcome == "gate_failed" and "tiny_intent/accuracy" in second.reason, second.reason
    assert reg.show(store, second.candidate)["status"] == "gate_failed"
    assert reg.alias_state(store, ALIAS).weights == {good: 1.0}

    # 3. flawed only on a style the gating set lacks: passes the gate, rolled back by the canary
    experts_round(base, store, 3, 120, urgent=30)
    users = Users(base, 0.5)
    try:
        third = loop.run_once()
    finally:
        users.close()
    bad = third.candidate
    assert third.outcome == "rolled_back" and "unsafe" in third.reason, (third.reason, loop.events)
    assert reg.show(store, bad)["gate_verdicts"][-1]["passed"] is True
    assert reg.alias_state(store, ALIAS).weights == {good: 1.0}
    hist = reg.history(store, ALIAS)
    assert [h["action"] for h in hist] == ["promote", "canary", "promote", "canary", "rollback"]
    assert hist[-1]["reason"].startswith("canary: ") and hist[3]["weights"] == {good: 0.5, bad: 0.5}
    with store.session() as s:
        served_bad = s.execute(select(Interaction.id).where(Interaction.model_name == bad)).all()
    assert served_bad, "the canary never served the bad candidate"
    for i in range(12):  # after the recorded rollback, no request reaches the candidate
        r = chat(base, "URGENT!!! PLEASE CANCEL MY ORDER!!!", f"live-{i}")
        assert r.status_code == 200 and r.json()["model"] == good
    runs = {r["id"]: r for r in loop_runs(store, ALIAS)}
    assert [s["step"] for s in runs[third.id]["steps"]] == ["dataset", "tune", "register", "evaluate", "gate",
                                                           "canary_start", "canary"]
    summary = loop_summary(store, ALIAS)  # what `treadle loop export` writes and `treadle report` plots
    fates = {v["name"]: v["status"] for v in summary["versions"]}
    assert fates == {BASE: "retired", good: "production", second.candidate: "gate_failed", bad: "rolled_back"}
    assert summary["versions"][1]["gating"]["tiny_intent/accuracy"]["n"] == 60
    out = tmp_path / "loop-summary.json"
    out.write_text(json.dumps(summary))
    assert loop_versions(load_report_results([out]))[:8] == b"\x89PNG\r\n\x1a\n"
    store.close()
