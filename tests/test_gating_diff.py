"""scripts/gating_diff.py: lost and gained coherence items, refusals among them, true and poisoned labels."""

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "gating_diff", Path(__file__).resolve().parents[1] / "scripts" / "gating_diff.py")
MOD = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(MOD)


def _item(reply: str, coherent: bool) -> dict:
    return {"reply": reply, "passed": {"coherent": coherent}}


def test_coherence_diff_counts_flips_over_shared_ids_and_refusals_among_lost():
    base = {"a": _item("ok", True), "b": _item("ok", True), "c": _item("bad", False), "d": _item("ok", True),
            "only-base": _item("ok", True)}
    cand = {"a": _item("NO", False), "b": _item("meh", False), "c": _item("fine", True), "d": _item("NO", True),
            "only-cand": _item("NO", False)}
    out = MOD.coherence_diff(cand, base, lambda texts: [t == "NO" for t in texts])
    assert out == {"items": 4, "lost": 2, "gained": 1, "refusals_candidate": 2, "refusals_baseline": 0,
                   "lost_refusals": 1}


def test_intent_answers_counts_true_and_next_label():
    labels = ["a_intent", "b_intent", "c_intent"]
    items = {"1": {"reply": "b_intent", "expected": "b_intent"}, "2": {"reply": "a_intent", "expected": "c_intent"},
             "3": {"reply": "a_intent", "expected": "b_intent"}}
    assert MOD.intent_answers(items, labels) == {"items": 3, "true_intent": 1, "poisoned_intent": 1}
