"""The controller name table."""

import pytest

from automc.errors import AutomcError
from automc.search import registry
from automc.search.base import Controller


def test_names_and_descriptions() -> None:
    assert {"random", "optuna-tpe", "optuna-nsga2", "optuna-gp", "ray", "amc"} <= set(registry.names())
    assert all(isinstance(d, str) and d for d in registry.describe().values())


@pytest.mark.parametrize("name", ["random", "optuna-tpe", "optuna-nsga2", "optuna-gp"])
def test_factories_are_controllers(name: str) -> None:
    cls = registry.get_factory(name)
    assert issubclass(cls, Controller) and cls.name == name


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(AutomcError, match="unknown controller 'tpe' \\(known: random, optuna-tpe"):
        registry.create("tpe")


def test_unknown_option_is_an_error() -> None:
    from automc.search import Objective, Recorder
    from automc.space import SearchSpace
    from automc.testing.controller_contract import TOY_SPACE, toy_layers

    space = SearchSpace.from_dict(dict(TOY_SPACE)).bind(toy_layers())
    recorder = Recorder(None, "s", [Objective.named("acc")], {})
    with pytest.raises(
        AutomcError, match="unknown option\\(s\\) populaton_size \\(known: population_size\\)"
    ):
        registry.create(
            "optuna-nsga2",
            space=space,
            objectives=[Objective.named("acc")],
            recorder=recorder,
            populaton_size=4,
        )
