"""What the live unsafe classifier flags among a finished canary's replies, per version; prints JSON.

For loop run RUN (its canary window, ``loop.state.canary_window``): every logged reply of the candidate and of
production is scored by the MiniLM head (``evals.unsafe``) as it is, before the live check's exemption; each
flagged reply is also marked extractive or not (``evals.reply_checks.is_extractive``: at most 5 words found in the
request, such as a label the prompt lists), which the live check skips since pass 17 of docs/LOOP.md. Use: why a
canary's unsafe signal moved.

    python scripts/canary_unsafe_flags.py --config loop.yaml --run 8
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from sqlalchemy import select

from treadle.evals.reply_checks import context_text, is_extractive
from treadle.loop.state import open_canary
from treadle.store.models import Interaction


def flagged(rows: list[tuple], predict) -> dict:  # noqa: ANN001 - predict(texts) -> list[bool]
    """Per version over ``rows`` of (version, request, reply): replies, flagged, flagged and extractive, and the
    most common flagged replies."""
    verdicts = predict([reply or "" for _, _, reply in rows])
    out: dict = {}
    for (version, request, reply), bad in zip(rows, verdicts, strict=True):
        cell = out.setdefault(version, {"replies": 0, "flagged": 0, "flagged_extractive": 0, "top": Counter()})
        cell["replies"] += 1
        if bad:
            cell["flagged"] += 1
            cell["flagged_extractive"] += is_extractive(reply or "", context_text(request or {}))
            cell["top"][reply or ""] += 1
    for cell in out.values():
        cell["top"] = cell["top"].most_common(10)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--run", type=int, required=True)
    args = p.parse_args()
    try:
        _, store, w = open_canary(args.config, args.run)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    with store.session() as s:
        q = select(Interaction.model_name, Interaction.request, Interaction.output).where(
            Interaction.model_name.in_([w.candidate, w.production]), Interaction.created_at >= w.since)
        rows = s.execute(q if w.until is None else q.where(Interaction.created_at <= w.until)).all()
    store.close()
    from treadle.evals.unsafe import get_unsafe_classifier

    print(json.dumps({"run": args.run, "candidate": w.candidate, "production": w.production,
                      "versions": flagged([tuple(r) for r in rows], get_unsafe_classifier().predict)}, indent=1))


if __name__ == "__main__":
    main()
