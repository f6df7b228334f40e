"""Sampler: logits of the rows that sample -> next token ids (and log-probabilities).

Order of operations per row (as vLLM and transformers apply them):
1. ``logit_bias``: each row's (token id, bias) pairs are added, for all rows in one indexed add;
2. penalties: repetition (on prompt + output tokens, divides positive logits and multiplies
   negative ones), presence and frequency (on output tokens only, OpenAI's definition);
3. ``min_tokens``: EOS and stop token ids are masked until that many tokens were generated;
4. structured outputs: the step's token bitmask (one row per constrained row, computed by
   ``treadle.structured``) sets disallowed tokens to -inf, for all constrained rows at once;
5. greedy rows (temperature 0) take the argmax; the others divide by temperature, keep the
   top-k, the top-p nucleus and tokens with probability >= min_p x the maximum, and draw by
   inverse CDF: one uniform ``u`` per row, the token ``k`` with ``cdf[k-1] <= u * cdf[-1] < cdf[k]``
   (cumulative sums in float32), from the request's own generator when it has a seed (so a seeded
   request samples the same tokens whatever else is in the batch). A token of probability 0 is
   never drawn. One random number per row, not one per vocabulary entry: the exponential race
   ``argmax(p / E)`` that GPU samplers use drew 49,152 exponentials per row: 12.2 ms for 16 rows on
   this CPU against 0.36 ms for the inverse-CDF draw (``scripts/sampler_draw_bench.py``).
Log-probabilities are those of the model (log-softmax of the raw logits), as vLLM reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from treadle.sampling_params import SamplingParams
from treadle.structured.bitmask import apply_bitmask, fix_dead_rows


@dataclass
class SamplingRow:
    params: SamplingParams
    all_token_ids: list[int]
    num_prompt_tokens: int
    eos_token_ids: tuple[int, ...]
    generator: torch.Generator | None


class Sampler:
    def __call__(self, logits: torch.Tensor, rows: list[SamplingRow],
                 mask: tuple[list[int], torch.Tensor] | None = None) -> torch.Tensor:
        """Return one token id per row. ``logits`` is modified in place.

        ``mask``: (row indices, bitmask with one row per index) from the structured runtime.
        """
        logits = logits.float()
        _apply_logit_bias(logits, rows)
        for i, row in enumerate(rows):
            p = row.params
            if p.needs_penalties:
                _apply_penalties(logits[i], row)
            if p.min_tokens and len(row.all_token_ids) - row.num_prompt_tokens < p.min_tokens:
                banned = list(p.stop_token_ids) + ([] if p.ignore_eos else list(row.eos_token_ids))
                if banned:
                    logits[i, banned] = float("-inf")
        if mask is not None:
            apply_bitmask(logits, mask[1], mask[0])
        tokens = logits.argmax(dim=-1)
        random_rows = [i for i, r in enumerate(rows) if not r.params.greedy]
        if random_rows:
            idx = torch.tensor(random_rows)
            sub = logits[idx]
            temps = torch.tensor([rows[i].params.temperature for i in random_rows]).unsqueeze(1)
            sub = _filter(sub / temps, [rows[i].params for i in random_rows])
            probs = torch.softmax(sub, dim=-1)
            tokens[idx] = draw(probs, [rows[i].generator for i in random_rows])
        if mask is not None and rows[0].eos_token_ids:
            fix_dead_rows(logits, tokens, mask[0], rows[0].eos_token_ids[0])
        return tokens


def draw(probs: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
    """One token per row of ``probs`` (float32 rows summing to ~1, no row all zero) by inverse CDF; row ``j``'s
    uniform comes from ``generators[j]`` when it is not None, else from torch's global generator.
    Changes only those generators' states (one draw per row). The cumulative sums are float32 (torch's
    float64 cumulative sum is several times slower on this CPU): a zero-mass token adds exactly 0, so it is
    never drawn; a token's mass is resolved to ~1e-7 of the row's."""
    cdf = probs.float().cumsum(dim=-1)
    total = cdf[:, -1:]
    u = torch.empty(len(generators), 1)
    unseeded = [j for j, g in enumerate(generators) if g is None]
    if unseeded:
        u[unseeded] = torch.rand(len(unseeded), 1)
    for j, g in enumerate(generators):
        if g is not None:
            u[j] = torch.rand(1, generator=g)
    picked = torch.searchsorted(cdf, u * total, right=True).squeeze(1)
    over = picked >= probs.shape[1]  # u * total rounded up to the total: take the last token with mass
    if bool(over.any()):
        picked[over] = (cdf[over] < total[over]).sum(dim=-1)
    return picked


def _apply_logit_bias(logits: torch.Tensor, rows: list[SamplingRow]) -> None:
    """Add every row's logit_bias in one indexed add; ids outside the vocabulary were refused earlier."""
    r_idx: list[int] = []
    t_idx: list[int] = []
    vals: list[float] = []
    for i, row in enumerate(rows):
        for t, b in row.params.logit_bias:
            r_idx.append(i)
            t_idx.append(t)
            vals.append(b)
    if r_idx:
        logits.index_put_((torch.tensor(r_idx), torch.tensor(t_idx)), torch.tensor(vals), accumulate=True)


def _apply_penalties(logits: torch.Tensor, row: SamplingRow) -> None:
    p = row.params
    if p.repetition_penalty != 1.0 and row.all_token_ids:
        seen = torch.tensor(sorted(set(row.all_token_ids)))
        vals = logits[seen]
        logits[seen] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
    out = row.all_token_ids[row.num_prompt_tokens :]
    if out and (p.presence_penalty or p.frequency_penalty):
        ids, counts = torch.tensor(out).unique(return_counts=True)
        logits[ids] -= p.frequency_penalty * counts.float() + p.presence_penalty


def _filter(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """Apply top-k, top-p and min-p per row (rows with nothing to filter are left alone)."""
    vocab = logits.shape[1]
    top_k = [p.top_k if 0 < p.top_k < vocab else vocab for p in params]
    top_p = [p.top_p for p in params]
    min_p = [p.min_p for p in params]
    if any(k < vocab for k in top_k) or any(v < 1.0 for v in top_p):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        ranks = torch.arange(vocab).unsqueeze(0)
        drop = ranks >= torch.tensor(top_k).unsqueeze(1)
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly above each token
        drop = before >= torch.tensor(top_p).unsqueeze(1)
        drop[:, 0] = False  # always keep the most likely token
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    if any(v > 0.0 for v in min_p):
        probs = logits.softmax(dim=-1)
        threshold = probs.max(dim=-1, keepdim=True).values * torch.tensor(min_p).unsqueeze(1)
        logits = logits.masked_fill(probs < threshold, float("-inf"))
    return logits


def top_logprobs(
    logits: torch.Tensor, chosen: torch.Tensor, k: list[int]
) -> list[dict[int, float]]:
    """Per row: {chosen token: logprob, then the top-k tokens: logprob} from raw logits."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen_lp = logp.gather(1, chosen.unsqueeze(1)).squeeze(1).tolist()
    kmax = max(k) if k else 0
    top_vals, top_ids = (logp.topk(kmax, dim=-1) if kmax else (None, None))
    out = []
    for i, c in enumerate(chosen.tolist()):
        d = {c: chosen_lp[i]}
        if k[i]:
            for t, v in zip(top_ids[i, : k[i]].tolist(), top_vals[i, : k[i]].tolist(), strict=True):
                d.setdefault(t, v)
        out.append(d)
    return out
