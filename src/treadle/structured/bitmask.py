"""The token bitmask of a step: one row of ``ceil(vocab / 32)`` int32 words per sampled row.

Bit ``t % 32`` of word ``t // 32`` is 1 when token ``t`` is allowed (llguidance's layout).
Unconstrained rows stay all ones (-1). :func:`apply_bitmask` turns the disallowed logits of the
constrained rows to -inf in one vectorised pass (no per-row Python loop, no torch.compile).
"""

from __future__ import annotations

import torch

_SHIFTS = torch.arange(32, dtype=torch.int32)


def allocate(rows: int, vocab_size: int) -> torch.Tensor:
    return torch.full((rows, (vocab_size + 31) // 32), -1, dtype=torch.int32)


def allowed_tokens(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Bool tensor (rows, vocab_size): True where the bitmask allows the token."""
    bits = (bitmask.unsqueeze(-1) >> _SHIFTS) & 1
    return bits.view(bitmask.shape[0], -1)[:, :vocab_size].bool()


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor, rows: list[int],
                  fallback_ids: tuple[int, ...] = ()) -> None:
    """Set the logits of disallowed tokens to -inf in ``rows`` (in place).

    ``bitmask`` has one row per entry of ``rows``. A row whose mask leaves no finite logit (for
    example ``min_tokens`` banned the EOS that the grammar requires) gets ``fallback_ids`` (EOS)
    allowed at logit 0, so sampling never picks from an all -inf row.
    """
    if not rows:
        return
    idx = torch.tensor(rows)
    sub = logits[idx]
    sub.masked_fill_(~allowed_tokens(bitmask, sub.shape[1]), float("-inf"))
    dead = ~torch.isfinite(sub).any(dim=1)
    if fallback_ids and bool(dead.any()):
        for j in dead.nonzero().flatten().tolist():
            sub[j, list(fallback_ids)] = 0.0
    logits[idx] = sub
