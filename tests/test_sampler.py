"""The sampler's random draw (inverse CDF, ``treadle.engine.sampler.draw``): exact frequencies, zero-mass tokens
never drawn, seeded rows independent of their batch."""

import torch

from treadle.engine import sampler
from treadle.engine.sampler import draw


def test_draw_matches_the_distribution_and_skips_zero_mass() -> None:
    probs = torch.tensor([[0.0, 0.1, 0.0, 0.6, 0.3, 0.0]])
    g = torch.Generator().manual_seed(7)
    counts = torch.zeros(6)
    for _ in range(20000):
        counts[draw(probs, [g])] += 1
    assert counts[0] == counts[2] == counts[5] == 0
    expected = probs[0] * 20000
    chi2 = float((((counts - expected) ** 2)[[1, 3, 4]] / expected[[1, 3, 4]]).sum())
    assert chi2 < 13.8  # 2 degrees of freedom, p = 0.001


def test_draw_by_inverse_cdf_on_known_uniforms(monkeypatch) -> None:  # noqa: ANN001
    probs = torch.tensor([[0.25, 0.0, 0.25, 0.5, 0.0]] * 5)
    us = torch.tensor([[0.0], [0.2499], [0.25], [0.5], [1.0]], )
    monkeypatch.setattr(sampler.torch, "rand", lambda *a, **k: us.clone())
    # u = 0.25 lands on the boundary: token 1 has no mass, so the draw is token 2; u * total rounded up to the
    # total (u = 1 stands for it) is token 3, the last with mass, never the zero-mass token 4 after it
    assert draw(probs, [None] * 5).tolist() == [0, 0, 2, 3, 3]


def test_seeded_rows_draw_the_same_whatever_the_batch() -> None:
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(4, 1000), dim=-1)
    alone = [int(draw(probs[2:3], [torch.Generator().manual_seed(11)])[0]) for _ in range(1)]
    gens = [None, torch.Generator().manual_seed(3), torch.Generator().manual_seed(11), None]
    batched = draw(probs, gens)
    assert int(batched[2]) == alone[0]
    seq_a = [int(draw(probs[1:2], [g])[0]) for g in [torch.Generator().manual_seed(5)] for _ in range(8)]
    g = torch.Generator().manual_seed(5)
    seq_b = [int(draw(probs, [None, g, None, None])[1]) for _ in range(8)]
    assert seq_a == seq_b
