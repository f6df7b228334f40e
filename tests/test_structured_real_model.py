"""The official `openai` client's `parse()` with Pydantic models on the bundled model (slow): every
answer parses against its schema; tools round-trip with the grammar on a real model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from test_server_support import ServerProcess

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


class Intent(StrEnum):
    cancel_order = "cancel_order"
    track_order = "track_order"
    get_refund = "get_refund"


class Details(BaseModel):
    summary: str = Field(max_length=80)
    urgent: bool


class Ticket(BaseModel):
    intent: Intent
    details: Details


class Person(BaseModel):
    name: str = Field(max_length=40)
    age: int = Field(ge=0, le=120)


class Colors(BaseModel):
    colors: list[Annotated[str, Field(max_length=20)]] = Field(max_length=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(Path("default"), tmp_path_factory.mktemp("real-structured") / "server.log",
                        "--threads", "2")
    yield srv
    srv.stop()


@pytest.mark.parametrize(("model", "prompt"), [
    (Ticket, "I want my money back for order 123, it arrived broken!"),
    (Person, "Invent a person: give a name and an age."),
    (Colors, "Name up to three colors of the French flag."),
])
def test_parse_with_pydantic_models(server: ServerProcess, model: type[BaseModel], prompt: str) -> None:
    with server.client(timeout=300) as client:
        for seed in range(3):
            r = client.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                              response_format=model, max_tokens=200, temperature=0.7, seed=seed)
            choice = r.choices[0]
            assert choice.finish_reason == "stop", choice.message.content
            assert isinstance(choice.message.parsed, model), choice.message.content


def test_required_tool_call_on_the_real_model(server: ServerProcess) -> None:
    tool = {"type": "function", "function": {"name": "lookup_order", "parameters": {
        "type": "object", "properties": {"order_id": {"type": "string", "pattern": "^[0-9]{1,8}$"}},
        "required": ["order_id"], "additionalProperties": False}}}
    with server.client(timeout=300) as client:
        r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Where is order 4521?"}],
                                           tools=[tool], tool_choice="required", parallel_tool_calls=False,
                                           max_tokens=60, temperature=0)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments)["order_id"].isdigit()
