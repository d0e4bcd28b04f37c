"""``automc list models|datasets|criteria|controllers|quantizers``: what can be named where."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

HELP = "list the models, datasets, pruning criteria, search controllers or quantizers automc knows"

KINDS = ("models", "datasets", "criteria", "controllers", "quantizers")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="what to list")


def _models() -> Mapping[str, str]:
    from automc.models import TV_PREFIX, describe

    return {
        **describe(),
        f"{TV_PREFIX}<name>": "any torchvision classification model (random init, 3 channels)",
    }


def _datasets() -> Mapping[str, str]:
    from automc.data import describe

    return describe()


def _criteria() -> Mapping[str, str]:
    from automc.compress.criteria import describe

    return describe()


def _controllers() -> Mapping[str, str]:
    from automc.search.registry import describe

    return describe()


def _quantizers() -> Mapping[str, str]:
    from automc.compress.quantizers import describe

    return describe()


SOURCES: dict[str, Callable[[], Mapping[str, str]]] = {
    "models": _models,
    "datasets": _datasets,
    "criteria": _criteria,
    "controllers": _controllers,
    "quantizers": _quantizers,
}


def run(args: argparse.Namespace) -> int:
    entries = SOURCES[args.kind]()
    width = max((len(name) for name in entries), default=0)
    for name, description in entries.items():
        print(f"{name:<{width}}  {description}".rstrip())
    return 0
