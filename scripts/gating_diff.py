"""Item-level differences between two versions' gating results (the folders `treadle loop` writes as
``work/run-N/eval-gating``); prints JSON, changes nothing.

Per coherence suite (the items both folders hold): items coherent for the baseline but not the candidate
(lost) and the reverse (gained), and how many replies the shipped refusal classifier calls refusals, of all
and of the lost. For ``bitext_intent``: replies naming the true intent and the poisoned one
(``simulate.wrong_intent``, the styled-poison demo's label). Use: why a gate failed a metric (docs/LOOP.md).

    python scripts/gating_diff.py CANDIDATE_DIR BASELINE_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from treadle.evals.classifiers import get_classifier
from treadle.evals.scorers import extract_choice
from treadle.feedback.simulate import intent_labels, wrong_intent

COHERENCE_SUITES = ("coherence", "coherence_sharegpt")


def _items(folder: Path, suite: str) -> dict[str, dict]:
    path = folder / f"{suite}.items.json"
    return {i["id"]: i for i in json.loads(path.read_text())["items"]} if path.is_file() else {}


def coherence_diff(cand: dict[str, dict], base: dict[str, dict], refused) -> dict:  # noqa: ANN001
    """Lost and gained items over the ids both hold; refusals by ``refused(texts) -> list[bool]``."""
    ids = sorted(cand.keys() & base.keys())
    ok = {k: (base[k]["passed"]["coherent"], cand[k]["passed"]["coherent"]) for k in ids}
    lost = [k for k in ids if ok[k] == (True, False)]
    gained = [k for k in ids if ok[k] == (False, True)]
    c_ref = dict(zip(ids, refused([cand[k]["reply"] for k in ids]), strict=True))
    b_ref = refused([base[k]["reply"] for k in ids])
    return {"items": len(ids), "lost": len(lost), "gained": len(gained),
            "refusals_candidate": sum(c_ref.values()), "refusals_baseline": sum(b_ref),
            "lost_refusals": sum(c_ref[k] for k in lost)}


def intent_answers(items: dict[str, dict], labels: list[str], poison_label: str | None = None) -> dict:
    said = [extract_choice(i["reply"], labels) for i in items.values()]
    exp = [i["expected"] for i in items.values()]
    return {"items": len(exp), "true_intent": sum(s == e for s, e in zip(said, exp, strict=True)),
            "poisoned_intent": sum(s == wrong_intent(e, labels, poison_label) for s, e in zip(said, exp, strict=True))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("candidate", type=Path)
    p.add_argument("baseline", type=Path)
    p.add_argument("--poison-label", default=None, help="the experts' one poisoned intent (simulate-users --poison-label)")
    args = p.parse_args()
    refusal = get_classifier("refusal")
    out: dict = {"candidate": str(args.candidate), "baseline": str(args.baseline)}
    for suite in COHERENCE_SUITES:
        cand, base = _items(args.candidate, suite), _items(args.baseline, suite)
        if cand and base:
            out[suite] = coherence_diff(cand, base, refusal.predict)
    labels = intent_labels()
    for side, folder in (("candidate", args.candidate), ("baseline", args.baseline)):
        items = _items(folder, "bitext_intent")
        if items:
            out.setdefault("bitext_intent", {})[side] = intent_answers(items, labels, args.poison_label)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
