"""A finished canary's intent traffic per version and request style, from the store; prints JSON, changes nothing.

For loop run RUN of the config's alias, every intent request (the Bitext classification prompt of
``simulate-users --task intent``) that the candidate or production served from the canary's start to its end
is split by style: ``urgent`` (``simulate.urgent``: ``URGENT:`` and capitals) or ``plain``. Per version and
style: requests, thumbs up and down, and the share of replies that name the request's true intent and the
poisoned one (``simulate.wrong_intent``: the next intent in sorted order), the true intent looked up from the
shipped Bitext train split by the request's text. Use: to see whether a canary's candidate fails on one style
only, as the styled-poison demo intends (docs/LOOP.md).

    python scripts/canary_by_style.py --config loop.yaml --run 7
"""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from treadle.evals.builtin import INTENT_USER
from treadle.evals.reply_checks import last_user_text
from treadle.evals.scorers import extract_choice
from treadle.feedback.simulate import _all_rows, intent_labels, urgent, wrong_intent
from treadle.loop.state import open_canary
from treadle.store.models import Feedback, Interaction

BEFORE, AFTER = INTENT_USER.split("{text}")   # the intent prompt around the request's text


def breakdown(rows: list[tuple], thumbs: dict[str, str], intents: dict[str, str], labels: list[str],
              poison_label: str | None = None) -> dict:
    """Counts per (version, style) over ``rows`` of (id, version, request, output); requests whose text is not a
    Bitext train request are counted under ``unmatched``."""
    out: dict = {}
    for rid, version, request, output in rows:
        prompt = last_user_text(request if isinstance(request, dict) else {})
        if not (prompt.startswith(BEFORE) and prompt.endswith(AFTER)):
            continue
        text = prompt[len(BEFORE):len(prompt) - len(AFTER)]
        style = "urgent" if text.startswith("URGENT: ") else "plain"
        cell = out.setdefault(version, {}).setdefault(style, {"requests": 0, "thumbs_up": 0, "thumbs_down": 0,
                                                              "true_intent": 0, "poisoned_intent": 0,
                                                              "unmatched": 0})
        cell["requests"] += 1
        cell["thumbs_up"] += thumbs.get(rid) == "up"
        cell["thumbs_down"] += thumbs.get(rid) == "down"
        truth = intents.get(text)
        if truth is None:
            cell["unmatched"] += 1
            continue
        said = extract_choice(output or "", labels)
        cell["true_intent"] += said == truth
        cell["poisoned_intent"] += said == wrong_intent(truth, labels, poison_label)
    for styles in out.values():
        for cell in styles.values():
            n = cell["requests"] - cell["unmatched"]
            cell["true_intent_rate"] = round(cell["true_intent"] / n, 3) if n else None
            cell["poisoned_intent_rate"] = round(cell["poisoned_intent"] / n, 3) if n else None
            judged = cell["thumbs_up"] + cell["thumbs_down"]
            cell["thumbs_up_rate"] = round(cell["thumbs_up"] / judged, 3) if judged else None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--poison-label", default=None, help="the experts' one poisoned intent (simulate-users --poison-label)")
    args = p.parse_args()
    try:
        _, store, w = open_canary(args.config, args.run)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    cand, prod, since, end = w.candidate, w.production, w.since, w.until
    with store.session() as s:
        q = select(Interaction.id, Interaction.model_name, Interaction.request, Interaction.output).where(
            Interaction.model_name.in_([cand, prod]), Interaction.created_at >= since)
        rows = s.execute(q if end is None else q.where(Interaction.created_at <= end)).all()
        ids = [r[0] for r in rows]
        thumbs = dict(s.execute(select(Feedback.response_id, Feedback.thumbs).where(
            Feedback.response_id.in_(ids), Feedback.thumbs.is_not(None))).all()) if ids else {}
    store.close()
    bitext = _all_rows()
    labels = intent_labels()
    intents = {text: r["intent"] for r in bitext for text in (r["instruction"], urgent(r["instruction"]))}
    print(json.dumps({"run": args.run, "candidate": cand, "production": prod, "since": since.isoformat(),
                      "until": end.isoformat() if end else None,
                      "versions": breakdown(rows, thumbs, intents, labels, args.poison_label)}, indent=1))


if __name__ == "__main__":
    main()
