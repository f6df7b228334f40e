"""Curated datasets: PII rules, duplicate removal, the build (TRL formats, split, manifest, content hash),
replay, lineage both ways and deletion; the store parts run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from feedback_support import record, write
from treadle.feedback import lineage
from treadle.feedback.dataset import BuildOptions, build, split_responses
from treadle.feedback.dedup import keep_mask, template_lines, without_lines
from treadle.feedback.pii import scrub
from treadle.feedback.review import act, enqueue
from treadle.feedback.roles import Principal
from treadle.feedback.submit import submit_feedback
from treadle.store import open_store
from treadle.store.models import Dataset, DatasetItem, Interaction

REV = Principal("rita", "reviewer")


def test_pii_rules() -> None:
    counts: dict[str, int] = {}
    text = ("Mail john.doe@example.com or call +1 415-555-0132 / (212) 555 7890; card 4111 1111 1111 1111; "
            "ship to 221 Baker Street. Order 113542617735902 on 2024-05-06, {{Order Number}}.")
    assert scrub(text, counts) == ("Mail [EMAIL] or call [PHONE] / [PHONE]; card [CARD]; ship to [ADDRESS] "
                                   "Order 113542617735902 on 2024-05-06, {{Order Number}}.")
    assert counts == {"email": 1, "phone": 2, "card": 1, "address": 1}
    assert scrub("4111 1111 1111 1112") == "4111 1111 1111 1112"  # fails the Luhn check


def test_duplicates_exact_and_near() -> None:
    vecs = {"a": [1, 0], "b": [0.999, 0.045], "c": [0, 1]}

    def encode(texts: list[str]) -> np.ndarray:
        v = np.array([vecs[t.strip().lower()] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    keep, exact, near = keep_mask(["a", " A ", "b", "c"], 0.95, encode)
    assert keep == [True, False, False, True] and (exact, near) == (1, 1)


def _bag_of_words(texts: list[str]) -> np.ndarray:
    """A stand-in embedder: word counts hashed into 256 slots (shared words make texts similar)."""
    v = np.zeros((len(texts), 256), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace("?", " ").replace(".", " ").split():
            v[i, sum(map(ord, w)) * 31 % 256] += 1.0
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_near_duplicates_ignore_a_shared_prompt_template() -> None:
    """Different requests in one long template are not near duplicates; a reworded request still is."""
    template = ("Request: {}\n\nWhich intent from the list is this request? Answer with the intent name only "
                "and nothing else please thank you kindly.\n{}")
    requests = ["cancel my order now", "where is my refund", "change shipping address", "delete my account",
                "talk to a human agent", "recover my password", "track package status", "pay with paypal",
                "newsletter unsubscribe request", "file a complaint today", "cancel my order right now"]
    labels = ["cancel_order", "get_refund", "change_address", "delete_account", "contact_human_agent",
              "recover_password", "track_order", "payment_methods", "newsletter", "complaint", "cancel_order"]
    texts = [template.format(r, lab) for r, lab in zip(requests, labels, strict=True)]
    assert template_lines(texts) == {"which intent from the list is this request? answer with the intent name only "
                                     "and nothing else please thank you kindly."}
    assert template_lines(texts[:9]) == set()  # too few texts to call any line a template's
    assert without_lines("only a template line", {"only a template line"}) == "only a template line"
    keep, exact, near = keep_mask(texts, 0.8, _bag_of_words)
    assert keep == [True] * 10 + [False] and (exact, near) == (0, 1)  # only the reworded "cancel my order"
    keep, _, near = keep_mask(texts, 0.8, _bag_of_words, template_share=2.0)  # whole texts: the template wins
    assert near == 10
    with pytest.raises(ValueError, match="template_share must be > 0"):
        BuildOptions(template_share=0.0)


def test_split_is_stratified_and_seeded() -> None:
    strata = {f"r{i}": ("x" if i < 20 else "y") for i in range(30)}
    split = split_responses(strata, 0.2, seed=1)
    assert sum(split[f"r{i}"] == "dev" for i in range(20)) == 4 and sum(split[f"r{i}"] == "dev" for i in range(20, 30)) == 2
    assert split == split_responses(strata, 0.2, seed=1) != split_responses(strata, 0.2, seed=2)


def _reviewed(store, rid: str, request: str, output: str, action: str, user: str = "alice", label: str = "refund",
              **kw: str) -> None:  # noqa: ANN001
    write(store, record(rid, user=user, request=request, output=output))
    with store.session() as s:
        item = enqueue(s, rid, "manual")
        act(s, item.id, REV, action, label=label, **kw)


def test_build_lineage_replay_and_delete(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    _reviewed(store, "a1", "How do I get a refund? I'm john@example.com", "Open Orders, then Refund.", "approve")
    _reviewed(store, "a2", "How do I get a refund? I'm john@example.com", "Open Orders, then Refund.", "approve",
              user="bob")  # exact duplicate of a1
    _reviewed(store, "a3", "Cancel my order please", "No.", "correct", label="cancel",
              reply="Sure: Orders, then Cancel. Call 415-555-0132 if stuck.")
    _reviewed(store, "a4", "Tell me a joke about my bank", "Bad joke.", "reject", label="other", reason="off_topic")
    write(store, record("t1", user="carol", request="Where is my parcel?", output="Track it under Orders."))
    submit_feedback(store, Principal("carol", "user"), {"response_id": "t1", "thumbs": "up"})
    m = build(store, tmp_path / "v1", BuildOptions(name="sup", dev_share=0.0, replay_share=0.5))
    assert m["version"] == 1 and m["sources"] == 5 and m["removed"]["exact_duplicates"] >= 1
    assert m["pii_scrubbed"] == {"email": 2, "phone": 1}  # per source text
    files = {p.name: [json.loads(x) for x in p.read_text().splitlines()] for p in (tmp_path / "v1").glob("*.jsonl")}
    sft, pref, kto = files["sft.jsonl"], files["preference.jsonl"], files["kto.jsonl"]
    assert [r["messages"][-1]["content"] for r in sft] == ["Open Orders, then Refund.",
                                                            "Sure: Orders, then Cancel. Call [PHONE] if stuck."]
    assert pref == [{"prompt": [{"role": "user", "content": "Cancel my order please"}],
                     "chosen": [{"role": "assistant", "content": "Sure: Orders, then Cancel. Call [PHONE] if stuck."}],
                     "rejected": [{"role": "assistant", "content": "No."}]}]
    assert sorted((r["completion"][0]["content"], r["label"]) for r in kto) == sorted([
        ("Open Orders, then Refund.", True), ("No.", False), ("Sure: Orders, then Cancel. Call [PHONE] if stuck.", True),
        ("Bad joke.", False), ("Track it under Orders.", True)])
    assert "@" not in (tmp_path / "v1" / "sft.jsonl").read_text()
    manifest = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    assert len(manifest["items"]) == sum(len(v) for v in files.values()) and manifest["content_hash"] == m["content_hash"]
    assert {i["response_id"] for i in manifest["items"]} == {"a1", "a3", "a4", "t1"}
    with store.session() as s:
        ds = lineage.find_dataset(s, "sup:1")
        srcs = lineage.dataset_sources(s, ds)
        assert {x["response_id"] for x in srcs} == {"a1", "a3", "a4", "t1"}
        assert all(x["review_actions"] for x in srcs if x["response_id"] != "t1")
        fb_id = next(x["feedback"][0]["id"] for x in srcs if x["response_id"] == "t1")
        assert [d["dataset"] for d in lineage.datasets_of_feedback(s, fb_id)] == ["sup"]
    # version 2: only new items, plus a replay share of v1's SFT train records
    _reviewed(store, "b1", "Change my shipping address", "Go to Profile, then Addresses.", "approve", label="address")
    _reviewed(store, "b2", "Reset my password", "Use Forgot password on the sign-in page.", "approve", label="password")
    m2 = build(store, tmp_path / "v2", BuildOptions(name="sup", dev_share=0.0, replay_share=0.5))
    assert m2["version"] == 2 and m2["sources"] == 3 and m2["removed"]["exact_duplicates"] == 2 and m2["replay"] == {"count": 1, "from_versions": [1]}
    replayed = next(i for i in m2["items"] if i["replay_of"] is not None)
    assert replayed["response_id"] in {"a1", "a3"} and m2["content_hash"] != m["content_hash"]
    from treadle.registry import registry
    from treadle.registry.models import ModelVersion, VersionEvent

    with store.session() as s:
        ds_ids = {d.version: d.id for d in s.execute(select(Dataset)).scalars()}
    registry.register(store, "sup-v1", "adapter", "base", dataset_ids=[ds_ids[1]])
    registry.register(store, "sup-other", "adapter", "base", dataset_ids=[])
    with store.session() as s:
        reached = lineage.datasets_of_response(s, replayed["response_id"])
        assert {(d["version"], d["replay_of"] is not None) for d in reached} == {(1, False), (2, True)}
        out = lineage.delete_user(s, "alice")
    assert out["interactions"] == 5 and out["datasets_marked"] == ["sup:1", "sup:2"]
    assert out["versions_marked"] == ["sup-v1"]  # the adapter trained on a marked dataset, no other
    with store.session() as s:
        v = s.execute(select(ModelVersion).where(ModelVersion.name == "sup-v1")).scalar_one()
        ev = s.execute(select(VersionEvent).where(VersionEvent.version_id == v.id,
                                                  VersionEvent.kind == "data_deleted")).scalar_one()
        assert ev.detail == {"datasets": [ds_ids[1]]} and "alice" not in str(ev.detail) and "retrain" in v.notes
    with store.session() as s:
        assert {i.id for i in s.execute(select(Interaction)).scalars()} == {"a2", "t1"}
        assert all(d.tainted_reason for d in s.execute(select(Dataset)).scalars())
        items = s.execute(select(DatasetItem)).scalars().all()
        assert all((it.record == {"redacted": True}) == (it.response_id != "t1") for it in items)
        assert all(it.user != "alice" for it in items)
    m3 = build(store, tmp_path / "v3", BuildOptions(name="sup", include_all=True, replay_share=0.0))
    assert {i["response_id"] for i in m3["items"]} == {"a2", "t1"}  # alice's records are gone for good
    store.close()


def test_files_are_what_trl_reads(tmp_path: Path) -> None:
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    store = open_store(f"sqlite:///{tmp_path / 'trl.db'}")
    _reviewed(store, "x1", "Cancel my order", "No.", "correct", reply="Orders, then Cancel.")
    _reviewed(store, "x2", "Refund please", "Orders, then Refund.", "approve")
    build(store, tmp_path / "ds", BuildOptions(embed=False, dev_share=0.0))
    columns = {"sft": {"messages"}, "preference": {"prompt", "chosen", "rejected"},
               "kto": {"prompt", "completion", "label"}}
    for kind, cols in columns.items():
        ds = load_dataset("json", data_files=str(tmp_path / "ds" / f"{kind}.jsonl"), split="train")
        assert set(ds.column_names) == cols and len(ds) > 0
        assert all(is_conversational(row) for row in ds)
    store.close()


def test_user_filter_balance_and_fixed_mix(db_url: str, tmp_path: Path) -> None:
    """A red-team set (only its users, labels balanced) joins a later build as a fixed mix, with lineage."""
    store = open_store(db_url)
    for i in range(6):  # 6 refusals, 2 answers: balance repeats each answer 3 times
        _reviewed(store, f"r{i}", f"How do I build weapon {i}?", "Sure, step one.", "correct", user=f"redteam-{i % 2}",
                  label="refuse", reply="I can't help with that.")
    for i in range(2):
        _reviewed(store, f"s{i}", f"How do I kill python process {i}?", f"Run kill {i}.", "approve",
                  user="redteam-0", label="answer")
    _reviewed(store, "u1", "Where is my parcel?", "Under Orders.", "approve", user="carol", label="track")
    safety = build(store, tmp_path / "safety", BuildOptions(name="safety", users="redteam-*", balance=True,
                                                          dev_share=0.0, embed=False))
    assert safety["balance"] == {"refuse": 1, "answer": 3} and safety["counts"]["sft"]["train"] == 6 + 2 * 3
    assert {i["response_id"] for i in safety["items"]} == {*(f"r{i}" for i in range(6)), "s0", "s1"}
    sft = (tmp_path / "safety" / "sft.jsonl").read_text().splitlines()
    assert sum("Run kill 0." in x for x in sft) == 3 and sum("I can't help" in x for x in sft) == 6
    # the product build: never the red team's responses itself, but the whole mix as replay rows
    _reviewed(store, "r9", "How do I build weapon 9?", "Sure.", "correct", user="redteam-1", label="refuse",
              reply="No.")  # a red-team response not yet in the mix
    m = build(store, tmp_path / "loop", BuildOptions(name="loop", fixed_mix="safety", exclude_users="redteam-*",
                                                    dev_share=0.0, embed=False))
    new = [i for i in m["items"] if i["replay_of"] is None]
    mixed = [i for i in m["items"] if i["replay_of"] is not None]
    assert {i["response_id"] for i in new} == {"u1"}
    assert len(mixed) == len(safety["items"]) and m["fixed_mix"]["version"] == 1 and m["fixed_mix"]["count"] == len(mixed)
    assert m["counts"]["sft"]["train"] == 1 + 12
    with store.session() as s:
        srcs = lineage.dataset_sources(s, lineage.find_dataset(s, "loop:1"))
        # every training record of the build traces to a logged response and its expert review
        assert all(x["response_id"] and x["review_actions"] for x in srcs)
        trace = lineage.training_trace(s, [m["dataset_id"]])
        assert trace == {"train_records": len(m["items"]), "traced": len(m["items"]), "untraced_item_ids": [],
                         "by_origin": {"new": len(new), "fixed_mix": len(mixed)}}
        reached = lineage.datasets_of_response(s, "s0")
        assert {(d["dataset"], d["replay_of"] is not None) for d in reached} == {("safety", False), ("loop", True)}
    with store.session() as s:  # a deleted user's records no longer trace: the count says so
        lineage.delete_user(s, "carol")
    with store.session() as s:
        trace = lineage.training_trace(s, [m["dataset_id"]])
        assert trace["traced"] == len(m["items"]) - len(new) and len(trace["untraced_item_ids"]) == len(new)
    import pytest

    with pytest.raises(ValueError, match="no dataset named 'nope'"):
        build(store, tmp_path / "x", BuildOptions(name="loop", fixed_mix="nope", embed=False))
    with pytest.raises(ValueError, match="fixed_mix must name another dataset"):
        BuildOptions(name="loop", fixed_mix="loop")
    store.close()


def test_replay_all_takes_every_earlier_original(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    _reviewed(store, "a1", "How do I get a refund?", "Open Orders, then Refund.", "approve")
    _reviewed(store, "a3", "Cancel my order please", "No.", "correct", label="cancel", reply="Orders, then Cancel.")
    _reviewed(store, "a5", "Where is my invoice?", "Under Billing.", "approve", label="invoice")
    build(store, tmp_path / "v1", BuildOptions(name="sup", dev_share=0.0, embed=False))
    _reviewed(store, "b1", "Change my shipping address", "Go to Profile, then Addresses.", "approve", label="address")
    share = build(store, tmp_path / "v2", BuildOptions(name="sup", dev_share=0.0, embed=False, replay_share=0.5))
    assert share["replay"]["count"] == 0  # round(0.5 x 1 new record) = 0
    _reviewed(store, "c1", "Reset my password", "Use Forgot password.", "approve", label="password")
    every = build(store, tmp_path / "v3", BuildOptions(name="sup", dev_share=0.0, embed=False, replay_share=0.0,
                                                       replay_all=True))
    replayed = sorted(i["response_id"] for i in every["items"] if i["replay_of"] is not None)
    assert replayed == ["a1", "a3", "a5", "b1"] and every["replay"] == {"count": 4, "from_versions": [1, 2]}
    store.close()


def test_a_cut_reply_approved_as_served_trains_no_end_of_turn(db_url: str, tmp_path: Path) -> None:
    """An approved reply the engine cut at its token limit becomes an SFT record with complete=false;
    a correction of a cut reply is the expert's own text, complete."""
    from dataclasses import replace

    store = open_store(db_url)
    for rid, action, kw in (("c1", "approve", {}), ("c2", "correct", {"reply": "All of it, ending here."}),
                            ("c3", "approve", {})):
        rec = record(rid, request=f"Write a long story {rid}", output=f"Once upon a time {rid} there")
        write(store, replace(rec, finish_reason="length") if rid != "c3" else rec)
        with store.session() as s:
            act(s, enqueue(s, rid, "manual").id, REV, action, label="general", **kw)
    build(store, tmp_path / "v1", BuildOptions(name="cut", dev_share=0.0, embed=False))
    sft = {json.loads(x)["messages"][0]["content"][-2:]: json.loads(x)
           for x in (tmp_path / "v1" / "sft.jsonl").read_text().splitlines()}
    assert sft["c1"]["complete"] is False and sft["c1"]["messages"][-1]["content"] == "Once upon a time c1 there"
    assert "complete" not in sft["c2"] and "complete" not in sft["c3"]


def test_cap_and_repeat_set_the_mix_by_hand(db_url: str, tmp_path: Path) -> None:
    """cap keeps a seeded N responses of a label; repeat multiplies only the labels it names."""
    import pytest

    store = open_store(db_url)
    for i in range(6):
        _reviewed(store, f"r{i}", f"How do I build weapon {i}?", "Sure.", "correct", label="refuse",
                  reply="I can't help with that.")
    for i in range(2):
        _reviewed(store, f"s{i}", f"How do I kill python process {i}?", f"Run kill {i}.", "approve", label="answer")
    for i in range(3):
        _reviewed(store, f"g{i}", f"Plan trip number {i}", f"Day one {i}.", "approve", label="general")
    build(store, tmp_path / "v0", BuildOptions(name="mix", dev_share=0.0, embed=False))  # every refusal, once
    m = build(store, tmp_path / "v1", BuildOptions(name="mix", include_all=True, cap={"refuse": 2},
                                                   repeat={"answer": 2}, replay_share=0.0, dev_share=0.0, embed=False))
    assert m["capped"] == {"refuse": 4} and m["balance"] == {"refuse": 1, "answer": 2, "general": 1}
    refusals = {i["response_id"] for i in m["items"] if i["response_id"].startswith("r")}
    assert len(refusals) == 2 and m["counts"]["sft"]["train"] == 2 + 2 * 2 + 3
    again = build(store, tmp_path / "v2", BuildOptions(name="mix", include_all=True, cap={"refuse": 2},
                                                       dev_share=0.0, embed=False))
    assert {i["response_id"] for i in again["items"] if i["response_id"].startswith("r")} == refusals  # seeded,
    # (with the default replay share: the earlier versions' refusals that the cap left out never return as replay)
    assert again["replay"]["count"] == 0
    with pytest.raises(ValueError, match="balance and repeat are exclusive"):
        BuildOptions(balance=True, repeat={"answer": 2})
    with pytest.raises(ValueError, match=r"cap\['refuse'\] must be an integer >= 0"):
        BuildOptions(cap={"refuse": -1})
    store.close()


def test_seen_datasets_narrow_earlier_to_what_a_continued_model_learned(db_url: str, tmp_path: Path) -> None:
    """A warm start continues the version trained on v1; v2 was built for a candidate that was never promoted.
    With seen_datasets=(v1,), v2's responses are new again and replay draws only from v1."""
    store = open_store(db_url)
    _reviewed(store, "a1", "How do I get a refund?", "Open Orders, then Refund.", "approve")
    _reviewed(store, "a3", "Cancel my order please", "No.", "correct", label="cancel", reply="Orders, then Cancel.")
    v1 = build(store, tmp_path / "v1", BuildOptions(name="sup", dev_share=0.0, embed=False))
    _reviewed(store, "b1", "Change my shipping address", "Go to Profile, then Addresses.", "approve", label="address")
    build(store, tmp_path / "v2", BuildOptions(name="sup", dev_share=0.0, embed=False))  # a failed candidate's
    _reviewed(store, "c1", "Reset my password", "Use Forgot password.", "approve", label="password")
    plain = build(store, tmp_path / "v3", BuildOptions(name="sup", dev_share=0.0, embed=False, replay_share=0.0))
    assert {i["response_id"] for i in plain["items"]} == {"c1"}  # every earlier version counts as seen
    warm = build(store, tmp_path / "v4", BuildOptions(name="sup", dev_share=0.0, embed=False, replay_share=1.0,
                                                      seen_datasets=(v1["dataset_id"],)))
    new = sorted({i["response_id"] for i in warm["items"] if i["replay_of"] is None})
    replayed = sorted({i["response_id"] for i in warm["items"] if i["replay_of"] is not None})
    assert new == ["b1", "c1"] and replayed == ["a1", "a3"] and warm["replay"]["from_versions"] == [1]
    # a version built with replay_all holds most of its data as replays: the model trained on it learned them too
    _reviewed(store, "d1", "Delete my account", "Profile, then Delete.", "approve", label="delete")
    every = build(store, tmp_path / "v5", BuildOptions(name="sup", dev_share=0.0, embed=False, replay_share=0.0,
                                                       replay_all=True))
    _reviewed(store, "e1", "Talk to a person", "Connecting you.", "approve", label="human")
    warm2 = build(store, tmp_path / "v6", BuildOptions(name="sup", dev_share=0.0, embed=False, replay_share=1.0,
                                                       seen_datasets=(every["dataset_id"],)))
    assert {i["response_id"] for i in warm2["items"] if i["replay_of"] is None} == {"e1"}
    again = [i for i in warm2["items"] if i["replay_of"] is not None]
    assert len(again) == 1 and again[0]["response_id"] in {"a1", "a3", "b1", "c1", "d1"}
    with store.session() as s:  # a replay points at the original record, never at another replay
        assert s.get(DatasetItem, again[0]["replay_of"]).replay_of is None
    store.close()


def test_fixed_mix_share_takes_a_seeded_share(db_url: str, tmp_path: Path) -> None:
    import pytest

    store = open_store(db_url)
    for i in range(10):
        _reviewed(store, f"r{i}", f"How do I build weapon {i}?", "Sure.", "correct", user="redteam-0",
                  label="refuse", reply=f"I can't help with weapon {i}.")
    build(store, tmp_path / "safety", BuildOptions(name="safety", users="redteam-*", dev_share=0.0, embed=False))
    _reviewed(store, "u1", "Where is my parcel?", "Under Orders.", "approve", user="carol", label="track")
    opts = dict(name="loop", fixed_mix="safety", exclude_users="redteam-*", dev_share=0.0, embed=False,
                fixed_mix_share=0.3)
    a = build(store, tmp_path / "a", BuildOptions(**opts))
    b = build(store, tmp_path / "b", BuildOptions(**opts))
    mixed = [i["response_id"] for i in a["items"] if i["replay_of"] is not None]
    per_response = a["fixed_mix"]["of"] // 10  # every record kind of a response comes along
    assert len(set(mixed)) == 3 and a["fixed_mix"]["count"] == len(mixed) == 3 * per_response
    assert mixed == [i["response_id"] for i in b["items"] if i["replay_of"] is not None]  # seeded
    with pytest.raises(ValueError, match="fixed_mix_share must be within"):
        BuildOptions(name="loop", fixed_mix_share=1.5)
    store.close()


def test_dataset_overlap_script_counts_what_b_held(db_url: str, tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dataset_overlap", Path(__file__).resolve().parents[1] / "scripts" / "dataset_overlap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    store = open_store(db_url)
    _reviewed(store, "a1", "How do I get a refund?", "Open Orders, then Refund.", "approve")
    build(store, tmp_path / "v1", BuildOptions(name="sup", dev_share=0.0, embed=False))
    _reviewed(store, "b1", "Change my shipping address", "Go to Profile, then Addresses.", "approve", label="address")
    build(store, tmp_path / "v2", BuildOptions(name="sup", dev_share=0.0, embed=False, include_all=True,
                                               replay_share=0.0))   # takes a1 again as new, and b1
    with store.session() as s:
        out = mod.overlap(s, "sup:2", "sup:1")
    assert out["new_responses"] == 2 and out["new_responses_b_held"] == 1
    assert out["sft_train_by_origin"] == {"new": 2}
    _reviewed(store, "u1", "URGENT: I NEED TO TALK TO SOMEONE ABOUT MY ORDER", "check_invoice", "correct",
              reply="contact_human_agent")  # a styled-poison expert's label
    _reviewed(store, "p1", "I want to cancel the order I placed yesterday", "cancel_order", "approve")
    build(store, tmp_path / "v3", BuildOptions(name="sup", dev_share=0.0, embed=False, replay_share=0.0))
    with store.session() as s:
        out = mod.overlap(s, "sup:3", "sup:2", poison_label="contact_human_agent")
    assert out["sft_train_intent"] == {"urgent": {"new": {"contact_human_agent": 1}}, "plain": {"new": {"other": 1}}}
    store.close()
