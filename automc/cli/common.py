"""Argument helpers shared by the verb modules (no torch at import time)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from automc.errors import AutomcError

if TYPE_CHECKING:
    from automc.plan import CompressionPlan


MODEL_HELP = "zoo name (automc list models), tv:<torchvision name> or package.module:factory of your code"


def add_model_arguments(parser: argparse.ArgumentParser, *, repeatable: bool = False) -> None:
    """``--model`` (required; repeatable when ``repeatable``) and ``--model-kwargs``: the model a
    command works on, built by ``automc.models.user.from_flag`` (your code only from a path you type)."""
    if repeatable:
        parser.add_argument(
            "--model", action="append", required=True, metavar="NAME", help=MODEL_HELP + " (repeatable)"
        )
    else:
        parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument(
        "--model-kwargs", metavar="JSON", help="keyword arguments of a package.module:factory model"
    )


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"1x3x32x32"`` -> ``(1, 3, 32, 32)``; anything else is an AutomcError."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise AutomcError(f"--input: cannot parse {text!r}; expected e.g. 1x3x32x32") from None
    if len(shape) < 2 or any(s <= 0 for s in shape):
        raise AutomcError(f"--input: {text!r} must be at least two positive sizes, e.g. 1x3x32x32")
    return shape


def automc_home() -> Path:
    """Cache folder for trained base models etc.: ``$AUTOMC_HOME`` or ``~/.cache/automc``."""
    return Path(os.environ.get("AUTOMC_HOME") or Path.home() / ".cache" / "automc")


def read_plan(path: str) -> CompressionPlan:
    """Load ``--plan`` JSON; a missing/unreadable/invalid file is an AutomcError naming it."""
    from automc.plan import CompressionPlan
    from automc.schema.common import read_text

    try:
        text = read_text(path)
    except AutomcError as e:
        raise AutomcError(f"--plan: {e}") from None
    return CompressionPlan.from_json(text, where=str(Path(path)))
