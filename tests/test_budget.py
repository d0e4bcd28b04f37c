"""Budget and objective parsing, constraint values and the impossible-budget check."""

from __future__ import annotations

import pytest

from automc.budget import (
    cheapest_corners,
    check_feasible_space,
    constraints,
    parse_budget,
    parse_budgets,
    parse_objectives,
    resolve,
)
from automc.errors import AutomcError
from automc.space import SearchSpace
from automc.testing.controller_contract import TOY_SPACE, plan_macs, toy_layers


@pytest.mark.parametrize(
    ("token", "metric", "value", "relative"),
    [
        ("flops=0.5", "macs", 0.5, True),
        ("macs=0.3", "macs", 0.3, True),
        ("flops=30%", "macs", 0.3, True),
        ("flops=20M", "macs", 20e6, False),
        ("FLOPS=1.5g", "macs", 1.5e9, False),
        ("macs=250000", "macs", 250000.0, False),
        ("params=1.2M", "params", 1.2e6, False),
        ("params=800k", "params", 800e3, False),
        ("size=1MB", "size_bytes", 1e6, False),
        ("size=2KiB", "size_bytes", 2048.0, False),
        ("size=0.25", "size_bytes", 0.25, True),
        ("size=1.5 MiB", "size_bytes", 1.5 * 1024**2, False),
        ("latency=2ms", "latency_ms", 2.0, False),
        ("latency=500us", "latency_ms", 0.5, False),
        ("latency=0.01s", "latency_ms", 10.0, False),
        ("energy=0.5mJ", "energy_mj", 0.5, False),
        ("energy=300uJ", "energy_mj", 0.3, False),
        ("energy=1J", "energy_mj", 1000.0, False),
        ("energy=1e-3J", "energy_mj", 1.0, False),
    ],
)
def test_parse_budget_table(token: str, metric: str, value: float, relative: bool) -> None:
    b = parse_budget(token)
    assert (b.metric, b.relative) == (metric, relative)
    assert b.value == pytest.approx(value)


@pytest.mark.parametrize(
    ("token", "needle"),
    [
        ("flops", "expected METRIC=VALUE"),
        ("speed=2", "expected METRIC=VALUE"),
        ("flops=abc", "cannot parse the value 'abc'"),
        ("flops=-1", "cannot parse"),
        ("flops=0", "must be a positive number"),
        ("flops=20X", "unknown unit 'X'"),
        ("latency=5", "needs a unit"),
        ("size=10kg", "unknown unit 'kg'"),
        ("energy=2mW", "unknown unit"),
        ("flops=150%", "at most 100%"),
    ],
)
def test_unparsable_budgets_name_the_token(token: str, needle: str) -> None:
    with pytest.raises(AutomcError) as err:
        parse_budget(token)
    assert needle in str(err.value)
    assert repr(token) in str(err.value)


def test_several_budgets_as_list_and_repeated_flag() -> None:
    budgets = parse_budgets(["flops=0.5,latency=2ms", "size=1MB"])
    assert [b.metric for b in budgets] == ["macs", "latency_ms", "size_bytes"]
    with pytest.raises(AutomcError, match="already limited by 'flops=0.5'"):
        parse_budgets("flops=0.5,macs=10M")


def test_resolve_fractions_against_the_base_cost() -> None:
    limits = resolve(
        parse_budgets("flops=0.25,params=1M,latency=0.5"), {"macs": 4e6, "params": 2e6, "latency_ms": 3.0}
    )
    assert limits == pytest.approx({"macs": 1e6, "params": 1e6, "latency_ms": 1.5})
    with pytest.raises(AutomcError, match="latency and energy budgets need a hardware profile"):
        resolve(parse_budgets("energy=0.5"), {"macs": 1.0})


def test_objectives() -> None:
    objs = parse_objectives("acc,latency,energy")
    assert [(o.name, o.direction) for o in objs] == [
        ("acc", "maximize"),
        ("latency_ms", "minimize"),
        ("energy_mj", "minimize"),
    ]
    assert [o.name for o in parse_objectives(["kl", "flops,params,size"])] == [
        "kl",
        "macs",
        "params",
        "size_bytes",
    ]
    with pytest.raises(AutomcError, match="objective 'speed': unknown"):
        parse_objectives("acc,speed")
    with pytest.raises(AutomcError, match="given twice"):
        parse_objectives("flops,macs")
    with pytest.raises(AutomcError, match="at least one objective"):
        parse_objectives("")


def test_constraints_are_cost_over_limit_minus_one() -> None:
    c = constraints({"macs": 50.0, "latency_ms": 3.0}, {"macs": 100.0, "latency_ms": 2.0})
    assert c == pytest.approx({"macs": -0.5, "latency_ms": 0.5})
    with pytest.raises(AutomcError, match="gives no energy_mj"):
        constraints({"macs": 1.0}, {"energy_mj": 1.0})


def test_impossible_budget_is_refused_with_the_cheapest_cost() -> None:
    bound = SearchSpace.from_dict(dict(TOY_SPACE)).bind(toy_layers())
    cheapest = plan_macs(bound.layers, bound.to_plan(bound.extreme_values()))

    def cost_fn(plan):
        return {"macs": plan_macs(bound.layers, plan)}

    check_feasible_space(bound, cost_fn, {"macs": cheapest * 1.01})
    with pytest.raises(AutomcError) as err:
        check_feasible_space(bound, cost_fn, {"macs": cheapest * 0.5})
    assert "cannot be met: the smallest plan in the space costs" in str(err.value)
    with pytest.raises(AutomcError, match="gives no latency_ms"):
        check_feasible_space(bound, cost_fn, {"latency_ms": 1.0})


def test_feasibility_counts_plans_whose_low_bits_or_ranks_cost_more_latency() -> None:
    """On a deployment runtime a low-bit or a factorised layer can be slower than a float or
    a single one: a latency budget met by the space's smallest keep at the base's bits and
    ranks is not refused because the all-extreme plan misses it."""
    bound = SearchSpace.from_dict(dict(TOY_SPACE)).bind(toy_layers())

    def cost_fn(plan):
        low_bits = sum(plan.choice(s.name).w_bits <= 4 for s in bound.layers)
        factorised = sum(plan.choice(s.name).rank is not None for s in bound.layers)
        return {"latency_ms": plan_macs(bound.layers, plan) * 1e-6 * (1 + low_bits) + 5.0 * factorised}

    corners = [cost_fn(bound.to_plan(v))["latency_ms"] for v in cheapest_corners(bound)]
    extreme = cost_fn(bound.to_plan(bound.extreme_values()))["latency_ms"]
    assert len(corners) == 4 and min(corners) < extreme
    check_feasible_space(bound, cost_fn, {"latency_ms": min(corners) * 1.01})
    with pytest.raises(AutomcError, match="cannot be met"):
        check_feasible_space(bound, cost_fn, {"latency_ms": min(corners) * 0.99})
