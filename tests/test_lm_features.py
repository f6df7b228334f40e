"""LLM hidden-state features for the safety probe: shape, finiteness, padding invariance, disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from treadle.evals.lm_features import LMFeatureCache, LMFeatureExtractor

TEXTS = ["Hello world!", "The quick brown fox jumps over the lazy dog. Continuous batching lets new requests join.",
         "How are you today?"]


def test_one_finite_vector_per_text_at_each_layer(tiny_llama: Path) -> None:
    ext = LMFeatureExtractor(tiny_llama, (1, 2), batch_size=2, threads=1)
    feats = ext.encode(TEXTS + [""])
    assert set(feats) == {1, 2}
    for x in feats.values():
        assert x.shape == (4, 64) and x.dtype == np.float32 and np.isfinite(x).all()
    assert not np.allclose(feats[1], feats[2])  # different layers, different features
    assert not np.allclose(feats[2][0], feats[2][2])  # different texts, different features


def test_padding_does_not_change_a_texts_features(tiny_llama: Path) -> None:
    ext = LMFeatureExtractor(tiny_llama, (1, 2), batch_size=4, threads=1)
    alone = ext.encode([TEXTS[0]])
    padded = ext.encode([TEXTS[0], TEXTS[1]])  # the short text is right-padded to the long one
    for k in (1, 2):
        np.testing.assert_allclose(padded[k][0], alone[k][0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(padded[k][1], ext.encode([TEXTS[1]])[k][0], rtol=1e-4, atol=1e-5)


def test_cache_runs_the_model_once_per_text(tiny_llama: Path, tmp_path: Path) -> None:
    calls: list[int] = []

    def make() -> LMFeatureExtractor:
        calls.append(1)
        return LMFeatureExtractor(tiny_llama, (1, 2), threads=1)

    first = LMFeatureCache(tiny_llama, (1, 2), tmp_path, make).encode(TEXTS)
    again = LMFeatureCache(tiny_llama, (1, 2), tmp_path, make).encode(TEXTS[::-1])  # from disk, no model
    assert len(calls) == 1
    for k in (1, 2):
        np.testing.assert_array_equal(again[k], first[k][::-1])


def test_loso_probe_standardises_per_fold_under_its_own_name() -> None:
    from treadle.evals import safety_loso
    from treadle.evals.safety_sources import LabelledText

    rng = np.random.default_rng(0)
    items, rows = [], []
    for src in ("davidson", "hh_rlhf", "xstest"):
        for i in range(30):
            items.append(LabelledText(src, f"{src} text {i}", i % 2, "post"))
            # one huge, uninformative dimension beside the informative one: standardising tames it
            rows.append([(2 * (i % 2) - 1) + 0.1 * rng.standard_normal(), 1e4 * rng.standard_normal()])
    res = safety_loso.evaluate(items, np.array(rows), None, ("davidson", "hh_rlhf", "xstest"),
                               head_name="smollm2_mid_head", standardise=True)
    assert "minilm_head" not in res["pooled"] and res["pooled"]["smollm2_mid_head"]["n"] == 90
    assert all(r["smollm2_mid_head"]["auroc"] == 1.0 for r in res["per_source"].values())
