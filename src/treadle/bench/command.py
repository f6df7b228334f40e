"""``treadle bench``: benchmark subcommands (``engine``, ``serve``, ``compare``, ``fleet``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", required=True)
    e = sub.add_parser("engine", help="engine vs transformers: throughput, prefix-cache TTFT, single stream, load")
    e.add_argument("--model", default="default", help="'default' or a local HF folder (same weights both sides)")
    e.add_argument("--json", dest="json_out", default="bench-engine.json", help="where to write the result")
    e.add_argument("--threads", type=int, default=None, help="threads for both sides (default: all cores)")
    e.add_argument("--num-prompts", type=int, default=64)
    e.add_argument("--skip-hf", action="store_true", help="skip the transformers side (ratios become null)")
    e.add_argument("--only", default=None, help="comma list of parts to run (default: throughput,http,prefix,"
                   "single,formats,load; with --num-loras: lora; formats: per weight format, incl. int8 "
                   "token agreement)")
    e.add_argument("--num-loras", type=int, default=0, help="the multi-LoRA part: the workload spread over N "
                   "random adapters vs the base model, and single stream with/without one (docs/LORA.md)")
    e.add_argument("--lora-rank", type=int, default=16, help="rank of the --num-loras adapters")
    e.add_argument("--seed", type=int, default=0)
    from treadle.bench import compare, serve_command

    serve_command.register(sub.add_parser("serve", help="load-test an OpenAI-compatible endpoint with a workload"))
    compare.register(sub.add_parser("compare", help="one workload against several endpoints, in alternating rounds"))
    from treadle.fleet import bench_fleet

    bench_fleet.register(sub.add_parser("fleet", help="routing policies and replica scaling on a local fleet"))
    from treadle.bench import peers

    peers.register(sub.add_parser("peers", help="Treadle vs vLLM CPU vs llama-server, one at a time, 1/16/64 streams"))
    from treadle.tuning import bench as tune_bench  # needs the `tune` extra only when run

    tune_bench.register(sub.add_parser("tune", help="treadle tune SFT speed: plain vs shared-prefix path"))
    from treadle.bench import structured_bench

    structured_bench.register(sub.add_parser("structured", help="a batch with a JSON schema vs the same batch "
                                             "unconstrained; grammar compile times"))


def run(args: argparse.Namespace) -> int:
    if args.bench == "engine":
        return run_engine(args)
    if args.bench == "serve":
        from treadle.bench import serve_command

        return serve_command.run(args)
    if args.bench == "compare":
        from treadle.bench import compare

        return compare.run(args)
    if args.bench == "peers":
        from treadle.bench import peers

        return peers.run(args)
    if args.bench == "tune":
        from treadle.tuning import bench as tune_bench

        return tune_bench.run(args)
    if args.bench == "fleet":
        from treadle.fleet import bench_fleet

        return bench_fleet.run(args)
    if args.bench == "structured":
        from treadle.bench import structured_bench

        return structured_bench.run(args)
    raise ValueError(f"unknown bench {args.bench!r}")


def _log(msg: str) -> None:
    print(f"[bench engine] {msg}", file=sys.stderr, flush=True)


def run_engine(args: argparse.Namespace) -> int:
    import torch

    from treadle.bench import engine_bench as eb
    from treadle.bench.meta import make_meta
    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine

    num_loras = getattr(args, "num_loras", 0)
    only = args.only or ("lora" if num_loras else "throughput,http,prefix,single,formats,load")
    parts = set(only.split(","))
    if "lora" in parts and num_loras < 1:
        raise ValueError("the lora part needs --num-loras N (N >= 1)")
    threads = args.threads or EngineConfig().num_threads
    torch.manual_seed(args.seed)
    cfg = EngineConfig(model=args.model, threads=threads, kv_cache_gb=4.0, max_loras=max(num_loras, 1),
                       max_lora_rank=max(64, getattr(args, "lora_rank", 16)))
    engine = LLMEngine(cfg)
    folder = engine.model_path
    _log(f"model {engine.model_name} from {folder}, {threads} threads")
    hf = None
    if not args.skip_hf and parts - {"lora"}:
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    result: dict = {"kind": "bench-engine", "decode_kernel": engine.decode_kernel}
    fp32: list = []

    def fp32_engine() -> LLMEngine:
        if not fp32:
            fp32.append(LLMEngine(EngineConfig(model=args.model, threads=threads, kv_cache_gb=4.0, decode_kernel=False)))
        return fp32[0]

    ratio = ratio_of

    if "throughput" in parts:
        prompts = eb.throughput_prompts(engine.tokenizer, args.num_prompts)
        _log(f"throughput: {len(prompts)} prompts, {sum(map(len, prompts))} prompt tokens, {eb.OUTPUT_TOKENS} out each")
        result["throughput_tok_s"] = eb.treadle_throughput(engine, prompts)
        _log(f"  treadle {result['throughput_tok_s']:.1f} tok/s")
        result["hf_throughput_tok_s"] = None
        if hf is not None:
            pad = engine.eos_token_ids[0] if engine.eos_token_ids else 0
            result["hf_throughput_tok_s"] = eb.hf_throughput(hf, prompts, pad)
            _log(f"  transformers {result['hf_throughput_tok_s']:.1f} tok/s")
        result["throughput_ratio"] = ratio(result["throughput_tok_s"], result["hf_throughput_tok_s"])
        if engine.decode_kernel:  # the default is more than plain fp32: report plain fp32 too
            result["throughput_fp32_tok_s"] = eb.treadle_throughput(fp32_engine(), prompts)
            _log(f"  treadle, plain fp32 (no decode kernel) {result['throughput_fp32_tok_s']:.1f} tok/s")
        result["throughput_prompt_tokens"] = sum(map(len, prompts))

    if "http" in parts:
        from treadle.bench.http_throughput import http_throughput

        prompts = eb.throughput_prompts(engine.tokenizer, args.num_prompts)
        result.update(http_throughput(args.model, threads, prompts, eb.OUTPUT_TOKENS))
        result["http_throughput_ratio"] = ratio(result["http_throughput_tok_s"], result.get("throughput_tok_s"))
        _log(f"http: {result['http_throughput_tok_s']:.1f} tok/s over {len(prompts)} streaming clients, "
             f"server ready {result['server_ready_s']:.2f} s after start")

    if "prefix" in parts:
        system, questions = eb.system_prompt_and_questions(engine.tokenizer)
        off = LLMEngine(EngineConfig(model=args.model, threads=threads, enable_prefix_caching=False))
        cold, _ = eb.median_ttft(off, system, questions)
        del off
        on = LLMEngine(EngineConfig(model=args.model, threads=threads, enable_prefix_caching=True))
        cached, first = eb.median_ttft(on, system, questions)
        stats = on.get_stats()
        del on
        result.update(
            ttft_cold_ms=cold, ttft_cached_ms=cached, ttft_ratio=cold / cached, ttft_first_request_ms=first,
            prefix_hit_rate=stats["prefix_cache_hit_tokens"] / max(1, stats["prefix_cache_queried_tokens"]),
        )
        _log(f"prefix cache: TTFT off {cold:.0f} ms, on {cached:.0f} ms (x{cold / cached:.1f})")

    if "single" in parts:
        msgs = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
        result["single_stream_tok_s"] = eb.treadle_single_stream(engine, msgs)
        result["hf_single_stream_tok_s"] = None
        if hf is not None:
            result["hf_single_stream_tok_s"] = eb.hf_single_stream(hf, engine.tokenizer.encode_chat(msgs))
        result["single_stream_ratio"] = ratio(result["single_stream_tok_s"], result["hf_single_stream_tok_s"])
        if engine.decode_kernel:
            result["single_stream_fp32_tok_s"] = eb.treadle_single_stream(fp32_engine(), msgs)
            result["single_stream_fp32_ratio"] = ratio(result["single_stream_fp32_tok_s"],
                                                       result["hf_single_stream_tok_s"])
        _log(f"single stream: treadle {result['single_stream_tok_s']:.1f} tok/s, hf {result['hf_single_stream_tok_s']}")

    if "formats" in parts:
        from treadle.bench.format_bench import format_figures

        prompts = eb.throughput_prompts(engine.tokenizer, args.num_prompts)
        result["formats"] = format_figures(
            lambda q: LLMEngine(EngineConfig(model=args.model, threads=threads, kv_cache_gb=4.0, quantization=q)),
            engine, prompts, eb.OUTPUT_TOKENS)
        for fmt, figs in result["formats"].items():
            _log(f"format {fmt}: " + ", ".join(f"{k} {v}" for k, v in figs.items()))

    if "lora" in parts:
        from treadle.bench.lora_bench import lora_bench

        prompts = eb.throughput_prompts(engine.tokenizer, args.num_prompts)
        result["lora"] = lora_bench(engine, prompts, num_loras, args.lora_rank, eb.OUTPUT_TOKENS, _log)

    if "load" in parts:
        del engine
        fp32.clear()
        result["load_s"] = eb.measure_load_seconds(args.model, threads)
        _log(f"load: {result['load_s']:.2f} s from process start")

    result["meta"] = make_meta(threads=threads, seed=args.seed, model=args.model, dtype="float32",
                               engine_config={"max_num_batched_tokens": cfg.max_num_batched_tokens,
                                              "max_num_seqs": cfg.max_num_seqs, "block_size": cfg.block_size})
    Path(args.json_out).write_text(json.dumps(result, indent=2))
    _print_table(result)
    _log(f"wrote {args.json_out} at {time.strftime('%H:%M:%S')}")
    return 0


def ratio_of(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _print_table(r: dict) -> None:
    rows = [
        ("throughput (tok/s)", r.get("throughput_tok_s"), r.get("hf_throughput_tok_s"), r.get("throughput_ratio")),
        ("single stream (tok/s)", r.get("single_stream_tok_s"), r.get("hf_single_stream_tok_s"),
         r.get("single_stream_ratio")),
        ("throughput, plain fp32 (tok/s)", r.get("throughput_fp32_tok_s"), r.get("hf_throughput_tok_s"),
         ratio_of(r.get("throughput_fp32_tok_s"), r.get("hf_throughput_tok_s"))),
        ("single stream, plain fp32 (tok/s)", r.get("single_stream_fp32_tok_s"), r.get("hf_single_stream_tok_s"),
         r.get("single_stream_fp32_ratio")),
        ("TTFT, prefix cache on/off (ms)", r.get("ttft_cached_ms"), r.get("ttft_cold_ms"), r.get("ttft_ratio")),
        ("HTTP throughput vs offline (tok/s)", r.get("http_throughput_tok_s"), r.get("throughput_tok_s"),
         r.get("http_throughput_ratio")),
        ("load (s)", r.get("load_s"), None, None),
        ("server start to ready (s)", r.get("server_ready_s"), None, None),
    ]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"{'metric':34} {'treadle':>10} {'baseline':>10} {'ratio':>8}")
    for name, a, b, c in rows:
        print(f"{name:34} {fmt(a):>10} {fmt(b):>10} {fmt(c):>8}")
