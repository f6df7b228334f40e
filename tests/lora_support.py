"""Helpers for LoRA tests: real PEFT adapters on a tiny transformers model, and merged references."""

from __future__ import annotations

from pathlib import Path

import torch


def make_peft_adapter(base: Path, out: Path, seed: int, r: int = 4, alpha: float = 8.0,
                      targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"),
                      use_rslora: bool = False, std: float = 0.15, **extra: object) -> Path:
    """Save a PEFT LoRA adapter for the model in ``base`` with random non-zero A and B."""
    import transformers
    from peft import LoraConfig, get_peft_model

    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), use_rslora=use_rslora,
                     lora_dropout=0.0, task_type="CAUSAL_LM", **extra)
    peft_model = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    peft_model.save_pretrained(out)
    return out


def merged_model(base: Path, adapter: Path | None):  # noqa: ANN201 - a transformers model
    """The base model, with ``adapter`` merged by PEFT's ``merge_and_unload`` when given."""
    import transformers
    from peft import PeftModel

    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.eval()
    return model


def reference_logits(model, ids: list[int]) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


NEAR_TIE = 1e-4  # a greedy divergence is accepted only where the reference's top-2 logits differ by less


def compare_greedy(model, prompt: list[int], gen: list[int], logprobs: list[dict[int, float]] | None,  # noqa: ANN001
                   tol: float = 1e-4, near_tie: float = NEAR_TIE, banned: tuple[int, ...] = (),
                   min_tokens: int = 0) -> int:
    """Check ``gen`` is the reference's greedy continuation; compare reported logprobs within ``tol``.

    A mismatch is allowed only at a near tie (top-2 reference logits closer than ``NEAR_TIE``);
    comparison stops there (the sequences legitimately part). Returns how many tokens matched.
    ``banned`` (the EOS ids) are excluded from the reference's argmax for the first ``min_tokens`` tokens,
    as the engine's sampler does; reported logprobs are the raw ones, so they are compared unmasked.
    """
    ref = reference_logits(model, prompt + gen)
    for i, tok in enumerate(gen):
        row = ref[len(prompt) - 1 + i]
        choice = row.clone()
        if i < min_tokens and banned:
            choice[list(banned)] = float("-inf")
        best = int(choice.argmax())
        if tok != best:
            gap = float(row[best] - row[tok])
            assert gap < near_tie, f"token {i}: got {tok}, reference {best} (logit gap {gap:.3g} is no near tie)"
            return i
        if logprobs is not None:
            lsm = torch.log_softmax(row, dim=-1)
            for t, lp in logprobs[i].items():
                assert abs(lp - float(lsm[t])) < tol, (i, t, lp, float(lsm[t]))
    return len(gen)
