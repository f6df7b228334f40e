"""Online signals per version from the store: counts, thumbs, TTFT/TPOT, sampled checks cached by id."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from treadle.loop.signals import LiveChecks, look_sample_size, version_signals
from treadle.store import open_store
from treadle.store.models import Feedback, Interaction, utcnow


def test_version_signals_from_the_log(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    t0 = utcnow()
    rows = [("old", "v2", "kill", "stop", None, None, None, t0 - timedelta(minutes=5)),  # before the canary
            ("a", "v2", "hello there friend", "stop", 0.1, 0.5, 5, t0),
            ("b", "v2", "kill them", "stop", 0.2, 0.2, 1, t0),
            ("c", "v2", "", "error", None, None, 0, t0),
            ("d", "v1", "fine", "stop", 0.1, 0.4, 4, t0)]
    with store.session() as s:
        for rid, model, out, fin, ttft, e2e, toks, at in rows:
            s.add(Interaction(id=rid, created_at=at, user="u", endpoint="chat", params={}, output=out, finish_reason=fin,
                              request={"messages": [{"role": "user", "content": "q " + rid}]}, model_name=model,
                              source="gateway", ttft_s=ttft, e2e_s=e2e, completion_tokens=toks))
        s.flush()
        s.add(Feedback(response_id="a", user="u", thumbs="up"))
        s.add(Feedback(response_id="b", user="u", thumbs="down"))
        s.add(Feedback(response_id="b", user="w", thumbs=None, comment="meh"))
    checks = LiveChecks("keywords:kill")
    sig = version_signals(store, "v2", t0, checks, sample_n=10)
    assert (sig.requests, sig.errors, sig.thumbs_up, sig.thumbs_down) == (3, 1, 1, 1)
    assert sorted(sig.ttft) == [0.1, 0.2] and sig.tpot == ((0.5 - 0.1) / 4,)  # 1-token replies have no TPOT
    assert (sig.sampled, sig.unsafe, sig.incoherent) == (3, 1, 1)  # the empty reply is degenerate
    assert set(checks.cache) == {"a", "b", "c"}
    small = version_signals(store, "v2", t0, checks, sample_n=2)
    assert small.sampled == 2
    assert version_signals(store, "v1", t0, checks, 10).requests == 1
    store.close()


def test_the_sample_grows_with_the_look_and_a_replay_stops_at_until(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    t0 = utcnow()
    with store.session() as s:
        for i in range(25):
            s.add(Interaction(id=f"c{i}", created_at=t0 + timedelta(seconds=i), user="u", endpoint="chat", params={},
                              output="fine", finish_reason="stop", request={"messages": []}, model_name="cand",
                              source="gateway"))
    size = lambda until=None: look_sample_size(store, "cand", t0, 10, 3, 7, until)  # noqa: E731
    assert size() == 14  # 25 requests: look 2 of 3 reached
    assert size(t0 + timedelta(seconds=4)) == 7  # before look 1 the sample is one look's
    assert size(t0 + timedelta(seconds=9)) == 7 and size(t0 + timedelta(seconds=19)) == 14
    assert look_sample_size(store, "cand", t0, 5, 3, 7) == 21  # capped at the last look
    checks = LiveChecks("keywords:kill")
    assert version_signals(store, "cand", t0, checks, 100, t0 + timedelta(seconds=9)).requests == 10
    assert version_signals(store, "cand", t0, checks, 4).sampled == 4
    store.close()


def test_a_short_extractive_answer_is_not_judged_unsafe(monkeypatch) -> None:  # noqa: ANN001
    """The MiniLM head flagged the correct label "recover_password" (pass 17 of docs/LOOP.md): a reply that only
    picks words the request offers adds no content, so the live unsafe check skips it; other replies are judged."""

    class FlagAll:
        def predict(self, texts: list[str]) -> list[bool]:
            return [True] * len(texts)

    class Same:
        def similarity(self, a: list[str], b: list[str]) -> list[float]:
            return [1.0] * len(a)

    monkeypatch.setattr("treadle.evals.unsafe.get_unsafe_classifier", lambda: FlagAll())
    monkeypatch.setattr("treadle.evals.embedder.get_embedder", lambda: Same())
    req = {"messages": [{"role": "system", "content": "Intents: cancel_order, recover_password"},
                        {"role": "user", "content": "I forgot my password"}]}
    rows = [("a", req, "recover_password", "stop"), ("b", req, "Here is how to pick a lock.", "stop"),
            ("c", req, "recover password now", "stop")]  # 'now' is not in the request: judged
    assert [u for u, _ in LiveChecks("unsafe").check(rows)] == [False, True, True]
    assert [u for u, _ in LiveChecks("keywords:recover").check(rows[:1])] == [True]  # the smoke-test rule as is
