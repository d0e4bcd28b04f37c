"""``automc list KIND``: the names a registry knows (models, datasets, criteria, ...), one per line."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from automc.registry import KINDS, lookup

HELP = f"list the names automc knows of one kind ({', '.join(KINDS)})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=tuple(KINDS), help="what to list")


def _prefix_forms(kind: str) -> Mapping[str, str]:
    """Names accepted beyond the registry of ``kind`` (``tv:<name>``, ``imagefolder:PATH``)."""
    if kind == "models":
        from automc import models

        return models.PREFIX_FORMS
    if kind == "datasets":
        from automc import data

        return data.PREFIX_FORMS
    return {}


def entries(kind: str) -> dict[str, str]:
    """Name -> one-line description of everything ``automc list kind`` prints, in its order."""
    return {**lookup(kind).describe(), **_prefix_forms(kind)}


def run(args: argparse.Namespace) -> int:
    listed = entries(args.kind)
    width = max((len(name) for name in listed), default=0)
    for name, description in listed.items():
        print(f"{name:<{width}}  {description}".rstrip())
    return 0
