"""``--help`` that shows every flag's default, as vLLM's CLI does.

Like ``argparse.ArgumentDefaultsHelpFormatter``, but a help text that already says its default
("default: ...") is left alone, and a ``None`` default (whose meaning the help text explains) or a
store_true flag's ``False`` adds nothing.
"""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or _silent(action.default):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)" if text else "default: %(default)s"
        return text


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give every flag without a help text one that shows its default, in ``parser`` and its
    subcommands (argparse prints nothing at all for a flag without help); sets their formatter."""
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
        elif action.help is None and action.option_strings and not _silent(action.default):
            action.help = "(default: %(default)s)"


def _silent(default: object) -> bool:
    return default is None or default is False or default == argparse.SUPPRESS
