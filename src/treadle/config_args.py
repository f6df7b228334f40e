"""Command-line flags generated from configuration dataclasses: one definition per option.

Each option is declared once, as a dataclass field::

    max_num_seqs: int = field(default=128, metadata={"help": "most sequences in one step"})

and :func:`add_dataclass_args` turns every field into an argparse argument (as vLLM's
``EngineArgs`` and TRL's configs do), so a new option is one edit. The mapping:

- flag ``--field-name`` (underscores become dashes), ``dest`` is the field name;
  ``metadata["aliases"]`` adds other spellings (kept for flags users already type);
- ``int``/``float``/``str`` fields parse with that type; ``X | None`` parses as ``X`` and also
  accepts ``none``; ``metadata["type"]`` overrides the converter (it gets the raw string);
  ``Literal["a", "b"]`` gives a string with those choices;
- ``tuple[X, ...]`` / ``list[X]`` fields take any number of values (``--x a b``), stored as a
  tuple / list of X (``metadata["type"]`` converts each value);
- ``bool`` fields become ``--x/--no-x`` (``argparse.BooleanOptionalAction``); an alias
  ``--y`` also gives ``--no-y``;
- ``metadata["action"]`` sets the argparse action (``AppendTuple``: a tuple field whose flag may
  also be repeated, ``--x a --x b``);
- ``metadata["choices"]`` restricts the values; ``metadata["cli"] = False`` keeps a field off the
  command line (the caller then supplies it);
- every flag's help ends with ``(default: X)`` unless its text already has a ``default:``;
- a field without a default gets a flag defaulting to ``None``: the caller must resolve it.

:func:`dataclass_from_args` builds the dataclass back from the parsed namespace, so the
dataclass's own validation (``__post_init__``) checks command-line input too.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
_NONE_WORDS = ("none", "null")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); any other type -> (type, False)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
        raise TypeError(f"only 'X | None' unions map to a flag, got {tp!r}")
    return tp, False


def _sequence(tp: Any) -> tuple[type, Any] | None:
    """``tuple[X, ...]`` -> (tuple, X); ``list[X]`` -> (list, X); anything else -> None."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and len(args) == 1:
        return list, args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return tuple, args[0]
    return None


class _StoreSequence(argparse.Action):
    """Stores the values as the field's container type (tuple or list)."""

    def __init__(self, *args: Any, sequence_type: type = tuple, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sequence_type = sequence_type  # not `container`: argparse sets that to the group

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, self.sequence_type(values or ()))


def _converter(name: str, base: Any, optional: bool) -> Callable[[str], Any]:
    if base not in (int, float, str):
        raise TypeError(f"field {name!r}: type {base!r} has no flag mapping; give metadata['type']")

    def convert(raw: str) -> Any:
        if optional and raw.strip().lower() in _NONE_WORDS:
            return None
        return base(raw)

    convert.__name__ = base.__name__  # argparse names the type in its error message
    return convert


class AppendTuple(argparse.Action):
    """A repeatable sequence flag: each use adds its values to the tuple (``--x a --x b c`` gives
    ``(a, b, c)``), starting from the field's default, which is not mutated."""

    def __init__(self, *args: Any, sequence_type: type = tuple, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        new = values if isinstance(values, list) else [values]
        setattr(namespace, self.dest, (*(getattr(namespace, self.dest, None) or ()), *new))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _with_default(help_text: str, default: Any) -> str:
    if "default:" in help_text.lower():  # the help already says what the default is
        return help_text
    shown = "none" if default is None else default
    return f"{help_text} (default: {shown})".strip()


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that have a flag (``metadata["cli"]`` not False), in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (calling its factory); ``None`` when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def add_dataclass_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    skip: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add one argument per CLI field of dataclass ``cls`` to ``parser``.

    ``skip`` names fields registered elsewhere (e.g. by another dataclass sharing the parser);
    ``defaults`` overrides a field's default for this parser only (the help shows the override).
    Raises TypeError for a field type with no mapping, so a bad declaration fails at start-up.
    """
    hints = typing.get_type_hints(cls)
    skipped, overrides = set(skip), dict(defaults or {})
    for f in cli_fields(cls):
        if f.name in skipped:
            continue
        meta = f.metadata
        default = overrides.get(f.name, field_default(f))
        names = [_flag(f.name), *meta.get("aliases", ())]
        help_text = meta.get("help", "")
        base, optional = _unwrap_optional(hints[f.name])
        if base is bool and "type" not in meta:
            action = parser.add_argument(*names, dest=f.name, default=default,
                                         action=argparse.BooleanOptionalAction, help=help_text)
            if action.help is not None and "%(default)" not in action.help:  # Python >= 3.14 adds none
                action.help = _with_default(action.help, default)
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": _with_default(help_text, default)}
        choices = meta.get("choices")
        seq = _sequence(base)
        if seq is not None:
            container, base = seq
            kwargs.update(nargs="*", action=_StoreSequence, sequence_type=container)
        if typing.get_origin(base) is typing.Literal:
            choices = choices or typing.get_args(base)
            base = str
        kwargs["type"] = meta.get("type") or _converter(f.name, base, optional)
        if choices is not None:
            kwargs["choices"] = list(choices)
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if "action" in meta:  # the field's own action (e.g. AppendTuple) replaces the sequence handling
            kwargs.pop("nargs", None)
            kwargs.pop("sequence_type", None)
            kwargs["action"] = meta["action"]
        parser.add_argument(*names, **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the parsed ``args``: every CLI field present in ``args``, then ``overrides``.

    Fields without a flag (or skipped) come from ``overrides`` or keep their defaults.
    """
    values = {f.name: getattr(args, f.name) for f in cli_fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)
