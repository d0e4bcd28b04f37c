"""Warm starts: the uniform and global plans at the budget, spec parsing, and the controllers that enqueue them."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from automc.cost import CostModel
from automc.errors import AutomcError
from automc.plan import CompressionPlan
from automc.search.base import Objective
from automc.search.registry import create
from automc.search.storage import Recorder
from automc.search.warm_start import global_values, parse_warm_start, uniform_values, warm_start_values
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
def test_uniform_plans_are_the_largest_single_keep_then_filled_to_the_budget(fraction: float) -> None:
    space = toy_space()
    limits = {"macs": fraction * plan_macs(space.layers, CompressionPlan())}
    plans = uniform_values(space, limits, cost_fn(space))
    keeps = [p for p in space.params if p.field == "keep"]
    bits = [p.name for p in space.params if p.field in ("w_bits", "a_bits")]
    identity = space.identity_values()
    uniform = [v for v in plans if len({v[p.name] for p in keeps}) == 1]
    assert [all(v[b] == 8 for b in bits) for v in uniform] == [False, True]
    for values in plans:
        assert meets(space, values, limits)
        assert all(values[p.name] == identity[p.name] for p in space.params if p.field == "rank")
    for values in uniform:
        level = values[keeps[0].name]
        bigger = [v for v in keeps[0].grid() if v > level]
        if bigger:
            assert not meets(space, {**values, **{p.name: bigger[0] for p in keeps}}, limits)
    float_plan = uniform[0]
    assert all(float_plan[p.name] == identity[p.name] for p in space.params if p.field != "keep")
    filled = [v for v in plans if v not in uniform]
    twins = {tuple(v[b] for b in bits) for v in filled}
    for values in filled + [u for u in uniform if tuple(u[b] for b in bits) not in twins]:
        # filled (or already full): no keep can rise one more grid step within the budget
        for p in keeps:
            grid = p.grid()
            i = grid.index(values[p.name])
            if i + 1 < len(grid):
                assert not meets(space, {**values, p.name: grid[i + 1]}, limits)
    for values in filled:
        base = next(u for u in uniform if all(u[b] == values[b] for b in bits))
        assert all(values[p.name] >= base[p.name] for p in keeps)
        assert cost_fn(space)(space.to_plan(values))["macs"] > cost_fn(space)(space.to_plan(base))["macs"]


def test_a_space_without_a_lower_8_bit_choice_has_one_uniform_plan() -> None:
    space = toy_space(a_bits=False)
    plans = uniform_values(space, {"macs": 0.5 * plan_macs(space.layers, CompressionPlan())}, cost_fn(space))
    assert plans[0] == {**space.identity_values(), **{p.name: 0.5 for p in space.params if p.field == "keep"}}
    assert len(plans) <= 2 and all(v["w_bits/layer1.0.conv1"] == 8 for v in plans)


def test_no_budget_no_uniform_plan_and_an_impossible_one_none() -> None:
    space = toy_space()
    assert uniform_values(space, {}, cost_fn(space)) == []
    assert uniform_values(space, {"macs": 1.0}, None) == []
    assert uniform_values(space, {"macs": 1.0}, cost_fn(space)) == []


def _importance(space: BoundSpace, order: list[int]) -> dict[int, list[float]]:
    """Per-channel scores where every channel of group ``order[i]`` outranks every channel of the
    groups after it (spread inside a group, so a threshold can cut through one)."""
    channels = {s.group: s.out_channels for s in space.layers if s.prunable}
    return {
        g: [10.0 * (len(order) - i) + c / channels[g] for c in range(channels[g])]
        for i, g in enumerate(order)
    }


def test_global_plans_rank_channels_across_groups_by_one_threshold() -> None:
    space = toy_space()
    base = plan_macs(space.layers, CompressionPlan())
    limits = {"macs": 0.6 * base}
    keeps = [p for p in space.params if p.field == "keep"]
    groups = {p.name: next(s.group for s in space.layers if s.name == p.layers[0]) for p in keeps}
    order = sorted(groups.values())
    plans = {}
    for name, ranking in (("forward", order), ("reverse", order[::-1])):
        plans[name] = global_values(space, limits, cost_fn(space), _importance(space, ranking))
        float_plan, int8_plan = plans[name]
        bits = [p.name for p in space.params if p.field in ("w_bits", "a_bits")]
        identity = space.identity_values()
        assert all(float_plan[p.name] == identity[p.name] for p in space.params if p.field != "keep")
        assert all(int8_plan[b] == 8 for b in bits)
        for values in plans[name]:
            assert meets(space, values, limits)
            for p in keeps:  # filled: no keep rises one more grid step within the budget
                grid = p.grid()
                i = grid.index(values[p.name])
                assert i + 1 == len(grid) or not meets(space, {**values, p.name: grid[i + 1]}, limits)
        top = next(p.name for p in keeps if groups[p.name] == ranking[0])
        bottom = next(p.name for p in keeps if groups[p.name] == ranking[-1])
        assert float_plan[bottom] < float_plan[top]
    assert plans["forward"] != plans["reverse"]
    assert global_values(space, {}, cost_fn(space), _importance(space, order)) == []
    assert global_values(space, {"macs": 1.0}, cost_fn(space), _importance(space, order)) == []


def test_the_global_warm_start_needs_the_pipelines_channel_importance() -> None:
    space = toy_space()
    limits = {"macs": 0.4 * plan_macs(space.layers, CompressionPlan())}
    ctrl = create(
        "optuna-tpe",
        space=space,
        objectives=OBJECTIVES,
        recorder=Recorder(None, "global", OBJECTIVES, {}),
        budgets=limits,
        cost_fn=cost_fn(space),
        warm_start="uniform+global",
    )
    evaluate = synthetic_evaluate(space.layers)
    with pytest.raises(AutomcError, match="warm start 'global'.*channel_importance"):
        warm_start_values(ctrl, evaluate, 8)
    importance = _importance(space, sorted({s.group for s in space.layers if s.prunable}))

    class WithImportance:
        def __call__(self, candidate):  # noqa: ANN001, ANN204
            return evaluate(candidate)

        def channel_importance(self) -> dict[int, list[float]]:
            return importance

    got = warm_start_values(ctrl, WithImportance(), 8)
    uniform = uniform_values(space, limits, cost_fn(space))
    assert got[: len(uniform)] == uniform
    assert got[len(uniform) :] == [
        v for v in global_values(space, limits, cost_fn(space), importance) if v not in uniform
    ]


def test_parse_warm_start() -> None:
    assert parse_warm_start(None) == parse_warm_start("none") == ()
    assert parse_warm_start("uniform+ilp") == ("uniform", "ilp")
    assert parse_warm_start("uniform+global+ilp") == ("uniform", "global", "ilp")
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
        firsts[warm] = [dict(t.params) for t in recorder.trials()[: len(expected)]]
    assert 2 <= len(expected) <= 4
    assert firsts[None] == expected
    assert firsts["none"] != expected


@pytest.mark.parametrize(
    ("name", "warm", "message"),
    [
        ("optuna-tpe", "greedy", "optuna-tpe.*unknown warm start 'greedy'"),
        ("amc", "ilp+ilp", "amc controller: unknown warm start 'ilp\\+ilp'"),
        ("random", "ilp", "unknown option\\(s\\) warm_start"),  # a controller without warm starts
    ],
)
def test_a_bad_warm_start_is_refused_by_the_controller(name: str, warm: str, message: str) -> None:
    with pytest.raises(AutomcError, match=message):
        create(
            name,
            space=toy_space(),
            objectives=OBJECTIVES,
            recorder=Recorder(None, "bad", OBJECTIVES, {}),
            warm_start=warm,
        )


def test_the_global_plan_is_torch_prunings_global_pruning_at_the_same_macs() -> None:
    """On resnet20 the ``global`` plan keeps, group by group, what Torch-Pruning's global
    magnitude pruning keeps at the MACs it reaches (to the space's keep grid and its fill)."""
    import torch
    import torch_pruning as tp
    from torch import nn

    from automc import graph, models, resources
    from automc.compress.prune import group_importance
    from automc.plan import kept_channels

    torch.manual_seed(0)
    model = models.create("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    layers = graph.layers(model, x)
    pruned = models.create("resnet20").eval()
    pruned.load_state_dict(model.state_dict())
    last = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1]
    tp.pruner.MetaPruner(
        pruned,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.6,
        global_pruning=True,
        max_pruning_ratio=0.8,
        ignored_layers=[last],
    ).step()
    fraction = graph.count_macs(pruned, x) / graph.count_macs(model, x)
    space = SearchSpace.load(resources.find_space("prune")).bind(layers, model="resnet20")
    cost = cost_fn(space)
    limits = {"macs": fraction * cost(CompressionPlan())["macs"]}
    [values] = global_values(space, limits, cost, group_importance(model, x))
    assert meets(space, values, limits)
    by_name = {s.name: s for s in layers}
    kept = {
        p.layers[0]: kept_channels(by_name[p.layers[0]].out_channels, values[p.name]) for p in space.params
    }
    theirs = {n: m.out_channels for n, m in pruned.named_modules() if n in kept}
    assert len(kept) >= 10
    step = {p.layers[0]: space.param(p.name).step * by_name[p.layers[0]].out_channels for p in space.params}
    # one grid step of the group's keep ratio, and a channel of rounding
    assert all(abs(kept[n] - theirs[n]) <= step[n] + 1 for n in kept), str(
        [(n, kept[n], theirs[n]) for n in kept]
    )
    assert sum(kept.values()) != sum(by_name[n].out_channels for n in kept)
