"""The shared-prefix SFT loss: a prefix common to every example of a batch is run once.

Algorithm (one padding-free batch of B sequences x_i with labels y_i, -100 where not trained):
1. P = longest common token prefix of the x_i, capped so that no trained label falls at positions 1..P
   (their logits would come from the prefix) and every sequence keeps >= 1 own token. P < ``min_len``
   or B < 2: not worth it, the plain path runs.
2. Run the model on x[:P] once with a KV cache (and one logit row). With LoRA on the projections the
   prefix KV depends on the adapter, so the cache keeps its autograd graph: gradients of every example
   flow back through the one prefix computation, summed, as they would through B copies.
3. Run all suffixes x_i[P:] packed into one row after the cache, positions P.., with a 4-D additive mask:
   every suffix token sees the whole prefix, and causally its own suffix only.
4. Logits only at positions whose next label is trained (``logits_to_keep`` = those indices); loss =
   sum of -log p(label) / ``num_items_in_batch`` (the trained-token count), like TRL's SFT loss.
Same loss and gradients as the plain path up to float rounding (a test pins 1e-5); with LoRA dropout > 0
the prefix shares one dropout mask across the batch instead of B masks.
"""

from __future__ import annotations

import torch

from treadle.tuning.chat import IGNORE

Sequence = tuple[torch.Tensor, torch.Tensor]  # (input_ids [L], labels [L])


def split_packed(input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor) -> list[Sequence]:
    """Split a padding-free row ([1, T]) into its sequences (each starts where position_ids is 0)."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist() + [input_ids.shape[1]]
    return [(input_ids[0, a:b], labels[0, a:b]) for a, b in zip(starts[:-1], starts[1:], strict=True) if b > a]


def shared_prefix_len(seqs: list[Sequence], min_len: int) -> int:
    """P of step 1 (0 when the plain path should run)."""
    if len(seqs) < 2:
        return 0
    first = seqs[0][0]
    limit = min(len(ids) - 1 for ids, _ in seqs)
    for _, lab in seqs:
        trained = (lab != IGNORE).nonzero().flatten()
        if len(trained):
            limit = min(limit, int(trained[0]) - 1)
    limit = max(limit, 0)
    for ids, _ in seqs[1:]:
        n = min(limit, len(ids))
        limit = min(limit, int((ids[:n] == first[:n]).long().cumprod(0).sum()))
    return limit if limit >= min_len else 0


def _suffix_mask(lens: list[int], prefix: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[1, 1, S, P+S] additive mask: prefix visible to all; causal within each suffix, blind across."""
    seq_id = torch.repeat_interleave(torch.arange(len(lens), device=device), torch.tensor(lens, device=device))
    local = torch.cat([torch.arange(n, device=device) for n in lens])
    own = (seq_id[:, None] == seq_id[None, :]) & (local[None, :] <= local[:, None])
    allowed = torch.cat([torch.ones(len(local), prefix, dtype=torch.bool, device=device), own], dim=1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]


def shared_prefix_loss(model: torch.nn.Module, seqs: list[Sequence], prefix: int,
                       num_items_in_batch: int | torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Steps 2-4. Returns (loss, number of trained tokens in this batch)."""
    device = seqs[0][0].device
    out = model(input_ids=seqs[0][0][:prefix][None], use_cache=True, logits_to_keep=1)
    cache = out.cache
    suffixes = [ids[prefix:] for ids, _ in seqs]
    lens = [len(s) for s in suffixes]
    keep, targets, offset = [], [], 0
    for (_ids, lab), n in zip(seqs, lens, strict=True):
        nxt = lab[prefix + 1:]  # label of the token after each suffix position (the last has none)
        idx = (nxt != IGNORE).nonzero().flatten()
        keep.append(idx + offset)
        targets.append(nxt[idx])
        offset += n
    keep_idx, target = torch.cat(keep), torch.cat(targets)
    positions = torch.cat([torch.arange(prefix, prefix + n, device=device) for n in lens])[None]
    dtype = next(p for p in model.parameters()).dtype
    out = model(input_ids=torch.cat(suffixes)[None], position_ids=positions, cache=cache, use_cache=True,
                attention_mask=_suffix_mask(lens, prefix, dtype, device), logits_to_keep=keep_idx)
    logp = torch.log_softmax(out.logits[0].float(), dim=-1).gather(1, target[:, None]).squeeze(1)
    n_items = int(target.numel())
    denom = num_items_in_batch if num_items_in_batch is not None else n_items
    return -logp.sum() / torch.as_tensor(denom, device=device).clamp(min=1), n_items
