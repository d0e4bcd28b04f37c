"""``automc list KIND``: the names automc knows of one kind, one ``name  description`` per line.

The kinds are those of :data:`automc.registry.KINDS` (models, datasets, criteria, ...) and
:data:`FILE_KINDS`, the search spaces and device profiles shipped with automc
(:mod:`automc.resources`), described by their files' ``description`` fields.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from automc.registry import KINDS, lookup

FILE_KINDS = ("spaces", "profiles")
"""Kinds listed from the files shipped with automc rather than from a registry."""

HELP = f"list the names automc knows of one kind ({', '.join((*KINDS, *FILE_KINDS))})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=(*KINDS, *FILE_KINDS), help="what to list")


def _prefix_forms(kind: str) -> Mapping[str, str]:
    """Names accepted beyond the registry of ``kind`` (``tv:<name>``, ``imagefolder:PATH``)."""
    if kind == "models":
        from automc import models

        return models.PREFIX_FORMS
    if kind == "datasets":
        from automc import data

        return data.PREFIX_FORMS
    return {}


def _shipped_files(kind: str) -> dict[str, str]:
    """Shipped search space or device profile name -> the ``description`` written in its file."""
    from importlib.resources import files

    from automc import resources
    from automc.schema.hw_profile import AUTO_PROFILE, HW_PROFILE_SCHEMA, auto_profile, load_hw_profile
    from automc.schema.search_space import load_search_space

    if kind == "spaces":
        folder = files(resources.SPACES_PACKAGE)
        return {
            name: load_search_space(str(folder / f"{name}.yaml")).description
            for name in resources.shipped_spaces()
        }
    folder = files(resources.PROFILES_PACKAGE)
    auto = f"the default: the shipped ONNX Runtime CPU profile for this CPU's model and instruction sets (here {auto_profile()})"
    return {
        AUTO_PROFILE: auto,
        **{
            name: load_hw_profile(str(folder / f"{name}.yaml")).device.description
            for name in resources.shipped_profiles(HW_PROFILE_SCHEMA)
        },
    }


def entries(kind: str) -> dict[str, str]:
    """Name -> one-line description of everything ``automc list kind`` prints, in its order."""
    if kind in FILE_KINDS:
        return _shipped_files(kind)
    return {**lookup(kind).describe(), **_prefix_forms(kind)}


def run(args: argparse.Namespace) -> int:
    listed = entries(args.kind)
    width = max((len(name) for name in listed), default=0)
    for name, description in listed.items():
        print(f"{name:<{width}}  {description}".rstrip())
    return 0
