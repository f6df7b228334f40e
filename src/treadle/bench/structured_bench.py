"""Structured-output benchmark: the same 64-request batch with and without a JSON schema.

The schema is the Bitext intent task's: an enum of its 27 intents plus a nested object with a
string (``minLength`` so every answer has at least 32 tokens) and a number. Each mode runs the
whole batch on one engine (all requests added at once, ``max_num_seqs`` >= the batch), twice,
alternating, and keeps the faster run of each. Reported: output tokens/s of each mode and their
ratio, the engine time spent waiting for masks after the forward pass, the grammar tokenizer's
one-time setup and the schema's first and cached compile times.

    treadle bench structured --model default --out docs/results/structured_bench.json
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

from treadle.data_files import data_path
from treadle.llm import LLM
from treadle.sampling_params import SamplingParams
from treadle.structured.spec import StructuredSpec


def intent_schema() -> dict:
    with open(data_path("tasks/bitext_customer_support/split_train.csv"), newline="") as f:
        intents = sorted({row["intent"] for row in csv.DictReader(f)})
    return {"type": "object", "properties": {
        "intent": {"enum": intents},
        "details": {"type": "object", "properties": {
            "summary": {"type": "string", "minLength": 60, "maxLength": 200},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
            "required": ["summary", "confidence"], "additionalProperties": False}},
        "required": ["intent", "details"], "additionalProperties": False}


def prompts(n: int) -> list[list[dict]]:
    with open(data_path("tasks/bitext_customer_support/split_test.csv"), newline="") as f:
        rows = [r["instruction"] for r, _ in zip(csv.DictReader(f), range(n), strict=False)]
    system = "Classify the customer request. Answer in JSON with the intent and details."
    return [[{"role": "system", "content": system}, {"role": "user", "content": r}] for r in rows]


def run_batch(llm: LLM, convs: list, params: SamplingParams) -> dict:
    t0 = time.perf_counter()
    outs = llm.generate(list(convs), params)
    wall = time.perf_counter() - t0
    tokens = [len(o.outputs[0].token_ids) for o in outs]
    return {"wall_s": wall, "output_tokens": sum(tokens), "min_tokens_per_request": min(tokens),
            "tok_s": sum(tokens) / wall, "texts": [o.outputs[0].text for o in outs]}


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' or a local HF folder")
    p.add_argument("--requests", type=int, default=64, help="requests in the batch")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: the usable CPUs)")
    p.add_argument("--out", default=None, help="write the result JSON here (default: stdout only)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    register(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    schema = intent_schema()
    llm = LLM(args.model, max_num_seqs=max(args.requests, 1), threads=args.threads)
    compiler = llm.engine.grammar_compiler
    _ = compiler.ll_tokenizer
    spec = StructuredSpec.json_schema(schema)
    t0 = time.perf_counter()
    compiler.template(spec)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiler.template(spec)
    cached = time.perf_counter() - t0
    convs = prompts(args.requests)
    free = SamplingParams(max_tokens=args.max_tokens, temperature=0, ignore_eos=True)
    constrained = SamplingParams(max_tokens=args.max_tokens, temperature=0, structured=spec)
    llm.generate(convs[:4], free)  # warm-up
    runs: dict[str, list[dict]] = {"unconstrained": [], "json_schema": []}
    for _ in range(2):
        runs["unconstrained"].append(run_batch(llm, convs, free))
        rt = llm.engine.runner.structured
        wait0 = rt.wait_s if rt else 0.0
        r = run_batch(llm, convs, constrained)
        r["mask_wait_s"] = llm.engine.runner.structured.wait_s - wait0
        runs["json_schema"].append(r)
    best = {k: max(v, key=lambda r: r["tok_s"]) for k, v in runs.items()}
    valid = 0
    for text in best["json_schema"]["texts"]:
        try:
            json.loads(text)
            valid += 1
        except ValueError:
            pass
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or platform.machine(),
        "threads": llm.engine.config.num_threads, "requests": args.requests, "max_tokens": args.max_tokens,
        "tokenizer_setup_s": compiler.tokenizer_setup_s, "compile_first_s": first, "compile_cached_s": cached,
        "unconstrained_tok_s": best["unconstrained"]["tok_s"], "json_schema_tok_s": best["json_schema"]["tok_s"],
        "ratio": best["json_schema"]["tok_s"] / best["unconstrained"]["tok_s"],
        "json_schema_min_tokens_per_request": best["json_schema"]["min_tokens_per_request"],
        "json_schema_outputs_parsing": f"{valid}/{args.requests}",
        "mask_wait_s": best["json_schema"]["mask_wait_s"], "json_schema_wall_s": best["json_schema"]["wall_s"],
        "runs": {k: [{kk: vv for kk, vv in r.items() if kk != "texts"} for r in v] for k, v in runs.items()},
        "example": best["json_schema"]["texts"][0],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
