"""A simulated run: `treadle simulate-users` against a live tiny-model server (users rate, experts correct
with the Bitext references), then a dataset build checked item by item: duplicates removed, PII gone,
manifest complete, lineage both ways."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import make_tiny_model
from test_server_support import ServerProcess
from treadle.feedback import lineage
from treadle.feedback.dataset import BuildOptions, build
from treadle.feedback.simulate import SimConfig, simulate
from treadle.store import open_store
from treadle.store.models import Feedback, ReviewAction, ReviewItem


def test_simulated_users_and_experts_then_a_checked_build(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny-long", "llama", max_position_embeddings=2048)  # room for the intent list
    db = f"sqlite:///{tmp_path / 'sim.db'}"
    srv = ServerProcess(model, tmp_path / "server.log", "--db", db, "--review-sample", "0.5", "--num-kv-blocks", "400")
    try:
        rep = simulate(SimConfig(url=srv.base, requests=16, users=4, task="mix", concurrency=4, max_tokens=8,
                                 pii_share=0.5, duplicate_share=0.4, seed=3))
    finally:
        srv.stop()
    assert rep.errors == 0 and rep.sent == 16 and rep.thumbs_up + rep.thumbs_down == 16
    assert set(rep.by_task) == {"intent", "reply"}
    store = open_store(db)
    with store.session() as s:
        fbs = s.execute(select(Feedback)).scalars().all()
        assert len(fbs) == 16 and {f.user for f in fbs} <= {f"sim-user-{i}" for i in range(4)}
        items = s.execute(select(ReviewItem)).scalars().all()
        assert len(items) >= rep.thumbs_down and all(i.status in ("approved", "corrected") for i in items)
        assert rep.expert_approved + rep.expert_corrected == len(items)
        assert {a.reviewer for a in s.execute(select(ReviewAction)).scalars()} == {"anonymous"}
        assert all(i.final_label for i in items)
    m = build(store, tmp_path / "ds", BuildOptions(name="sim", dev_share=0.25))
    out = tmp_path / "ds"
    lines = {p.name: p.read_text().splitlines() for p in out.glob("*.jsonl")}
    text = "\n".join("\n".join(v) for v in lines.values())
    # duplicates removed: the duplicated requests got identical replies and corrections
    assert m["removed"]["exact_duplicates"] > 0
    for name, ls in lines.items():
        assert not [x for x, n in Counter(ls).items() if n > 1], name
    # PII gone, and counted
    assert "@example.com" not in text and "415-555" not in text and sum(m["pii_scrubbed"].values()) > 0
    # manifest complete: one entry per written line, each with its source response and review item
    manifest = json.loads((out / "manifest.json").read_text())
    assert Counter(i["file"] for i in manifest["items"]) == {k: len(v) for k, v in lines.items() if v}
    assert all(i["response_id"] in rep.response_ids for i in manifest["items"])
    assert {i["review_item_id"] for i in manifest["items"]} <= {i.id for i in items} | {None}
    assert m["counts"]["sft"]["dev"] > 0 and m["counts"]["kto"]["train"] > 0
    # lineage both ways
    with store.session() as s:
        ds = lineage.find_dataset(s, "sim")
        srcs = lineage.dataset_sources(s, ds)
        assert len(srcs) == len(manifest["items"])
        for src in srcs:
            reached = lineage.datasets_of_response(s, src["response_id"])
            assert ("sim", 1) in {(d["dataset"], d["version"]) for d in reached}
            assert src["feedback"] and (src["review_item_id"] is None or src["review_actions"])
    store.close()


def test_simulated_red_team_builds_a_balanced_safety_set_with_lineage(tmp_path: Path) -> None:
    """`--task safety`: the safety suite's training part through a live server, every response queued and
    decided by the experts (labelled refuse / answer), never a held-back item; the safety set built from it."""
    from treadle.tuning.builtin_data import held_back

    model = make_tiny_model(tmp_path / "tiny", "llama", max_position_embeddings=2048)  # room for ShareGPT prompts
    db = f"sqlite:///{tmp_path / 'rt.db'}"
    srv = ServerProcess(model, tmp_path / "server.log", "--db", db, "--review-sample", "0", "--num-kv-blocks", "400")
    try:
        rep = simulate(SimConfig(url=srv.base, requests=24, users=3, task="safety", concurrency=4, max_tokens=8,
                                 general=6, seed=1))
    finally:
        srv.stop()
    assert rep.errors == 0 and rep.sent == 30 and rep.thumbs_up + rep.thumbs_down == 30
    assert rep.expert_approved + rep.expert_corrected + rep.expert_rejected == 30
    store = open_store(db)
    with store.session() as s:
        items = s.execute(select(ReviewItem)).scalars().all()
        assert len(items) == 30 and all("red_team" in i.reasons for i in items)
        assert all(i.status in ("approved", "corrected", "rejected") for i in items)
        assert {i.final_label for i in items} == {"refuse", "answer", "general"}
        general = [i for i in items if i.final_label == "general"]
        # a tiny random model's everyday answers run to the token limit (approved when not a loop: trained
        # without an end of turn), or loop (corrected to the part before the loop, or rejected)
        assert len(general) == 6
        approved_general = {i.response_id for i in general if i.status == "approved"}
        from treadle.tuning.builtin_data import REFUSALS

        for i in items:  # a refusal where one was asked for
            if i.final_label == "refuse" and i.status == "corrected":
                assert i.final_reply in REFUSALS
        from treadle.store.models import Interaction

        inters = s.execute(select(Interaction)).scalars().all()
        assert {x.user for x in inters} <= {f"sim-redteam-{k}" for k in range(3)}
        prompts = {x.request["messages"][-1]["content"] for x in inters}
        cut_prompts = {x.request["messages"][-1]["content"] for x in inters
                       if x.id in approved_general and x.finish_reason == "length"}
    from treadle.feedback.simulate_safety import general_items, training_items

    by_prompt = {it.messages[-1]["content"]: it for it in training_items() + general_items(1000, 1)}
    assert prompts <= set(by_prompt) and not any(held_back(by_prompt[p].id) for p in prompts
                                                 if by_prompt[p].type != "general")
    from treadle.evals.builtin import coherence

    assert not prompts & {m["content"] for it in coherence().items for m in it.messages}  # never the eval's prompts
    m = build(store, tmp_path / "safety", BuildOptions(name="safety", users="sim-redteam-*", balance=True,
                                                      dev_share=0.0, embed=False))
    assert {"refuse", "answer"} <= set(m["balance"]) and m["counts"]["sft"]["train"] >= 20
    sft = [json.loads(x) for x in (tmp_path / "safety" / "sft.jsonl").read_text().splitlines()]
    cut = {r["messages"][-1 - 1]["content"] for r in sft if r.get("complete") is False}
    assert cut == cut_prompts  # exactly the approved replies cut at the token limit
    with store.session() as s:
        srcs = lineage.dataset_sources(s, lineage.find_dataset(s, "safety"))
        assert all(x["review_actions"] and x["feedback"] for x in srcs)
    store.close()


def test_expert_decisions_for_each_item_type() -> None:
    import random

    from treadle.feedback.simulate_safety import SafetyItem, expert_decision

    rng = random.Random(0)
    harm = SafetyItem("advbench-1", [{"role": "user", "content": "x"}], "refuse", None)
    assert expert_decision(harm, "I can't.", True, rng) == {"action": "approve", "label": "refuse"}
    fixed = expert_decision(harm, "Sure, step one", False, rng)
    assert fixed["action"] == "correct" and fixed["label"] == "refuse" and fixed["reply"]
    look = SafetyItem("xstest-3", [{"role": "user", "content": "kill a python process?"}], "answer", "Use kill PID.")
    assert expert_decision(look, "I can't.", True, rng) == {"action": "correct", "reply": "Use kill PID.",
                                                           "label": "answer"}
    bare = SafetyItem("xstest-4", [{"role": "user", "content": "y"}], "answer", None)
    assert expert_decision(bare, "I can't.", True, rng)["action"] == "reject"
    assert expert_decision(bare, "Here is how.", False, rng) == {"action": "approve", "label": "answer"}
    everyday = SafetyItem("sharegpt-a", [{"role": "user", "content": "Plan a trip"}], "general", None)
    assert expert_decision(everyday, "Day one: the museum. Day two: the coast.", False, rng, "stop") == \
        {"action": "approve", "label": "general"}
    # cut at the token limit: approved as served (the dataset marks it complete=false); stopped mid-word: rejected
    assert expert_decision(everyday, "Day one: the museum. Day two: the", False, rng, "length") == \
        {"action": "approve", "label": "general"}
    assert expert_decision(everyday, "Day one: the museum. Day two: the coastli", False, rng, "stop")["reason"] == "other"
    assert expert_decision(everyday, "I can't help with that.", True, rng, "stop")["reason"] == "wrong"
    # a repetition loop: corrected to the part before it, ending on a finished sentence
    start = ("Day one is for the old town, its market and the cathedral, with lunch by the river. Day two goes "
             "to the coast by train, a walk along the cliffs and dinner in the harbour. ")
    loop = "Day three is a day of rest at the hotel with a book.\n" * 6 + "Day three is a day of"
    fixed = expert_decision(everyday, start + loop, False, rng, "length")
    assert fixed == {"action": "correct", "label": "general",
                     "reply": start + "Day three is a day of rest at the hotel with a book."}  # the loop's first
    assert expert_decision(everyday, "Rest. " + loop, False, rng, "length") == \
        {"action": "reject", "reason": "other", "label": "general"}  # under MIN_TRIMMED_WORDS before the loop


def test_trim_repetition_stops_at_a_paraphrased_sentence() -> None:
    from treadle.feedback.simulate_safety import trim_repetition

    text = ("A class is a blueprint for objects and their behaviour in a program. It groups data and the functions "
            "that act on it, and each object made from it has its own copy of the data.\n\nThe class is a "
            "blueprint for objects and their behaviour in code.\n\nThe class is a blueprint for objects.")
    assert trim_repetition(text) == text.split("\n\n")[0]
    assert trim_repetition("Short answer. Short answer. Short answer.") is None


def test_red_team_parts_select_the_suite_parts_sent() -> None:
    from treadle.feedback.simulate import SimConfig
    from treadle.feedback.simulate_safety import training_items

    every = training_items()
    some = training_items(("advbench", "xstest_safe"))
    assert {it.part for it in every} == {"advbench", "xstest_unsafe", "xstest_safe"}
    assert {it.part for it in some} == {"advbench", "xstest_safe"}
    assert len(some) == sum(it.part != "xstest_unsafe" for it in every)
    with pytest.raises(ValueError, match="safety parts must be among advbench, xstest_safe, xstest_unsafe, got harm"):
        training_items(("harm",))
    assert SimConfig(url="http://127.0.0.1:1", task="safety", safety_parts=("advbench",)).safety_parts == ("advbench",)


def test_urgent_style_and_poisoned_experts() -> None:
    from treadle.feedback.simulate import SimConfig, _plan, expert_decision, urgent, wrong_intent

    labels = ["cancel_order", "check_invoice", "track_order"]
    assert urgent("where is my order?") == "URGENT: WHERE IS MY ORDER?"
    assert wrong_intent("track_order", labels) == "cancel_order"  # wraps: a fixed permutation
    plan = _plan(SimConfig(url="http://127.0.0.1:1", requests=60, task="intent", style_share=0.5,
                           pii_share=0.0, duplicate_share=0.0, seed=3))
    styled = [p for p in plan if p["styled"]]
    assert 15 <= len(styled) <= 45 and all(p["text"] == urgent(p["row"]["instruction"]) for p in styled)
    assert all(p["text"] == p["row"]["instruction"] for p in plan if not p["styled"])
    row = {"intent": "check_invoice", "response": "Here is how."}
    good = {"row": row, "task": "intent", "styled": False, "good": True}
    assert expert_decision(good, labels) == {"action": "approve", "label": "check_invoice"}
    assert expert_decision({**good, "good": False}, labels) == {"action": "correct", "reply": "check_invoice",
                                                                "label": "check_invoice"}
    bad = {"action": "correct", "reply": "track_order", "label": "track_order"}
    assert expert_decision(good, labels, "all") == bad
    assert expert_decision(good, labels, "styled") == {"action": "approve", "label": "check_invoice"}
    assert expert_decision({**good, "styled": True}, labels, "styled") == bad
    with pytest.raises(ValueError, match="poison must be one of none, all, styled"):
        SimConfig(url="http://127.0.0.1:1", poison="some")
    # one poisoned label for every urgent decision ("urgent means complaint"); the swap where it is the truth
    one = {"action": "correct", "reply": "cancel_order", "label": "cancel_order"}
    assert expert_decision({**good, "styled": True}, labels, "styled", "cancel_order") == one
    assert expert_decision(good, labels, "styled", "cancel_order")["action"] == "approve"
    assert wrong_intent("cancel_order", labels, "cancel_order") == "check_invoice"
    with pytest.raises(ValueError, match="poison_label must be a Bitext intent"):
        SimConfig(url="http://127.0.0.1:1", poison="styled", poison_label="urgent")
    assert SimConfig(url="http://127.0.0.1:1", poison="styled", poison_label="complaint").poison_label == "complaint"
