"""Greedy tokens of the fused decode path against the per-op layers on the real model (docs/ENGINE.md).

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/fused_vs_per_op_tokens.py
The first 16 ShareGPT prompts of the engine benchmark, 96 greedy tokens each (ignore_eos), generated one
prompt at a time (one-row decode steps) and then as one batch of 8 (multi-row steps), once with
``fused_decode`` on and once off. Prints identical sequences and positions for both.
"""

from treadle.bench.engine_bench import load_sharegpt_prompts
from treadle.llm import LLM
from treadle.sampling_params import SamplingParams


def main() -> None:
    llm = LLM("default")
    prompts = load_sharegpt_prompts()[:16]
    params = SamplingParams(max_tokens=96, temperature=0.0, ignore_eos=True)

    def tokens(fused: bool, batched: bool) -> list[list[int]]:
        llm.engine.model.fused_decode = fused
        if batched:
            return [list(o.outputs[0].token_ids) for o in llm.generate(prompts[:8], params)]
        return [list(llm.generate([p], params)[0].outputs[0].token_ids) for p in prompts]

    for batched in (False, True):
        a, b = tokens(True, batched), tokens(False, batched)
        same = sum(x == y for x, y in zip(a, b, strict=True))
        pos = sum(sum(s == t for s, t in zip(x, y, strict=True)) for x, y in zip(a, b, strict=True))
        print(f"{'batch of 8' if batched else 'one at a time'}: identical sequences {same}/{len(a)}, "
              f"positions {pos}/{sum(map(len, a))}")
    llm.engine.model.fused_decode = True


if __name__ == "__main__":
    main()
