"""``treadle generate``: one prompt through the offline engine, text streamed to stdout."""

from __future__ import annotations

import argparse
import sys
import time

from treadle.commands.engine_args import add_engine_args, engine_config_from_args


def register(p: argparse.ArgumentParser) -> None:
    add_engine_args(p)
    p.add_argument("--prompt", required=True, help="the user message (or raw text with --raw)")
    p.add_argument("--raw", action="store_true", help="send the prompt as plain text, without the chat template")
    p.add_argument("--system", default=None, help="an optional system message")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    from treadle.engine.llm_engine import LLMEngine
    from treadle.sampling_params import SamplingParams

    t0 = time.perf_counter()
    engine = LLMEngine(engine_config_from_args(args))
    print(f"[treadle] model {engine.model_name} from {engine.model_path}, loaded in {engine.load_seconds:.2f} s",
          file=sys.stderr)
    if args.raw:
        prompt: object = args.prompt
    else:
        prompt = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    engine.add_request("cli", prompt, params)  # type: ignore[arg-type]
    t1 = time.perf_counter()
    final = None
    while engine.has_unfinished_requests():
        for out in engine.step():
            sys.stdout.write(out.outputs[0].delta_text)
            sys.stdout.flush()
            final = out
    sys.stdout.write("\n")
    if final is not None:
        m = final.outputs[0].metrics
        n = m.num_output_tokens if m else len(final.outputs[0].token_ids)
        el = time.perf_counter() - t1
        print(f"[treadle] {n} tokens in {el:.2f} s ({n / el:.1f} tok/s), TTFT {m.ttft * 1000:.0f} ms, "
              f"finish_reason={final.outputs[0].finish_reason}, total {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return 0
