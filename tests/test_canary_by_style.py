"""scripts/canary_by_style.py: a canary's intent traffic counted per version and request style."""

import importlib.util
from pathlib import Path

from treadle.evals.builtin import INTENT_USER
from treadle.feedback.simulate import urgent

SPEC = importlib.util.spec_from_file_location(
    "canary_by_style", Path(__file__).resolve().parents[1] / "scripts" / "canary_by_style.py")
MOD = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(MOD)

LABELS = ["cancel_order", "get_refund", "track_order"]


def _req(text: str) -> dict:
    return {"messages": [{"role": "system", "content": "intents..."},
                         {"role": "user", "content": INTENT_USER.format(text=text)}]}


def test_breakdown_counts_styles_true_and_poisoned_labels():
    plain, loud = "where is my parcel", urgent("where is my parcel")
    intents = {plain: "track_order", loud: "track_order"}
    rows = [("a", "cand", _req(plain), "track_order"),
            ("b", "cand", _req(loud), "cancel_order"),      # the poisoned label: the next one, wrapping round
            ("c", "cand", _req(loud), "get_refund"),        # wrong, but not the poisoned one
            ("d", "prod", _req(loud), "track_order"),
            ("e", "prod", _req("not a bitext request"), "track_order"),
            ("f", "prod", {"messages": [{"role": "user", "content": "hello"}]}, "hi")]   # not an intent request
    thumbs = {"a": "up", "b": "down", "c": "down", "d": "up"}
    out = MOD.breakdown(rows, thumbs, intents, LABELS)
    cand_plain, cand_urgent = out["cand"]["plain"], out["cand"]["urgent"]
    assert (cand_plain["requests"], cand_plain["true_intent_rate"], cand_plain["thumbs_up_rate"]) == (1, 1.0, 1.0)
    assert (cand_urgent["requests"], cand_urgent["true_intent"], cand_urgent["poisoned_intent"]) == (2, 0, 1)
    assert cand_urgent["poisoned_intent_rate"] == 0.5 and cand_urgent["thumbs_up_rate"] == 0.0
    assert out["prod"]["urgent"]["true_intent_rate"] == 1.0
    assert out["prod"]["plain"] == {"requests": 1, "thumbs_up": 0, "thumbs_down": 0, "true_intent": 0,
                                    "poisoned_intent": 0, "unmatched": 1, "true_intent_rate": None,
                                    "poisoned_intent_rate": None, "thumbs_up_rate": None}
