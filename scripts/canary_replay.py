"""Replay a finished canary's decisions from the store with today's live checks; prints JSON, changes nothing.

For loop run RUN of the config's alias: the candidate, production and canary start come from the run's
state; look k (1..looks) ends when the candidate's (k * requests_per_look)-th canary request was logged
(its last look at the run's end). At each look both versions' signals are read up to that time
(``signals.version_signals``, the same sample rule and size) and ``canary.decide`` gives the action, as the loop
would have at that look had it used these checks. Use: after a change to a live check, to see how it
judges the traffic a past canary saw.

    python scripts/canary_replay.py --config loop.yaml --run 5
"""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from treadle.loop.canary import decide
from treadle.loop.signals import LiveChecks, look_sample_size, version_signals
from treadle.loop.state import open_canary
from treadle.store.models import Interaction


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--run", type=int, required=True)
    args = p.parse_args()
    try:
        cfg, store, w = open_canary(args.config, args.run)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    c = cfg.canary
    cand, prod, since, end = w.candidate, w.production, w.since, w.until
    with store.session() as s:
        times = s.scalars(select(Interaction.created_at).where(
            Interaction.model_name == cand, Interaction.created_at >= since,
            *([Interaction.created_at <= end] if end else [])).order_by(Interaction.created_at)).all()
    cuts = [times[k * c.policy.requests_per_look - 1] for k in range(1, c.policy.looks + 1)
            if k * c.policy.requests_per_look <= len(times)]
    if end and (not cuts or cuts[-1] < end):
        cuts.append(end)
    checks = LiveChecks(c.safety_classifier)
    looks = []
    for until in cuts:
        n = look_sample_size(store, cand, since, c.policy.requests_per_look, c.policy.looks, c.sample_per_look, until)
        sig_c = version_signals(store, cand, since, checks, n, until)
        sig_p = version_signals(store, prod, since, checks, n, until)
        d = decide(sig_c, sig_p, c.policy)
        looks.append({"until": until.isoformat(), "candidate_requests": sig_c.requests,
                      "production_requests": sig_p.requests, "action": d.action, "look": d.look,
                      "reasons": list(d.reasons),
                      "signals": {k.signal: [k.candidate, k.production, k.detail] for k in d.checks}})
    store.close()
    print(json.dumps({"run": args.run, "candidate": cand, "production": prod, "looks": looks}, indent=1))


if __name__ == "__main__":
    main()
