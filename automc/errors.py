"""The one exception type that reaches users.

Every problem caused by what a user handed in (a file, a flag, a name) is raised as
:class:`AutomcError` with a one-line message that names the offending file, field or
value. ``automc.cli`` prints it as ``automc: error: <message>`` and exits with code 2;
Python callers can catch it like any ``ValueError``.
"""

from __future__ import annotations

import re


class AutomcError(ValueError):
    """A user-facing error: one line, names the problem, maps to exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class UnsupportedLayerError(AutomcError):
    """A layer automc cannot price, compress or trace."""


class ConfigError(AutomcError):
    """A malformed data file (search space, device profile, plan, energy table)."""


def one_line(e: BaseException, limit: int = 300, *, named: bool = True, first_sentence: bool = False) -> str:
    """An exception as one line for a message or a failure record: its whitespace collapsed,
    cut to ``limit`` characters (to the first sentence first, where ``first_sentence``), after
    its type's name unless ``named`` is false. An empty message leaves the type's name alone."""
    text = " ".join(str(e).split())
    if first_sentence:
        text = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    text = text[:limit]
    if not named:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
