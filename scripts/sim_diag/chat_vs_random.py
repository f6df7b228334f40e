"""Per step: ShareGPT chat prompts (the chat template applied, as `bench serve` sends them) against random-token
prompts of the same length that share the chat prompt's first 48 tokens, engine alone, 2 threads, by the wall
clock, beside the bundled 2-thread fit. 8 chat prompts warm up; 16 are timed. Prints, per step: kind, prompt
tokens, prefill tokens computed (the rest were cached), attention (thousand pairs), measured ms, fit ms.

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/chat_vs_random.py
"""

import numpy as np

from treadle.bench.workloads import make_workload
from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.sampling_params import SamplingParams
from treadle.sim.calibrate import _timed_steps
from treadle.sim.cost_model import load_cost_model


def main() -> None:
    fit = load_cost_model("cpu-smollm2").fits[2]
    eng = LLMEngine(EngineConfig(model="default", threads=2))
    one = SamplingParams(max_tokens=1, ignore_eos=True)
    rng = np.random.default_rng(0)

    def run(ids: list[int], kind: str) -> None:
        out: list = []
        eng.add_request(None, ids, one, prompt_token_ids=ids)
        _timed_steps(eng, out, "wall")
        for s, t in out:
            print(kind, len(ids), s.prefill_tokens, round(s.prefill_attention, 1), round(t * 1000, 1),
                  round(fit.seconds(s) * 1000, 1))

    for i, r in enumerate(make_workload("sharegpt", 24, 0, 16)):
        ids = eng.tokenize_prompt(r.messages)[1]
        run(ids, "warm" if i < 8 else "chat")
        if i >= 8:
            k = min(48, len(ids) - 1)
            run(ids[:k] + rng.integers(100, 40000, size=len(ids) - k).tolist(), "rand")


if __name__ == "__main__":
    main()
