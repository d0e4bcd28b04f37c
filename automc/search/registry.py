"""Controller name -> class, imported lazily (nothing heavy is imported until :func:`get_factory`)."""

from __future__ import annotations

from typing import Any

from automc.registry import Registry
from automc.search.base import Controller

REGISTRY: Registry[type[Controller]] = Registry(kind="controller")
"""Controller name -> its class, declared as a lazy ``"automc.search.module:Class"`` target."""

REGISTRY.add(
    "random", "automc.search.random_search:RandomController", "uniform random sampling of the space (seeded)"
)
REGISTRY.add(
    "optuna-tpe",
    "automc.search.optuna_search:TPEController",
    "Optuna multivariate TPE with constraints (c-TPE); multi-objective via MOTPE",
)
REGISTRY.add(
    "optuna-nsga2",
    "automc.search.optuna_search:NSGA2Controller",
    "Optuna NSGA-II with constrained domination; best for multi-objective Pareto fronts",
)
REGISTRY.add(
    "optuna-gp",
    "automc.search.optuna_search:GPController",
    "Optuna Gaussian-process BO with constraints (slow beyond ~20 params; needs torch)",
)
REGISTRY.add(
    "ray", "automc.search.ray_tune:RayController", "Ray Tune searcher driving trials in parallel Ray workers"
)
REGISTRY.add(
    "amc",
    "automc.search.amc:AMCController",
    "AMC: DDPG agent choosing keep ratios layer by layer (FLOPs-clipped)",
)
REGISTRY.add(
    "ilp",
    "automc.search.solver:IlpController",
    "per-dimension proxy sensitivity + exact MILP knapsack (SciPy HiGHS) under every budget; a front in few evaluations",
)


def names() -> list[str]:
    """Registered controller names, sorted."""
    return REGISTRY.names()


def describe() -> dict[str, str]:
    """Controller name -> one-line description."""
    return REGISTRY.describe()


def get_factory(name: str) -> type[Controller]:
    """Import and return the controller class registered as ``name`` (checks a name before any work).

    Raises:
        AutomcError: unknown name (the message lists the known ones), or a controller whose
            third-party package is not installed.
    """
    return REGISTRY.get(name)


def create(name: str, **kw: Any) -> Controller:
    """Build the controller ``name`` with keyword arguments (see :class:`Controller`)."""
    return get_factory(name)(**kw)
