"""The controller registry: names, lazy classes, unknown names."""

import subprocess
import sys

import pytest

from automc.errors import AutomcError
from automc.search import registry
from automc.search.base import Controller


def test_names_and_descriptions() -> None:
    assert registry.names() == ["amc", "ilp", "optuna-gp", "optuna-nsga2", "optuna-tpe", "random", "ray"]
    assert list(registry.describe()) == registry.names()
    assert all(isinstance(d, str) and d and "\n" not in d for d in registry.describe().values())


@pytest.mark.parametrize("name", ["random", "optuna-tpe", "optuna-nsga2", "optuna-gp", "ilp"])
def test_factories_are_controllers(name: str) -> None:
    cls = registry.get_factory(name)
    assert issubclass(cls, Controller) and cls.name == name


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(
        AutomcError, match="unknown controller 'tpe' \\(known: amc, ilp, optuna-gp, optuna-nsga2, optuna-tpe"
    ):
        registry.create("tpe")


CONTROLLER_MODULES = ("random_search", "optuna_search", "ray_tune", "amc")


def test_listing_imports_no_controller_module_nor_torch() -> None:
    code = "import sys; from automc.search import registry; registry.describe(); print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert "automc.search.registry" in loaded
    assert not loaded & {"torch", "optuna", "ray", *(f"automc.search.{m}" for m in CONTROLLER_MODULES)}


def test_get_factory_imports_the_controller_module() -> None:
    code = (
        "import sys; from automc.search import registry; cls = registry.get_factory('random'); "
        "print(cls.__module__, 'automc.search.random_search' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["automc.search.random_search", "True"]


def test_unknown_option_is_an_error() -> None:
    from automc.search import Objective, Recorder
    from automc.space import SearchSpace
    from automc.testing.controller_contract import TOY_SPACE, toy_layers

    space = SearchSpace.from_dict(dict(TOY_SPACE)).bind(toy_layers())
    recorder = Recorder(None, "s", [Objective.named("acc")], {})
    with pytest.raises(
        AutomcError, match="unknown option\\(s\\) populaton_size \\(known: population_size, warm_start\\)"
    ):
        registry.create(
            "optuna-nsga2",
            space=space,
            objectives=[Objective.named("acc")],
            recorder=recorder,
            populaton_size=4,
        )
