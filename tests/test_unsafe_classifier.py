"""The live unsafe-content classifier: sources, embedding cache, head, leave-one-source-out metrics."""

from __future__ import annotations

import numpy as np
import pytest

from treadle.data_files import data_dir
from treadle.evals import safety_loso, safety_sources
from treadle.evals.embed_cache import EmbeddingCache
from treadle.evals.safety_sources import LabelledText
from treadle.evals.unsafe import UnsafeClassifier, fit_head, source_weights


def test_auroc_and_recall_at_fpr_exact() -> None:
    s = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    # pairs (pos > neg): 0.9 beats 4, 0.8 beats 4, 0.4 beats 3 of 4 -> 11/12
    assert safety_loso.auroc(s, y) == pytest.approx(11 / 12)
    assert safety_loso.auroc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5  # a tie counts half
    assert safety_loso.auroc(s[:3], y[:3]) is None  # one class only
    # fpr 0.25 of 4 safe texts: at most 1 above the cut -> cut = 0.3 (2nd highest safe), recall 3/3
    assert safety_loso.recall_at_fpr(s, y, 0.25) == 1.0
    # fpr 0: cut at the highest safe score 0.7 -> 0.9, 0.8 above: 2/3
    assert safety_loso.recall_at_fpr(s, y, 0.0) == pytest.approx(2 / 3)


def test_pair_order_counts_rejected_above_chosen() -> None:
    items = [LabelledText("hh_rlhf", "a", 1, "reply", "g1"), LabelledText("hh_rlhf", "b", 0, "reply", "g1"),
             LabelledText("hh_rlhf", "c", 1, "reply", "g2"), LabelledText("hh_rlhf", "d", 0, "reply", "g2"),
             LabelledText("hh_rlhf", "e", 1, "request", "g2")]
    assert safety_loso.pair_order(items, np.array([0.9, 0.1, 0.2, 0.3, 0.99])) == 0.5


def test_source_weights_equalise_sources() -> None:
    items = [LabelledText("a", "x", 1, "post")] * 3 + [LabelledText("b", "y", 0, "post")]
    w = source_weights(items)
    assert w.tolist() == pytest.approx([2 / 3] * 3 + [2.0])
    assert w.sum() == pytest.approx(len(items))


def test_embedding_cache_encodes_only_new_texts(tmp_path) -> None:
    calls: list[list[str]] = []

    def fake(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    path = tmp_path / "emb.npz"
    cache = EmbeddingCache(path, fake)
    x = cache.encode(["ccc", "a", "ccc"])
    assert x[:, 0].tolist() == [3, 1, 3] and calls == [["a", "ccc"]]  # shortest first, once each
    again = EmbeddingCache(path, fake)  # reloaded from disk
    assert again.encode(["a", "bb"])[:, 0].tolist() == [1, 2] and calls[-1] == ["bb"]


def test_sources_labels_follow_the_data() -> None:
    xs = safety_sources.xstest(data_dir())
    prompts = [t for t in xs if t.kind == "request"]
    assert len(prompts) == 450 and sum(t.label for t in prompts) == 200
    replies = [t for t in xs if t.kind == "reply"]
    assert len(replies) == 2250 and 0 < sum(t.label for t in replies) < 400
    assert all(t.label == 1 for t in safety_sources.advbench(data_dir()))
    assert all(t.label == 0 for t in safety_sources.assistant(data_dir(), 10))
    sg = safety_sources.sharegpt(data_dir())
    assert len(sg) == 1000 and all(t.label == 0 and t.kind == "request" for t in sg)
    cl = safety_sources.clinc150(data_dir(), 30)
    assert len(cl) == 30 and all(t.label == 0 and t.kind == "request" for t in cl)
    assert cl == safety_sources.clinc150(data_dir(), 30)  # seeded
    hh = safety_sources.hh_rlhf(data_dir(), 20)
    assert {t.kind for t in hh} == {"request", "reply"} and all(len(t.text) <= safety_sources.MAX_CHARS for t in hh)


def test_evaluate_leave_one_source_out_on_separable_features() -> None:
    """Each source held out in turn; a head on features that carry the label ranks it perfectly."""
    rng = np.random.default_rng(0)
    items, rows = [], []
    for src in ("davidson", "hh_rlhf", "xstest"):
        for i in range(40):
            label = i % 2
            items.append(LabelledText(src, f"{src} {'bad' if label else 'fine'} text {i}", label, "post"))
            rows.append(np.r_[2 * label - 1 + 0.1 * rng.standard_normal(), rng.standard_normal(3)])
    res = safety_loso.evaluate(items, np.array(rows), None, ("davidson", "hh_rlhf", "xstest", "advbench"))
    assert set(res["per_source"]) == {"davidson", "hh_rlhf", "xstest"}  # advbench: no items, skipped
    for src in res["per_source"].values():
        assert src["minilm_head"]["auroc"] == 1.0 and src["minilm_head"]["n"] == 40
        assert src["tfidf_refit"]["auroc"] > 0.9  # the words 'bad' / 'fine' carry the label too
    assert res["pooled"]["minilm_head"]["n"] == 120 and res["pooled"]["minilm_head"]["recall"] == 1.0


def test_unsafe_classifier_flags_at_threshold(monkeypatch) -> None:
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    head = fit_head(x, np.array([1, 1, 0, 0]))

    class FakeEmbedder:
        def encode(self, texts: list[str]) -> np.ndarray:
            return np.array([[1.0, 0.0] if "bad" in t else [0.0, 1.0] for t in texts])

    monkeypatch.setattr("treadle.evals.embedder.get_embedder", lambda: FakeEmbedder())
    clf = UnsafeClassifier(head)
    assert clf.predict(["bad thing", "nice thing"]) == [True, False]
    assert clf.predict([]) == []
    with pytest.raises(ValueError, match="both safe and unsafe"):
        fit_head(x, np.array([1, 1, 1, 1]))
