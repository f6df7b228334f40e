"""Calibrate the embedding and fluency thresholds of ``thresholds.py``; prints JSON, changes nothing.

Each threshold is the cut that maximises balanced accuracy between a good set and a bad set
(``best_cut``; ties: the lowest cut). ``n`` Bitext test items (seed 0) and the 30 MT-Bench
questions with GPT-4 reference answers are used:
- REFERENCE_MIN: good = cosine(reference reply, another reference reply of the same intent from
  ``split_train``, cut to 500 characters like a 128-token reply); bad = cosine(reference reply, a
  reference reply of a different intent);
- ON_TOPIC_MIN: good = cosine(request, its reference reply); bad = cosine(request, the reference
  reply of a random item of another intent / another MT-Bench question);
- FLUENCY_MIN / FLUENCY_MAX (needs a server with the base model): good = mean log-prob of the
  reference replies (500 characters); bad low = the same replies with their words shuffled
  (seeded); bad high = a copy loop (the reply's first 8 words repeated to the same length). The
  upper cut is raised to the 97.5th percentile of the good replies when the balanced-accuracy cut
  lies below it: copy loops are also caught by the repetition check, good replies must not fail.

    python -m treadle.evals.calibrate --base-url http://127.0.0.1:8000/v1 --model NAME [--n 150]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
from pathlib import Path

CUT = 500


def best_cut(good: list[float], bad: list[float], good_above: bool = True) -> tuple[float, float]:
    """(threshold, balanced accuracy): good >= t (or <= t when not ``good_above``) is predicted good."""
    best = (0.0, -1.0)
    for t in sorted(set(good) | set(bad)):
        if good_above:
            tpr = sum(g >= t for g in good) / len(good)
            tnr = sum(b < t for b in bad) / len(bad)
        else:
            tpr = sum(g <= t for g in good) / len(good)
            tnr = sum(b > t for b in bad) / len(bad)
        acc = (tpr + tnr) / 2
        if acc > best[1]:
            best = (t, acc)
    return best


def _rows(data: Path, split: str) -> list[dict]:
    with (data / "tasks/bitext_customer_support" / f"split_{split}.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _mtbench(data: Path) -> list[tuple[str, str]]:
    qs = {}
    for line in (data / "prompts/mt_bench/mt_bench_question.jsonl").read_text().splitlines():
        q = json.loads(line)
        qs[q["question_id"]] = q["turns"][0]
    out = []
    for line in (data / "prompts/mt_bench/mt_bench_reference_answer_gpt-4.jsonl").read_text().splitlines():
        a = json.loads(line)
        out.append((qs[a["question_id"]], a["choices"][0]["turns"][0]))
    return out


def pairs(data: Path, n: int, seed: int = 0) -> tuple[list[dict], list[tuple[str, str]]]:
    rng = random.Random(seed)
    test = rng.sample(_rows(data, "test"), n)
    return test, _mtbench(data)


def embedding_cuts(data: Path, n: int, seed: int = 0) -> dict:
    from treadle.evals.embedder import get_embedder

    rng = random.Random(seed)
    test, mt = pairs(data, n, seed)
    train = _rows(data, "train")
    by_intent: dict[str, list[str]] = {}
    for r in train:
        by_intent.setdefault(r["intent"], []).append(r["response"])
    intents = sorted(by_intent)
    e = get_embedder()
    refs = [r["response"] for r in test]
    same = [rng.choice(by_intent[r["intent"]])[:CUT] for r in test]
    other = [rng.choice(by_intent[rng.choice([i for i in intents if i != r["intent"]])])[:CUT] for r in test]
    ref_good, ref_bad = e.similarity(refs, same), e.similarity(refs, other)
    reqs = [r["instruction"] for r in test] + [q for q, _ in mt]
    answers = [r["response"][:CUT] for r in test] + [a[:CUT] for _, a in mt]
    wrong = [r[:CUT] for r in other] + [mt[(i + 1 + rng.randrange(len(mt) - 1)) % len(mt)][1][:CUT] for i in range(len(mt))]
    top_good, top_bad = e.similarity(reqs, answers), e.similarity(reqs, wrong)
    rt, ra = best_cut(ref_good, ref_bad)
    ot, oa = best_cut(top_good, top_bad)
    return {"REFERENCE_MIN": {"threshold": rt, "balanced_accuracy": ra, "n_good": len(ref_good), "n_bad": len(ref_bad),
                              "good_mean": sum(ref_good) / len(ref_good), "bad_mean": sum(ref_bad) / len(ref_bad)},
            "ON_TOPIC_MIN": {"threshold": ot, "balanced_accuracy": oa, "n_good": len(top_good), "n_bad": len(top_bad),
                             "good_mean": sum(top_good) / len(top_good), "bad_mean": sum(top_bad) / len(top_bad)}}


def broken(text: str, rng: random.Random) -> tuple[str, str]:
    """(word-shuffled, copy-loop) versions of ``text``."""
    words = text.split()
    shuffled = words[:]
    rng.shuffle(shuffled)
    loop = (" ".join(words[:8]) + " ") * (len(words) // 8 + 1)
    return " ".join(shuffled), loop[: len(text)].strip()


async def fluency_cuts(base_url: str, model: str, data: Path, n: int, seed: int = 0, concurrency: int = 16) -> dict:
    from treadle.evals.client import Endpoint
    from treadle.evals.coherence import FLUENCY_PREFIX, gather_limited

    rng = random.Random(seed + 1)
    test, mt = pairs(data, n, seed)
    reqs = [r["instruction"] for r in test] + [q for q, _ in mt]
    good_txt = [r["response"][:CUT] for r in test] + [a[:CUT] for _, a in mt]
    shuffled, loops = zip(*(broken(t, rng) for t in good_txt), strict=True)
    ep = Endpoint(base_url, model)
    try:
        async def score(texts: list[str]) -> list[float]:
            res = await gather_limited([ep.mean_logprob(FLUENCY_PREFIX.format(request=q), t)
                                        for q, t in zip(reqs, texts, strict=True)], concurrency)
            return [v for v, _ in res if v is not None]

        good, low, high = await score(good_txt), await score(list(shuffled)), await score(list(loops))
    finally:
        await ep.close()
    lo_t, lo_a = best_cut(good, low, good_above=True)
    hi_t, hi_a = best_cut(good, high, good_above=False)
    p975 = sorted(good)[min(len(good) - 1, int(0.975 * len(good)))]
    hi_t = max(hi_t, p975)  # at most ~2.5% of reference replies may fail as "too predictable"
    hi_a = (sum(g <= hi_t for g in good) / len(good) + sum(b > hi_t for b in high) / len(high)) / 2
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    q = sorted(good)
    quant = {f"p{int(f * 100)}": q[min(len(q) - 1, int(f * len(q)))] for f in (0.01, 0.025, 0.5, 0.975, 0.99)}
    return {"good_quantiles": quant, "FLUENCY_MIN": {"threshold": lo_t, "balanced_accuracy": lo_a, "good_mean": mean(good), "bad_mean": mean(low),
                            "n": len(good)},
            "FLUENCY_MAX": {"threshold": hi_t, "balanced_accuracy": hi_a, "good_mean": mean(good), "bad_mean": mean(high),
                            "n": len(good)}}


def main() -> None:
    from treadle.data_files import data_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", default=None, help="server with the base model (fluency); omit to skip fluency")
    p.add_argument("--model", default=None)
    p.add_argument("--n", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data = data_dir()
    out = embedding_cuts(data, args.n, args.seed)
    if args.base_url:
        out.update(asyncio.run(fluency_cuts(args.base_url, args.model, data, args.n, args.seed)))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
