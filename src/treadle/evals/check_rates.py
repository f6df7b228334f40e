"""How often the model-free coherence checks flag constructed replies whose verdict is known; prints JSON,
changes nothing. Compares the plain rule (cosine >= ON_TOPIC_MIN, vocabulary-only cut check) with
``reply_checks`` (short extractive answers, the request's words). Cases, all from the bundled data:

- ``intent_correct_label`` (should pass): the 902 Bitext test requests in the ``bitext_intent`` prompt,
  answered with their reference intent name, as the served model is asked to reply;
- ``intent_wrong_label`` (wrong but coherent: should pass): the same, answered with another intent (seeded);
- ``intent_free_text`` (should pass): the Bitext requests in the ``bitext_reply`` prompt, answered with
  their reference reply (500 characters, as in calibration);
- ``open_prompt_label`` (label collapse, should be flagged): the 160 MT-Bench/Vicuna prompts and
  the first 600 coherence_sharegpt prompts answered with a random intent name;
- ``intent_off_topic_text`` (should be flagged): the intent prompts answered with an MT-Bench reference
  answer (500 characters) to an unrelated question.

    python -m treadle.evals.check_rates [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random

from treadle.evals import builtin, reply_checks, scorers
from treadle.evals.thresholds import ON_TOPIC_MIN

CUT = 500


def _finish(reply: str, full: str) -> str:
    return "length" if len(reply) < len(full) else "stop"  # a reply cut to CUT characters stopped on its limit


def _flag_rates(cases: list[tuple[list[dict], str, str]]) -> dict:
    """Flagged share under the plain rule and under reply_checks, for (messages, reply, finish reason)."""
    from treadle.evals.embedder import get_embedder

    reqs = [reply_checks.last_user_text({"messages": msgs}) for msgs, _, _ in cases]
    replies = [r for _, r, _ in cases]
    sims = get_embedder().similarity(reqs, replies)
    plain = new = 0
    reasons: dict[str, int] = {}
    for (msgs, reply, fin), sim in zip(cases, sims, strict=True):
        plain += any(scorers.degeneracy(reply, fin).values()) or sim < ON_TOPIC_MIN
        why = reply_checks.incoherent_reasons(reply_checks.context_text({"messages": msgs}), reply, fin, sim)
        new += bool(why)
        for w in why:
            reasons[w] = reasons.get(w, 0) + 1
    n = len(cases)
    return {"n": n, "flagged_plain": round(plain / n, 4), "flagged_reply_checks": round(new / n, 4),
            "reasons_reply_checks": reasons}


def cases(seed: int = 0) -> dict[str, list[tuple[list[dict], str, str]]]:
    rng = random.Random(seed)
    intent = builtin.bitext_intent().items
    labels = sorted({str(it.expected) for it in intent})
    reply_items = builtin.bitext_reply().items
    opens = builtin.coherence().items + builtin.coherence_sharegpt().items[:600]
    mt_answers = [a for _, a in _mtbench_answers()]
    other = [rng.choice(mt_answers) for _ in intent]
    return {
        "intent_correct_label": [(it.messages, str(it.expected), "stop") for it in intent],
        "intent_wrong_label": [(it.messages, rng.choice([x for x in labels if x != it.expected]), "stop")
                               for it in intent],
        "intent_free_text": [(it.messages, str(it.expected)[:CUT], _finish(str(it.expected)[:CUT], str(it.expected)))
                             for it in reply_items],
        "open_prompt_label": [(it.messages, rng.choice(labels), "stop") for it in opens],
        "intent_off_topic_text": [(it.messages, a[:CUT], _finish(a[:CUT], a)) for it, a in zip(intent, other, strict=True)],
    }


def _mtbench_answers() -> list[tuple[str, str]]:
    from treadle.data_files import data_dir
    from treadle.evals.calibrate import _mtbench

    return _mtbench(data_dir())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(json.dumps({name: _flag_rates(c) for name, c in cases(args.seed).items()}, indent=1))


if __name__ == "__main__":
    main()
