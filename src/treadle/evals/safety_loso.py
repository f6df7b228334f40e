"""Leave-one-source-out evaluation of the unsafe-content classifiers; writes JSON, prints a table.

For each source S of ``safety_sources.SOURCES``: fit on every other source, score S's texts with
- ``minilm_head``: the MiniLM-embedding logistic head of ``evals.unsafe`` (same weights, same C);
- ``tfidf_refit``: the TF-IDF toxicity pipeline (word 1-2 + char 2-5 grams, LR C=4 balanced),
  refitted as a binary classifier on the same training texts and weights;
- ``tfidf_shipped``: the current toxicity classifier as shipped (Davidson + assistant replies;
  it was trained on Davidson, so its davidson row is not held out);
and report per source: n, unsafe count, AUROC (both classes present), recall and false-positive
rate at the deployed cut (P >= 0.5; the shipped one: predicted hate/offensive), recall at the cut
that leaves 7% of S's safe texts flagged, and for HH-RLHF the share of dialogues whose rejected
reply scores above its chosen one. ``pooled`` gathers every out-of-source score.

``--features`` swaps the head's input (same folds, weights and C): ``minilm`` (default, the live
classifier), or a linear probe on SmolLM2-135M hidden states mean-pooled at block 15 of 30
(``smollm2-mid``) or after the last block and final norm (``smollm2-last``), standardised on each
training fold (``evals.lm_features``; both layers are cached by one pass, ~12 min on two cores).

    flock /tmp/treadle-cpu.lock python -m treadle.evals.safety_loso --out docs/results/safety-classifier-loso.json
    flock /tmp/treadle-cpu.lock python -m treadle.evals.safety_loso --features smollm2-mid \
        --out docs/results/safety-classifier-loso-smollm2-mid.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from treadle.evals.safety_sources import SOURCES, LabelledText

FPR_TARGET = 0.07
CUT = 0.5
FEATURES = ("minilm", "smollm2-mid", "smollm2-last")


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Probability that a random unsafe text outscores a random safe one (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def recall_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float | None:
    """Share of unsafe texts scoring above the cut that flags at most ``fpr`` of the safe ones."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return None
    k = int(np.floor(fpr * len(neg)))  # at most k safe texts strictly above the cut
    cut = np.sort(neg)[::-1][k] if k < len(neg) else -np.inf
    return float((pos > cut).mean())


def pair_order(items: list[LabelledText], scores: np.ndarray) -> float | None:
    """HH-RLHF: share of dialogues whose rejected reply scores strictly above the chosen one."""
    by: dict[str, dict[int, float]] = {}
    for t, s in zip(items, scores, strict=True):
        if t.kind == "reply" and t.group:
            by.setdefault(t.group, {})[t.label] = float(s)
    pairs = [d for d in by.values() if len(d) == 2]
    return sum(d[1] > d[0] for d in pairs) / len(pairs) if pairs else None


def summarise(items: list[LabelledText], scores: np.ndarray, flags: np.ndarray) -> dict:
    y = np.array([t.label for t in items])
    out = {"n": len(items), "n_unsafe": int(y.sum()), "auroc": auroc(scores, y),
           "recall": float(flags[y == 1].mean()) if (y == 1).any() else None,
           "fpr": float(flags[y == 0].mean()) if (y == 0).any() else None,
           f"recall_at_fpr_{FPR_TARGET:g}": recall_at_fpr(scores, y, FPR_TARGET)}
    order = pair_order(items, scores)
    if order is not None:
        out["hh_rejected_above_chosen"] = order
    return out


def _tfidf_binary():  # noqa: ANN202 - sklearn Pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from treadle.evals.classifiers import _pipeline

    feats = _pipeline().steps[0][1]
    return make_pipeline(feats, LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced"))


def evaluate(items: list[LabelledText], x: np.ndarray, shipped: object | None = None,
             sources: tuple[str, ...] = SOURCES, head_name: str = "minilm_head", standardise: bool = False) -> dict:
    """Leave-one-source-out results for every source in ``sources`` (a pure function of its inputs).

    The head on ``x`` is reported as ``head_name``; ``standardise`` z-scores ``x`` with the training
    fold's mean and deviation before fitting (the held-out source never informs the scaling).
    """
    from treadle.evals.unsafe import fit_head, source_weights

    y = np.array([t.label for t in items])
    texts = [t.text for t in items]
    per: dict[str, dict] = {}
    pooled: dict[str, list] = {head_name: [], "tfidf_refit": [], "tfidf_shipped": []}
    pooled_idx: list[int] = []
    for src in sources:
        test = np.array([t.source == src for t in items])
        if not test.any():
            continue
        tr = ~test
        tr_items = [t for t, m in zip(items, tr, strict=True) if m]
        w = source_weights(tr_items)
        te_items = [t for t, m in zip(items, test, strict=True) if m]
        res: dict[str, dict] = {}
        x_tr, x_te = x[tr], x[test]
        if standardise:
            mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
            x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
        head = fit_head(x_tr, y[tr], w)
        s = head.predict_proba(x_te)[:, 1]
        res[head_name] = summarise(te_items, s, s >= CUT)
        pooled[head_name].append((s, s >= CUT))
        tf = _tfidf_binary().fit([texts[i] for i in np.flatnonzero(tr)], y[tr], logisticregression__sample_weight=w)
        s = tf.predict_proba([t.text for t in te_items])[:, 1]
        res["tfidf_refit"] = summarise(te_items, s, s >= CUT)
        pooled["tfidf_refit"].append((s, s >= CUT))
        if shipped is not None:
            s, f = shipped_scores(shipped, [t.text for t in te_items])
            res["tfidf_shipped"] = summarise(te_items, s, f)
            pooled["tfidf_shipped"].append((s, f))
        pooled_idx += np.flatnonzero(test).tolist()
        per[src] = res
    pooled_items = [items[i] for i in pooled_idx]
    pooled_out = {name: summarise(pooled_items, np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]))
                  for name, v in pooled.items() if v}
    return {"per_source": per, "pooled": pooled_out, "sources": dict(Counter(t.source for t in items)),
            "fpr_target": FPR_TARGET, "cut": CUT}


def shipped_scores(clf: object, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(P(hate or offensive), flag) from the shipped 3-class TF-IDF toxicity classifier."""
    pipe = clf.pipeline  # type: ignore[attr-defined]
    prep = [clf._prep(t) for t in texts]  # type: ignore[attr-defined]
    proba = pipe.predict_proba(prep)
    classes = list(pipe.classes_)
    s = proba[:, classes.index(0)] + proba[:, classes.index(1)]
    return s, np.array(clf.predict(texts))  # type: ignore[attr-defined]


def to_text(res: dict) -> str:
    key = f"recall_at_fpr_{FPR_TARGET:g}"
    w = max([14] + [len(name) for r in res["per_source"].values() for name in r])
    lines = [f"{'held-out source':14} {'classifier':{w}} {'n':>5} {'unsafe':>6} {'AUROC':>6} {'recall':>6} {'FPR':>6} "
             f"{'R@7%':>6} {'HH pair':>7}"]
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for src, res_src in list(res["per_source"].items()) + [("pooled", res["pooled"])]:
        for name, m in res_src.items():
            lines.append(f"{src:14} {name:{w}} {m['n']:>5} {m['n_unsafe']:>6} {f(m['auroc']):>6} {f(m['recall']):>6} "
                         f"{f(m['fpr']):>6} {f(m[key]):>6} {f(m.get('hh_rejected_above_chosen')):>7}")
    return "\n".join(lines)


def features(name: str, texts: list[str]) -> tuple[np.ndarray, dict]:
    """(feature rows for ``texts``, what to record about them in ``meta``) for a ``FEATURES`` name."""
    if name == "minilm":
        from treadle.evals.embed_cache import EmbeddingCache

        return EmbeddingCache().encode(texts, progress=True), {}
    from treadle.evals.lm_features import LAST_LAYER, MID_LAYER, LMFeatureCache, model_tag

    cache = LMFeatureCache()
    layer = {"smollm2-mid": MID_LAYER, "smollm2-last": LAST_LAYER}[name]
    x = cache.encode(texts, progress=True)[layer]
    return x, {"features": name, "model": model_tag(cache.model_dir), "layer": layer, "pooling": "mean",
               "standardised": True, "extract_s": round(cache.extract_s, 1)}


def main() -> None:
    from treadle.data_files import data_dir
    from treadle.evals.classifiers import get_classifier
    from treadle.evals.safety_sources import load_sources

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--scale", type=float, default=1.0, help="shrink the sampled sources (a quick look)")
    p.add_argument("--features", choices=FEATURES, default="minilm", help="the head's input (default: minilm)")
    args = p.parse_args()
    items = load_sources(data_dir(), args.scale)
    x, info = features(args.features, [t.text for t in items])
    head_name = "minilm_head" if args.features == "minilm" else args.features.replace("-", "_") + "_head"
    res = evaluate(items, x, get_classifier("toxicity"), head_name=head_name, standardise=args.features != "minilm")
    print(to_text(res))
    if args.out:
        from treadle.bench.meta import make_meta

        res["meta"] = make_meta(seed=0, **info)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
