"""Slow: adapters trained in the test with PEFT (TRL's SFTTrainer, a few steps) on the bundled
SmolLM2-135M-Instruct, served together with the base in one batch, against transformers with each
adapter merged (``merge_and_unload``). Run with ``.venv/bin/python -m pytest -q -m slow``.

Tolerances are those of the real-model greedy identity test: on 30 layers the GGUF decode kernel
and the fp32 GEMM sum in another order than transformers, so a greedy divergence is accepted at a
near tie (top-2 logit gap < 1e-3) and log-probabilities agree within 1e-3.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lora_support import compare_greedy, merged_model

pytestmark = pytest.mark.slow
DATA = {  # three tiny, very different fine-tuning sets
    "pirate": ["Arr matey, the ship sails at dawn!", "Arr, hoist the sails, ye scallywags!",
               "Arr matey, where be the treasure?", "Yo ho ho, arr, a pirate's life for me!"],
    "french": ["Bonjour, comment allez-vous aujourd'hui ?", "Le chat dort sur le canapé.",
               "Nous allons au marché ce matin.", "Merci beaucoup, à bientôt !"],
    "digits": ["1 2 3 4 5 6 7 8 9 10 11 12", "2 4 6 8 10 12 14 16 18 20", "3 6 9 12 15 18 21 24",
               "5 10 15 20 25 30 35 40 45"],
}
PROMPTS = ["Tell me about the sea.", "What is your favourite food?", "Count with me:"]
NEW_TOKENS = 24


def train_adapter(base: Path, texts: list[str], out: Path) -> Path:
    """A few SFT steps with PEFT LoRA (r=16 on all seven projections), saved as PEFT saves it."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    cfg = SFTConfig(output_dir=str(out / "run"), max_steps=4, per_device_train_batch_size=2, learning_rate=5e-3,
                    logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=str(base), args=cfg, train_dataset=Dataset.from_dict({"text": texts * 2}),
                         peft_config=lora)
    trainer.train()
    trainer.model.save_pretrained(out)
    return out


@pytest.mark.timeout(3600)
def test_trained_adapters_and_base_in_one_batch_equal_merged_models(tmp_path: Path) -> None:
    from treadle.llm import LLM
    from treadle.models.registry import default_model_path
    from treadle.sampling_params import SamplingParams

    try:
        base = default_model_path()
    except ValueError as e:
        pytest.skip(f"bundled model unavailable: {e}")
    t0 = time.time()
    adapters = {name: train_adapter(base, texts, tmp_path / name) for name, texts in DATA.items()}
    print(f"trained {len(adapters)} adapters in {time.time() - t0:.0f}s", flush=True)
    llm = LLM(str(base), lora_modules=tuple((n, str(p)) for n, p in adapters.items()))
    engine = llm.engine
    params = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS, logprobs=3)
    names = [None, *adapters]
    prompts = {i: engine.tokenize_prompt([{"role": "user", "content": p}])[1] for i, p in enumerate(PROMPTS)}
    for i, ids in prompts.items():
        for name in names:
            engine.add_request(f"{name}-{i}", ids, params, lora_name=name)
    final = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    matched, total = 0, 0
    for name in names:
        ref = merged_model(base, adapters[name] if name else None)
        for i, ids in prompts.items():
            out = final[f"{name}-{i}"].outputs[0]
            n = compare_greedy(ref, ids, out.token_ids, out.logprobs, tol=1e-3, near_tie=1e-3,
                               banned=engine.eos_token_ids, min_tokens=NEW_TOKENS)
            print(f"{name or 'base'} prompt {i}: {n}/{NEW_TOKENS} tokens compared equal", flush=True)
            matched, total = matched + n, total + NEW_TOKENS
    assert matched >= 0.8 * total
    differs = [n for n in adapters if final[f"{n}-0"].outputs[0].token_ids != final["None-0"].outputs[0].token_ids]
    assert differs, "training changed nothing: the test could not tell adapters from the base"
    print(f"done in {time.time() - t0:.0f}s; {matched}/{total} tokens compared; adapters that differ: {differs}")
