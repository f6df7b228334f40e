"""SamplingParams validation: every invalid value raises ValueError naming the field."""

from __future__ import annotations

import pytest

from treadle.sampling_params import SamplingParams

INVALID = [
    ("max_tokens", 0),
    ("max_tokens", -5),
    ("max_tokens", 1.5),
    ("max_tokens", True),
    ("temperature", -0.1),
    ("temperature", float("nan")),
    ("temperature", "hot"),
    ("top_p", 0.0),
    ("top_p", 1.01),
    ("top_p", -1.0),
    ("top_k", -2),
    ("top_k", 2.5),
    ("min_p", -0.01),
    ("min_p", 1.5),
    ("repetition_penalty", 0.0),
    ("repetition_penalty", -1.0),
    ("presence_penalty", 2.5),
    ("presence_penalty", -2.5),
    ("frequency_penalty", 2.01),
    ("frequency_penalty", -3.0),
    ("seed", 1.5),
    ("seed", 2**64),
    ("n", 0),
    ("n", 129),
    ("logprobs", -1),
    ("logprobs", 21),
    ("prompt_logprobs", -1),
    ("prompt_logprobs", 21),
    ("min_tokens", -1),
    ("stop", [""]),
    ("stop", ["ok", 3]),
    ("stop_token_ids", [-1]),
]


@pytest.mark.parametrize(("field", "value"), INVALID, ids=[f"{f}={v!r}" for f, v in INVALID])
def test_invalid_value_raises_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError) as exc:
        SamplingParams(**{field: value})
    assert field in str(exc.value)


def test_min_tokens_above_max_tokens_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_tokens"):
        SamplingParams(max_tokens=4, min_tokens=5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"temperature": 0.0},
        {"temperature": 2.0, "top_p": 0.5, "top_k": 10, "min_p": 0.1},
        {"top_k": 0},
        {"top_k": -1},
        {"repetition_penalty": 1.3, "presence_penalty": -2.0, "frequency_penalty": 2.0},
        {"seed": 0},
        {"seed": -1},
        {"n": 128},
        {"logprobs": 0, "prompt_logprobs": 20},
        {"max_tokens": 3, "min_tokens": 3},
        {"stop": "###", "stop_token_ids": [0, 5]},
    ],
)
def test_valid_values_are_accepted(kwargs: dict) -> None:
    SamplingParams(**kwargs)


def test_normalisation_and_helpers() -> None:
    p = SamplingParams(stop="END", stop_token_ids=[3, 4])
    assert p.stop == ("END",)
    assert p.stop_token_ids == (3, 4)
    assert SamplingParams(temperature=0).greedy and not SamplingParams().greedy
    assert not SamplingParams().needs_penalties and SamplingParams(presence_penalty=0.5).needs_penalties
    child = SamplingParams(n=3, seed=10).for_child(2)
    assert child.n == 1 and child.seed == 12
    assert SamplingParams(n=2).for_child(1).seed is None
