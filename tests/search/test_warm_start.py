"""Warm starts: the uniform plans at the budget, spec parsing, and the controllers that enqueue them."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from automc.cost import CostModel
from automc.errors import AutomcError
from automc.plan import CompressionPlan
from automc.search.base import Objective
from automc.search.registry import create
from automc.search.storage import Recorder
from automc.search.warm_start import parse_warm_start, uniform_values
from automc.space import BoundSpace, SearchSpace
from automc.testing.controller_contract import TOY_SPACE, plan_macs, synthetic_evaluate, toy_layers

OBJECTIVES = (Objective.named("acc"), Objective.named("macs"))


def toy_space(*, a_bits: bool = True) -> BoundSpace:
    """The contract's toy space, with 8- or 32-bit activations on every layer."""
    spec = dict(TOY_SPACE)
    if a_bits:
        spec["rules"] = [*spec["rules"], {"select": "*", "a_bits": [8, 32]}]
    return SearchSpace.from_dict(spec, source="toy-space").bind(toy_layers(), model="toy")


def cost_fn(space: BoundSpace):  # noqa: ANN201
    model = CostModel()
    return lambda plan: model.estimate(space.layers, plan).total


def meets(space: BoundSpace, values: Mapping[str, object], limits: Mapping[str, float]) -> bool:
    total = cost_fn(space)(space.to_plan(values))
    return all(total[m] <= v for m, v in limits.items())


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_uniform_plan_is_the_largest_single_keep_that_meets_the_budget(fraction: float) -> None:
    space = toy_space()
    limits = {"macs": fraction * plan_macs(space.layers, CompressionPlan())}
    plans = uniform_values(space, limits, cost_fn(space))
    assert len(plans) == 2
    float_plan, int8_plan = plans
    keeps = [p for p in space.params if p.field == "keep"]
    for values in plans:
        assert meets(space, values, limits)
        assert len({values[p.name] for p in keeps}) == 1
        level = values[keeps[0].name]
        bigger = [v for v in keeps[0].grid() if v > level]
        if bigger:
            assert not meets(space, {**values, **{p.name: bigger[0] for p in keeps}}, limits)
    identity = space.identity_values()
    bits = [p.name for p in space.params if p.field in ("w_bits", "a_bits")]
    assert all(float_plan[p.name] == identity[p.name] for p in space.params if p.field != "keep")
    assert all(int8_plan[b] == 8 for b in bits)
    assert all(int8_plan[p.name] == identity[p.name] for p in space.params if p.field == "rank")


def test_a_space_without_a_lower_8_bit_choice_has_one_uniform_plan() -> None:
    space = toy_space(a_bits=False)
    [plan] = uniform_values(space, {"macs": 0.5 * plan_macs(space.layers, CompressionPlan())}, cost_fn(space))
    assert plan == {**space.identity_values(), **{p.name: 0.5 for p in space.params if p.field == "keep"}}


def test_no_budget_no_uniform_plan_and_an_impossible_one_none() -> None:
    space = toy_space()
    assert uniform_values(space, {}, cost_fn(space)) == []
    assert uniform_values(space, {"macs": 1.0}, None) == []
    assert uniform_values(space, {"macs": 1.0}, cost_fn(space)) == []


def test_parse_warm_start() -> None:
    assert parse_warm_start(None) == parse_warm_start("none") == ()
    assert parse_warm_start("uniform+ilp") == ("uniform", "ilp")
    for bad in ("bogus", "ilp+ilp", "uniform,ilp"):
        with pytest.raises(AutomcError, match="unknown warm start"):
            parse_warm_start(bad)


@pytest.mark.parametrize("name", ["optuna-tpe", "optuna-nsga2", "amc"])
def test_controllers_evaluate_the_uniform_plans_first_by_default(name: str) -> None:
    space = toy_space()
    limits = {"macs": 0.4 * plan_macs(space.layers, CompressionPlan())}
    expected = uniform_values(space, limits, cost_fn(space))
    extra = {"warmup_episodes": 2, "hidden_units": 8} if name == "amc" else {}
    firsts = {}
    for warm in (None, "none"):
        recorder = Recorder(None, f"{name}-{warm}", OBJECTIVES, {})
        options = {} if warm is None else {"warm_start": warm}
        ctrl = create(
            name,
            space=space,
            objectives=OBJECTIVES,
            recorder=recorder,
            budgets=limits,
            cost_fn=cost_fn(space),
            seed=1,
            **options,
            **extra,
        )
        ctrl.drive(synthetic_evaluate(space.layers), 5)
        firsts[warm] = [dict(t.params) for t in recorder.trials()[:2]]
    assert firsts[None] == expected
    assert firsts["none"] != expected


def test_a_bad_warm_start_is_refused_by_the_controller() -> None:
    space = toy_space()
    with pytest.raises(AutomcError, match="optuna-tpe.*unknown warm start 'greedy'"):
        create(
            "optuna-tpe",
            space=space,
            objectives=OBJECTIVES,
            recorder=Recorder(None, "bad", OBJECTIVES, {}),
            warm_start="greedy",
        )
