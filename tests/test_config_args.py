"""Flags come from the config dataclasses: every field has one, defaults round-trip, old spellings work."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal

import pytest

from treadle.commands import engine_args
from treadle.config import EngineConfig
from treadle.config_args import add_dataclass_args, cli_fields, dataclass_from_args, field_default
from treadle.server import command as serve_command
from treadle.server.settings import ListenSettings, ServerSettings

SERVE_CLASSES = (EngineConfig, ServerSettings, ListenSettings)


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="treadle serve")
    serve_command.register(p)
    return p


def dests(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in p._actions}


@pytest.mark.parametrize("cls", SERVE_CLASSES)
def test_every_field_has_a_flag_and_its_defaults_round_trip(cls: type) -> None:
    args = serve_parser().parse_args([])
    for f in dataclasses.fields(cls):
        if f.name == "max_num_seqs" and cls is ServerSettings:  # the engine's flag, copied by the command
            assert f.metadata.get("cli") is False and hasattr(args, "max_num_seqs")
            continue
        assert hasattr(args, f.name), f"{cls.__name__}.{f.name} has no flag"
        assert getattr(args, f.name) == field_default(f), f.name
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
    overrides = {"served_model_name": "m"} if cls is ServerSettings else {}
    assert dataclass_from_args(cls, args, **overrides) == cls(**overrides)


def test_engine_config_from_default_flags_is_the_default_config() -> None:
    p = argparse.ArgumentParser()
    engine_args.add_engine_args(p)
    assert engine_args.engine_config_from_args(p.parse_args([])) == EngineConfig()


def test_documented_spellings_still_parse() -> None:
    args = serve_parser().parse_args([
        "--model", "/m", "--max-num-seqs", "4", "--kv-cache-gb", "0.5", "--threads", "2", "--no-prefix-cache",
        "--no-decode-kernel", "--num-kv-blocks", "64", "--api-key", "k", "--max-queue", "-1",
        "--default-max-tokens", "9", "--drain-timeout", "3", "--dtype", "bfloat16", "--max-model-len", "128",
        "--served-model-name", "tiny", "--port", "0", "--log-level", "debug",
    ])
    cfg = engine_args.engine_config_from_args(args)
    assert cfg == EngineConfig(model="/m", max_num_seqs=4, kv_cache_gb=0.5, threads=2, enable_prefix_caching=False,
                               decode_kernel=False, num_kv_blocks=64, dtype="bfloat16", max_model_len=128)
    s = dataclass_from_args(ServerSettings, args, max_num_seqs=cfg.max_num_seqs)
    assert s == ServerSettings("tiny", api_key="k", default_max_tokens=9, max_queue=None, max_num_seqs=4)
    assert dataclass_from_args(ListenSettings, args) == ListenSettings(port=0, drain_timeout=3.0, log_level="debug")
    on = serve_parser().parse_args(["--prefix-cache", "--decode-kernel", "--max-queue", "7", "--threads", "none"])
    assert (on.enable_prefix_caching, on.decode_kernel, on.max_queue, on.threads) == (True, True, 7, None)


def test_help_shows_every_default() -> None:
    p = serve_parser()
    for a in p._actions:
        if a.dest != "help":
            assert "default" in (a.help or ""), f"{a.option_strings[0]} does not show its default"
    text = " ".join(p.format_help().split())
    assert "(default: 128)" in text and "(default: 256)" in text and "(default: 120.0)" in text


def test_bad_values_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        serve_parser().parse_args(["--max-num-seqs", "lots"])
    assert "--max-num-seqs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        serve_parser().parse_args(["--dtype", "int3"])
    assert "--dtype" in capsys.readouterr().err
    args = serve_parser().parse_args(["--max-num-seqs", "0"])
    with pytest.raises(ValueError, match="max_num_seqs"):
        engine_args.engine_config_from_args(args)


def test_a_new_field_is_one_edit() -> None:
    @dataclasses.dataclass(frozen=True)
    class Extended(EngineConfig):
        spec_tokens: int | None = dataclasses.field(default=None, metadata={"help": "draft tokens per step"})
        fast_path: bool = dataclasses.field(default=False, metadata={"help": "take the fast path"})
        mode: str = dataclasses.field(default="a", metadata={"help": "mode", "choices": ("a", "b")})
        hidden: int = dataclasses.field(default=3, metadata={"cli": False})

    p = argparse.ArgumentParser()
    add_dataclass_args(p, Extended)
    assert {"spec_tokens", "fast_path", "mode"} <= set(dests(p)) and "hidden" not in dests(p)
    assert "draft tokens per step (default: none)" in p.format_help()
    got = dataclass_from_args(Extended, p.parse_args(["--spec-tokens", "4", "--fast-path", "--mode", "b"]))
    assert (got.spec_tokens, got.fast_path, got.mode, got.hidden) == (4, True, "b", 3)
    assert dataclass_from_args(Extended, p.parse_args([])) == Extended()
    assert [f.name for f in cli_fields(Extended)][-3:] == ["spec_tokens", "fast_path", "mode"]
    other = argparse.ArgumentParser()  # another command: its own default, one field left to a sibling
    add_dataclass_args(other, Extended, skip=("threads",), defaults={"mode": "b"})
    assert "threads" not in dests(other) and other.parse_args([]).mode == "b"
    assert "(default: b)" in other.format_help()


def test_sequences_and_literals() -> None:
    @dataclasses.dataclass(frozen=True)
    class Many:
        modules: tuple[str, ...] = dataclasses.field(default=(), metadata={"help": "name=path pairs"})
        ids: list[int] = dataclasses.field(default_factory=list, metadata={"help": "ids"})
        policy: Literal["fcfs", "priority"] = dataclasses.field(default="fcfs", metadata={"help": "order"})

    p = argparse.ArgumentParser()
    add_dataclass_args(p, Many)
    got = dataclass_from_args(Many, p.parse_args(["--modules", "a=/x", "b=/y", "--ids", "1", "2",
                                                  "--policy", "priority"]))
    assert got == Many(modules=("a=/x", "b=/y"), ids=[1, 2], policy="priority")
    assert dataclass_from_args(Many, p.parse_args([])) == Many()
    with pytest.raises(SystemExit):
        p.parse_args(["--policy", "lifo"])


def test_an_unmappable_type_fails_at_declaration() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bad:
        ids: dict[str, int] = dataclasses.field(default_factory=dict, metadata={"help": "ids"})

    with pytest.raises(TypeError, match="ids"):
        add_dataclass_args(argparse.ArgumentParser(), Bad)


def test_engine_config_has_no_unused_seed() -> None:
    assert "seed" not in {f.name for f in dataclasses.fields(EngineConfig)}
