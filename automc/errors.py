"""The one exception type that reaches users.

Every problem caused by what a user handed in (a file, a flag, a name) is raised as
:class:`AutomcError` with a one-line message that names the offending file, field or
value. ``automc.cli`` prints it as ``automc: error: <message>`` and exits with code 2;
Python callers can catch it like any ``ValueError``.
"""

from __future__ import annotations


class AutomcError(ValueError):
    """A user-facing error: one line, names the problem, maps to exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class UnsupportedLayerError(AutomcError):
    """A layer automc cannot price, compress or trace."""


class ConfigError(AutomcError):
    """A malformed data file (search space, device profile, plan, energy table)."""
