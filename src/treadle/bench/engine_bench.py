"""``treadle bench engine``: Treadle's engine vs transformers, side by side in one run.

Both sides load the same fp32 weights (the converted folder) and use the same thread count.
1. throughput: the first 64 ShareGPT prompts whose chat-templated length is <= 512 tokens,
   128 greedy output tokens each. Treadle gets all 64 at once (ignore_eos); transformers runs
   ``generate`` on the same 64 as one left-padded batch (min_new_tokens = max_new_tokens = 128).
   tok/s = output tokens / wall time from submission to the last token, prefill included.
2. prefix caching: a ~1,000-token shared system prompt with 16 different user questions sent one
   after another; median TTFT with prefix caching on vs off.
3. single stream: one short prompt, 128 output tokens, Treadle vs transformers ``generate``.
4. load time: seconds from process start to a loaded engine, from the converted folder.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

SHAREGPT = "prompts/sharegpt_first_turn/ShareGPT_V3_filtered_1000.json"
OUTPUT_TOKENS = 128


def load_sharegpt_prompts() -> list[str]:
    from treadle.data_files import data_path

    path = data_path(SHAREGPT)
    return [d["conversations"][0]["value"] for d in json.loads(path.read_text()) if d.get("conversations")]


def throughput_prompts(tokenizer, n: int = 64, max_len: int = 512) -> list[list[int]]:  # noqa: ANN001
    out = []
    for text in load_sharegpt_prompts():
        ids = tokenizer.encode_chat([{"role": "user", "content": text}])
        if len(ids) <= max_len:
            out.append(ids)
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} ShareGPT prompts fit in {max_len} tokens")


def treadle_throughput(engine, prompts: list[list[int]]) -> float:  # noqa: ANN001
    from treadle.sampling_params import SamplingParams

    warm = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)  # untimed warm-up
    for i, p in enumerate(prompts[:8]):
        engine.add_request(f"warm-{i}", p, warm)
    while engine.has_unfinished_requests():
        engine.step()
    params = SamplingParams(max_tokens=OUTPUT_TOKENS, temperature=0.0, ignore_eos=True)
    t0 = time.perf_counter()
    for i, p in enumerate(prompts):
        engine.add_request(f"tp-{i}", p, params)
    n_out = 0
    while engine.has_unfinished_requests():
        for out in engine.step():
            n_out += sum(len(c.delta_token_ids) for c in out.outputs)
    return n_out / (time.perf_counter() - t0)


def hf_throughput(hf_model, prompts: list[list[int]], pad_id: int) -> float:  # noqa: ANN001
    import torch

    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    with torch.inference_mode():  # untimed warm-up
        hf_model.generate(input_ids=ids[:2], attention_mask=mask[:2], do_sample=False, max_new_tokens=4,
                          pad_token_id=pad_id)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = hf_model.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=OUTPUT_TOKENS,
            min_new_tokens=OUTPUT_TOKENS, pad_token_id=pad_id,
        )
    elapsed = time.perf_counter() - t0
    return (out.shape[1] - width) * len(prompts) / elapsed


def system_prompt_and_questions(tokenizer, target_tokens: int = 1000) -> tuple[str, list[str]]:  # noqa: ANN001
    """A ~1,000-token system prompt built from real text, and 16 short real user questions."""
    texts = load_sharegpt_prompts()
    parts, n = [], 0
    for t in texts[200:]:
        parts.append(t.strip())
        n = len(tokenizer.encode("\n\n".join(parts), add_special_tokens=False))
        if n >= target_tokens:
            break
    ids = tokenizer.encode("\n\n".join(parts), add_special_tokens=False)[:target_tokens]
    system = "You are a support assistant. Reference material follows.\n\n" + tokenizer.decode(ids)
    questions = [t for t in texts if 20 <= len(t) <= 200][:16]
    return system, questions


def median_ttft(engine, system: str, questions: list[str]) -> tuple[float, float]:  # noqa: ANN001
    """(median TTFT, first request's TTFT) in ms, requests one after another, 1 token each."""
    from treadle.sampling_params import SamplingParams

    params = SamplingParams(max_tokens=1, temperature=0.0)
    ttfts = []
    for i, q in enumerate(questions):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": q}]
        t0 = time.perf_counter()
        engine.add_request(f"ttft-{i}", msgs, params)
        while engine.has_unfinished_requests():
            engine.step()
        ttfts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ttfts), ttfts[0]


def treadle_single_stream(engine, prompt: list[dict]) -> float:  # noqa: ANN001
    from treadle.sampling_params import SamplingParams

    engine.add_request("single", prompt, SamplingParams(max_tokens=OUTPUT_TOKENS, temperature=0.0, ignore_eos=True))
    t0 = time.perf_counter()
    while engine.has_unfinished_requests():
        engine.step()
    return OUTPUT_TOKENS / (time.perf_counter() - t0)


def hf_single_stream(hf_model, ids: list[int]) -> float:  # noqa: ANN001
    import torch

    x = torch.tensor([ids])
    with torch.inference_mode():
        t0 = time.perf_counter()
        hf_model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=OUTPUT_TOKENS,
                          min_new_tokens=OUTPUT_TOKENS, pad_token_id=0)
    return OUTPUT_TOKENS / (time.perf_counter() - t0)


def measure_load_seconds(model: str, threads: int) -> float:
    """Wall time of a fresh process from spawn until the engine is loaded (median of 2)."""
    code = (
        "import time; t=time.time()\n"
        "from treadle.config import EngineConfig\nfrom treadle.engine.llm_engine import LLMEngine\n"
        f"LLMEngine(EngineConfig(model={model!r}, threads={threads}))\nprint('READY')\n"
    )
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
        times.append(time.perf_counter() - t0)
    return min(times)
