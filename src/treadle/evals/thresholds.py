"""Calibrated thresholds of the embedding and fluency scorers (method and numbers: docs/QUALITY.md).

``python -m treadle.evals.calibrate`` recomputes them; each is the balanced-accuracy
maximising cut between reference texts and broken or mismatched ones (see that module).
"""

# bitext_reply: cosine(reply, reference reply) must reach this.
REFERENCE_MIN = 0.465  # balanced accuracy 0.933 (150 + 150 pairs)
# coherence/on_topic: cosine(request, reply) must reach this.
ON_TOPIC_MIN = 0.419  # balanced accuracy 0.975 (180 + 180 pairs)
# coherence/fluent: mean per-token log-prob of the reply under the base model must lie in this range.
FLUENCY_MIN = -2.638  # balanced accuracy 0.994 vs word-shuffled replies (90 + 90)
FLUENCY_MAX = -0.331  # 97.5th percentile of reference replies; copy loops are left to the repetition check
