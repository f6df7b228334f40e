"""Per-weight-format figures for ``treadle bench engine`` (part ``formats``).

For each format (``EngineConfig.quantization``): offline throughput on the 64-prompt workload
(the same prompts and 128 greedy tokens as the ``throughput`` part), decode rates at 1, 16 and 64
streams of short prompts, CPU-seconds per output token (robust to a shared machine), and, for
formats that are not exact, greedy token agreement with the exact default engine on the 64-prompt
workload: ``token_agreement`` = equal tokens at equal positions / all tokens, ``prefix_agreement``
= tokens before each prompt's first difference / all tokens, ``identical_prompts`` = prompts whose
128 tokens are all equal.
"""

from __future__ import annotations

import time


def generate_greedy(engine, prompts: list[list[int]], tokens: int) -> list[list[int]]:  # noqa: ANN001
    """Greedy continuations (``ignore_eos``) of every prompt, submitted together."""
    from treadle.sampling_params import SamplingParams

    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    ids = [f"agree-{time.perf_counter_ns()}-{i}" for i in range(len(prompts))]
    for rid, p in zip(ids, prompts, strict=True):
        engine.add_request(rid, p, params)
    out: dict[str, list[int]] = {rid: [] for rid in ids}
    while engine.has_unfinished_requests():
        for o in engine.step():
            out[o.request_id].extend(o.outputs[0].delta_token_ids)
    return [out[rid] for rid in ids]


def agreement(reference: list[list[int]], other: list[list[int]]) -> dict[str, float]:
    """Token, prefix and whole-prompt agreement of ``other`` with ``reference`` (same prompts)."""
    if len(reference) != len(other):
        raise ValueError(f"agreement needs the same prompts: {len(reference)} vs {len(other)} outputs")
    total = same = prefix = identical = 0
    for a, b in zip(reference, other, strict=True):
        n = max(len(a), len(b))
        total += n
        same += sum(x == y for x, y in zip(a, b, strict=False))
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        prefix += first
        identical += a == b
    return {"token_agreement": same / total if total else 1.0, "prefix_agreement": prefix / total if total else 1.0,
            "identical_prompts": identical / len(reference) if reference else 1.0}


def decode_rate(engine, prompts: list[list[int]], tokens: int) -> dict[str, float]:  # noqa: ANN001
    """Output tok/s and CPU ms per output token for ``prompts`` run together (``ignore_eos``)."""
    from treadle.sampling_params import SamplingParams

    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    for i, p in enumerate(prompts):
        engine.add_request(f"rate-{time.perf_counter_ns()}-{i}", p, params)
    c0, w0, n = time.process_time(), time.perf_counter(), 0
    while engine.has_unfinished_requests():
        for o in engine.step():
            n += sum(len(c.delta_token_ids) for c in o.outputs)
    return {"tok_s": n / (time.perf_counter() - w0), "cpu_ms_per_token": (time.process_time() - c0) / max(n, 1) * 1e3}


def short_prompts(tokenizer, n: int = 64, max_len: int = 64) -> list[list[int]]:  # noqa: ANN001
    """The first ``n`` ShareGPT chat prompts of at most ``max_len`` tokens (the engine benchmark's selection)."""
    from treadle.bench.engine_bench import throughput_prompts

    return throughput_prompts(tokenizer, n, max_len)


def format_figures(make_engine, reference, prompts: list[list[int]], tokens: int,  # noqa: ANN001
                   formats: tuple[str, ...] = ("none", "int8"), streams: tuple[int, ...] = (1, 16, 64)) -> dict:
    """{format: figures}; ``make_engine(quantization)`` builds an engine, ``reference`` is the exact one."""
    t0 = time.perf_counter()
    ref_out = generate_greedy(reference, prompts, tokens)
    ref_tok_s = sum(map(len, ref_out)) / (time.perf_counter() - t0)
    short = short_prompts(reference.tokenizer, max(streams))
    result: dict[str, dict] = {}
    for fmt in formats:
        engine = reference if fmt == "none" else make_engine(fmt)
        figs: dict = {"weight_format": engine.model.weight_format}
        t0 = time.perf_counter()
        outs = ref_out if fmt == "none" else generate_greedy(engine, prompts, tokens)
        figs["throughput_tok_s"] = ref_tok_s if fmt == "none" else sum(map(len, outs)) / (time.perf_counter() - t0)
        if fmt != "none":
            figs.update(agreement(ref_out, outs))
        for s in streams:
            figs[f"decode_{s}_streams"] = decode_rate(engine, short[:s], tokens)
        result[fmt] = figs
    return result
