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
# No upper bound: the model's own greedy replies are more likely under it than any reference text
# (median -0.60, 31 of 160 coherence replies above the references' 97.5th percentile -0.331), and
# copy loops (mean -0.87) sit below them, so a cap would fail good replies and catch no loop;
# runaway repetition is the degeneracy check's job.
FLUENCY_MAX = 0.0
