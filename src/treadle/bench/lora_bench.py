"""``treadle bench engine --num-loras N``: multi-LoRA serving cost, in one run on one engine.

1. throughput: the same 64-prompt workload as ``bench engine`` (ShareGPT, 128 greedy tokens each,
   all submitted at once), first on the base model, then with request i under adapter i mod N.
   The adapters are random rank-16 (``--lora-rank``) PEFT adapters on all seven projections,
   written to a temporary folder; their values do not change the cost. Target: >= 0.85x base.
2. single stream: one short prompt, 128 tokens, without and with an adapter. Target: >= 0.85x.
Both sides run on the same engine instance (same weights, threads and decode kernel), base first.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

ALL_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def write_random_adapter(folder: Path, cfg, rank: int, seed: int) -> Path:  # noqa: ANN001 - ModelConfig
    """A PEFT-format LoRA adapter (config + safetensors) with random A and small random B."""
    import torch
    from safetensors.torch import save_file

    from treadle.models.lora import MODULES, _part_shapes

    shapes = _part_shapes(cfg)
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(cfg.num_layers):
        for module in ALL_MODULES:
            proj, idx = MODULES[module]
            out_f, in_f = shapes[proj][idx]
            group = "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            key = f"base_model.model.model.layers.{layer}.{group}.{module}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, in_f, generator=gen) / in_f**0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(out_f, rank, generator=gen) * 1e-3
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": list(ALL_MODULES),
              "use_rslora": False, "use_dora": False, "bias": "none", "task_type": "CAUSAL_LM"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def _run(engine, prompts: list[list[int]], names: list[str | None], max_tokens: int) -> float:  # noqa: ANN001
    """Submit every prompt at once (prompt i under names[i]); output tok/s, prefill included."""
    from treadle.sampling_params import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    t0 = time.perf_counter()
    for i, (p, name) in enumerate(zip(prompts, names, strict=True)):
        engine.add_request(f"lora-bench-{time.perf_counter_ns()}-{i}", p, params, lora_name=name)
    n_out = 0
    while engine.has_unfinished_requests():
        for out in engine.step():
            n_out += sum(len(c.delta_token_ids) for c in out.outputs)
    return n_out / (time.perf_counter() - t0)


def lora_bench(engine, prompts: list[list[int]], num_loras: int, rank: int, output_tokens: int,  # noqa: ANN001
               log=print) -> dict:  # noqa: ANN001
    """Load ``num_loras`` random adapters into ``engine`` and measure base vs adapters."""
    with tempfile.TemporaryDirectory(prefix="treadle-lora-bench-") as tmp:
        names = []
        for k in range(num_loras):
            path = write_random_adapter(Path(tmp) / f"bench-lora-{k}", engine.model_config, rank, seed=k)
            names.append(engine.add_lora(f"bench-lora-{k}", engine.read_lora(str(path))).name)
    warm = prompts[:8]
    _run(engine, warm, [None if i % 2 == 0 else names[i % num_loras] for i in range(len(warm))], 8)  # untimed
    base = _run(engine, prompts, [None] * len(prompts), output_tokens)
    log(f"lora: base model {base:.1f} tok/s over {len(prompts)} prompts")
    spread = [names[i % num_loras] for i in range(len(prompts))]
    lora = _run(engine, prompts, spread, output_tokens)
    log(f"lora: {num_loras} adapters (rank {rank}, all projections) {lora:.1f} tok/s ({lora / base:.2f}x base)")
    short = [engine.tokenize_prompt([{"role": "user", "content": "Write a short story about a lighthouse keeper."}])[1]]
    single_base = _run(engine, short, [None], output_tokens)
    single_lora = _run(engine, short, [names[0]], output_tokens)
    log(f"lora: single stream {single_base:.1f} tok/s base, {single_lora:.1f} with an adapter "
        f"({single_lora / single_base:.2f}x)")
    return {"num_loras": num_loras, "lora_rank": rank, "lora_targets": list(ALL_MODULES),
            "max_loras": engine.config.max_loras, "base_throughput_tok_s": base, "lora_throughput_tok_s": lora,
            "lora_throughput_ratio": lora / base, "base_single_stream_tok_s": single_base,
            "lora_single_stream_tok_s": single_lora, "lora_single_stream_ratio": single_lora / single_base,
            "num_prompts": len(prompts), "output_tokens": output_tokens}
