"""Controller name -> lazy import table (nothing heavy is imported until :func:`create`)."""

from __future__ import annotations

import importlib
from typing import Any

from automc.errors import AutomcError
from automc.search.base import Controller

_TABLE: dict[str, tuple[str, str]] = {
    "random": (
        "automc.search.random_search:RandomController",
        "uniform random sampling of the space (seeded)",
    ),
    "optuna-tpe": (
        "automc.search.optuna_search:TPEController",
        "Optuna multivariate TPE with constraints (c-TPE); multi-objective via MOTPE",
    ),
    "optuna-nsga2": (
        "automc.search.optuna_search:NSGA2Controller",
        "Optuna NSGA-II with constrained domination; best for multi-objective Pareto fronts",
    ),
    "optuna-gp": (
        "automc.search.optuna_search:GPController",
        "Optuna Gaussian-process BO with constraints (slow beyond ~20 params; needs torch)",
    ),
    "ray": (
        "automc.search.ray_tune:RayController",
        "Ray Tune searcher driving trials in parallel Ray workers",
    ),
    "amc": (
        "automc.search.amc:AMCController",
        "AMC: DDPG agent choosing keep ratios layer by layer (FLOPs-clipped)",
    ),
}


def names() -> list[str]:
    """Registered controller names."""
    return list(_TABLE)


def describe() -> dict[str, str]:
    """Controller name -> one-line description."""
    return {name: desc for name, (_, desc) in _TABLE.items()}


def get_factory(name: str) -> type[Controller]:
    """Import and return the controller class registered as ``name`` (checks a name before any work)."""
    if name not in _TABLE:
        raise AutomcError(f"unknown controller {name!r} (known: {', '.join(_TABLE)})")
    target = _TABLE[name][0]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise AutomcError(
                f"controller {name!r} is not available in this installation ({target})"
            ) from None
        raise AutomcError(f"controller {name!r} needs the missing package {e.name!r}") from None
    return getattr(module, attr)


def create(name: str, **kw: Any) -> Controller:
    """Build the controller ``name`` with keyword arguments (see :class:`Controller`)."""
    return get_factory(name)(**kw)
