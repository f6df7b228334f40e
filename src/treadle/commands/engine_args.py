"""Engine flags shared by every command that builds an engine (generate, serve).

The flags are generated from :class:`EngineConfig`'s fields (see :mod:`treadle.config_args`):
add an engine option by adding a field with ``metadata={"help": ...}`` there.
"""

from __future__ import annotations

import argparse

from treadle.config import EngineConfig
from treadle.config_args import add_dataclass_args, dataclass_from_args


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`EngineConfig` field to ``p`` (in a group of its own in ``--help``)."""
    add_dataclass_args(p.add_argument_group("engine"), EngineConfig)


def engine_config_from_args(args: argparse.Namespace) -> EngineConfig:
    """The :class:`EngineConfig` the parsed flags describe (validated by its ``__post_init__``)."""
    return dataclass_from_args(EngineConfig, args)

