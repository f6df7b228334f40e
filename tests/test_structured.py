"""Structured outputs and logit_bias in the engine: grammars compiled by llguidance, the bitmask
applied in the sampler for every constrained row of a step at once (tiny random models)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import torch

from treadle.engine.sampler import Sampler, SamplingRow
from treadle.llm import LLM
from treadle.sampling_params import SamplingParams
from treadle.structured.bitmask import allocate, allowed_tokens, apply_bitmask
from treadle.structured.compiler import GrammarError
from treadle.structured.spec import StructuredSpec

SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"enum": ["cancel_order", "track_order", "refund"]},
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
    },
    "required": ["intent", "ok", "n", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def llm(tiny_llama: Path) -> LLM:
    return LLM(str(tiny_llama), num_kv_blocks=64, threads=1)


def test_bitmask_layout_and_apply() -> None:
    mask = allocate(2, 70)
    mask[0] = 0
    mask[0, 0] = (1 << 3) - (1 << 31)  # tokens 3 and 31 (bit 31 is the int32 sign bit)
    mask[0, 2] = 1 << 1  # token 65
    assert allowed_tokens(mask, 70)[0].nonzero().flatten().tolist() == [3, 31, 65]
    assert bool(allowed_tokens(mask, 70)[1].all())
    logits = torch.zeros(3, 70)
    apply_bitmask(logits, mask, [1, 2])  # row 1 constrained by mask row 0; row 2 by the all-ones row
    assert torch.isfinite(logits[1]).nonzero().flatten().tolist() == [3, 31, 65]
    assert bool(torch.isfinite(logits[0]).all()) and bool(torch.isfinite(logits[2]).all())
    logits = torch.zeros(2, 70)
    apply_bitmask(logits, mask, [0, 1])  # the whole batch: in place
    assert torch.isfinite(logits[0]).nonzero().flatten().tolist() == [3, 31, 65]
    dead = allocate(2, 70)
    dead[0] = 0  # nothing allowed in row 0 (a grammar needing EOS that min_tokens banned)
    rows = [SamplingRow(SamplingParams(temperature=t), [1], 1, (2,), None) for t in (0.0, 1.0)]
    for order in ([0, 1], [1, 0]):
        d = dead[order]
        tokens = Sampler()(torch.randn(2, 70), [rows[i] for i in order], ([0, 1], d))
        assert tokens[order.index(0)].item() == 2  # EOS, never a token picked from an all -inf row


def test_logit_bias_is_clamped_and_applied_per_row() -> None:
    p = SamplingParams(temperature=0, logit_bias={5: 500, 7: -1e9})
    assert p.logit_bias == ((5, 100.0), (7, -100.0))
    with pytest.raises(ValueError, match="logit_bias"):
        SamplingParams(logit_bias={-1: 1.0})
    logits = torch.zeros(2, 10)
    rows = [SamplingRow(p, [1], 1, (2,), None), SamplingRow(SamplingParams(temperature=0), [1], 1, (2,), None)]
    logits[1, 9] = 1.0
    assert Sampler()(logits, rows).tolist() == [5, 9]


def test_logit_bias_steers_generation_and_out_of_vocab_is_refused(llm: LLM) -> None:
    banned = llm.generate("Hello", SamplingParams(max_tokens=4, temperature=0))[0].outputs[0].token_ids[0]
    out = llm.generate("Hello", SamplingParams(max_tokens=4, temperature=0, logit_bias={banned: -100}))
    assert out[0].outputs[0].token_ids[0] != banned
    forced = llm.generate("Hello", SamplingParams(max_tokens=3, temperature=0, ignore_eos=True,
                                                  logit_bias={42: 100}))
    assert forced[0].outputs[0].token_ids == [42, 42, 42]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.generate("Hello", SamplingParams(logit_bias={10**6: 1}))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_schema_output_always_validates(llm: LLM, temperature: float) -> None:
    spec = StructuredSpec.json_schema(SCHEMA)
    params = [SamplingParams(max_tokens=120, temperature=temperature, seed=i, structured=spec) for i in range(6)]
    outs = llm.generate(["Classify: where is my parcel?"] * 6, params)
    for o in outs:
        co = o.outputs[0]
        assert co.finish_reason == "stop", co.text
        jsonschema.validate(json.loads(co.text), SCHEMA)


def test_constrained_and_free_rows_share_a_step(llm: LLM) -> None:
    free = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    alone = llm.generate("Hi there", free)[0].outputs[0].token_ids
    outs = llm.generate(["Hi there", "Pick one", "Digits"], [
        free,
        SamplingParams(max_tokens=20, temperature=0.8, seed=1, structured=StructuredSpec.choice(["yes", "no"])),
        SamplingParams(max_tokens=20, temperature=0.8, seed=2, structured=StructuredSpec("regex", r"[0-9]{3}-[a-c]{2}")),
    ])
    assert outs[0].outputs[0].token_ids == alone  # an unconstrained row is untouched by the mask
    assert outs[1].outputs[0].text in ("yes", "no")
    assert re.fullmatch(r"[0-9]{3}-[a-c]{2}", outs[2].outputs[0].text)


def test_grammar_kinds_and_cache(llm: LLM) -> None:
    lark = 'start: "(" num ")"\nnum: /[0-9]{1,2}/'
    out = llm.generate("x", SamplingParams(max_tokens=10, temperature=1.0, seed=3,
                                           structured=StructuredSpec("grammar", lark)))
    assert re.fullmatch(r"\([0-9]{1,2}\)", out[0].outputs[0].text)
    gbnf = 'root ::= "ab" [0-9]'
    out = llm.generate("x", SamplingParams(max_tokens=10, temperature=0, structured=StructuredSpec("grammar", gbnf)))
    assert re.fullmatch(r"ab[0-9]", out[0].outputs[0].text)
    compiler = llm.engine.grammar_compiler
    before = compiler.compiles
    same = StructuredSpec.json_schema(json.loads(json.dumps(SCHEMA, sort_keys=False)))
    llm.generate("x", SamplingParams(max_tokens=60, temperature=0, structured=same))
    llm.generate("y", SamplingParams(max_tokens=60, temperature=0, structured=StructuredSpec.json_schema(SCHEMA)))
    assert compiler.compiles - before <= 1  # one schema, compiled once whatever the key order


@pytest.mark.parametrize(("spec", "says"), [
    (StructuredSpec.json_schema({"if": {"type": "string"}, "then": {}}), "if"),
    (StructuredSpec.json_schema({"type": "wizard"}), "wizard"),
    (StructuredSpec("regex", "(a"), "unclosed group"),
    (StructuredSpec("grammar", "start: undefined_rule"), "undefined_rule"),
])
def test_bad_or_unsupported_grammar_is_a_value_error(llm: LLM, spec: StructuredSpec, says: str) -> None:
    with pytest.raises(GrammarError, match=re.escape(says)):
        llm.generate("x", SamplingParams(structured=spec))
    assert not llm.engine.has_unfinished_requests()
