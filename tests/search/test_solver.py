"""The ``ilp`` controller: exact knapsack optimum, exact costs, budgets, cached sensitivities, warm starts."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from automc.budget import cheapest_corners
from automc.cost import CostModel, load_profile
from automc.errors import AutomcError
from automc.plan import CompressionPlan, LayerSpec, Measurement
from automc.search.base import Candidate, Controller, Objective
from automc.search.registry import create
from automc.search.solver import SENSITIVITY_ATTR, IlpController
from automc.search.storage import Recorder
from automc.space import BoundSpace, SearchSpace
from automc.testing.controller_contract import (
    TOY_SPACE,
    ControllerContract,
    plan_macs,
    synthetic_evaluate,
    toy_layers,
)

OBJECTIVES = (Objective.named("acc"), Objective.named("macs"))


class Scorer:
    """An evaluate with ``cost(plan)`` (as the pipeline's ``Evaluator``): real cost model, counted calls."""

    def __init__(
        self,
        layers: list[LayerSpec],
        cost_model: CostModel,
        score: Callable[[Candidate], Measurement] | None = None,
        limits: Mapping[str, float] | None = None,
    ) -> None:
        self.layers = layers
        self.cost_model = cost_model
        self.score = score or synthetic_evaluate(layers)
        self.limits = dict(limits or {})
        self.calls: list[str] = []

    def cost(self, plan: CompressionPlan) -> Any:
        return self.cost_model.estimate(self.layers, plan)

    def __call__(self, candidate: Candidate) -> Measurement:
        self.calls.append(candidate.id)
        m = self.score(candidate)
        totals = dict(self.cost(candidate.plan).total)
        cons = {k: totals[k] / v - 1.0 for k, v in self.limits.items()}
        return Measurement(objectives={**m.objectives, "macs": totals["macs"]}, constraints=cons, info=m.info)

    def probes(self) -> int:
        return sum(c.startswith("ilp-probe:") for c in self.calls)


def toy_space() -> BoundSpace:
    return SearchSpace.from_dict(dict(TOY_SPACE), source="toy-space").bind(toy_layers(), model="toy")


def ilp(space: BoundSpace, recorder: Recorder, limits: Mapping[str, float], **options: Any) -> IlpController:
    ctrl = create("ilp", space=space, objectives=OBJECTIVES, recorder=recorder, budgets=limits, **options)
    assert isinstance(ctrl, IlpController)
    return ctrl


def solved(ctrl: Controller, scorer: Scorer, n: int) -> list[Candidate]:
    out = []
    for _ in range(n):
        c = ctrl.ask()
        if c is None:
            break
        out.append(c)
        ctrl.tell(c.id, scorer(c))
    return out


# --- a case whose optimum is known ---------------------------------------------------
def _conv(name: str, index: int, cin: int, cout: int, group: int, src: int) -> LayerSpec:
    return LayerSpec(
        name=name,
        kind="conv2d",
        in_channels=cin,
        out_channels=cout,
        kernel=(3, 3),
        stride=(1, 1),
        padding=(1, 1),
        in_shape=(cin, 8, 8),
        out_shape=(cout, 8, 8),
        macs=9 * cin * cout * 64,
        params=9 * cin * cout,
        group=group,
        in_segments=((src, cin, 1),),
        index=index,
    )


TWO_GROUPS = [
    _conv("stem", 0, 3, 8, 0, -1),
    _conv("a", 1, 8, 8, 1, 0),
    _conv("b", 2, 8, 8, 2, 1),
    _conv("head", 3, 8, 4, 3, 2),
]
LOSS = {  # hand-set accuracy loss of each keep ratio of the two searched groups
    "keep/a": {0.25: 0.30, 0.5: 0.04, 0.75: 0.02, 1.0: 0.0},
    "keep/b": {0.25: 0.045, 0.5: 0.03, 0.75: 0.01, 1.0: 0.0},
}


def _hand_set(candidate: Candidate) -> Measurement:
    acc = 0.9 - sum(LOSS[p][candidate.values[p]] for p in LOSS)
    return Measurement(objectives={"acc": acc})


def test_the_exact_optimum_of_a_two_group_case_is_found() -> None:
    space = SearchSpace.from_dict(
        {
            "schema": "automc/search-space",
            "version": 1,
            "rules": [{"select": "*", "keep": {"low": 0.25, "high": 1.0, "step": 0.25}}],
        },
        source="two-groups",
    ).bind(TWO_GROUPS, model="two")
    assert [p.name for p in space.params] == ["keep/a", "keep/b"]
    cm = CostModel()
    base = cm.estimate(TWO_GROUPS, CompressionPlan()).total["macs"]
    limit = 0.55 * base
    scorer = Scorer(TWO_GROUPS, cm, _hand_set)
    ctrl = ilp(space, Recorder(None, "two", OBJECTIVES, {}), {"macs": limit})
    ctrl.prepare(scorer)
    best = None
    for a, b in itertools.product(space.param("keep/a").grid(), space.param("keep/b").grid()):
        values = {"keep/a": a, "keep/b": b}
        if cm.estimate(TWO_GROUPS, space.to_plan(values)).total["macs"] <= limit:
            loss = LOSS["keep/a"][a] + LOSS["keep/b"][b]
            best = min(best or (loss, values), (loss, values), key=lambda t: t[0])
    assert best is not None
    # MACs = 13824 + 36864 a + 36864 a b + 18432 b (b's input is a's output): within 55% of
    # the base (58291) the least loss is a=0.75, b=0.25 (0.065, 52992 MACs); a=0.5, b=0.5 loses
    # 0.07 and a=0.5, b=0.75 (0.05) costs 59904.
    assert best == (pytest.approx(0.065), {"keep/a": 0.75, "keep/b": 0.25})
    first = ctrl.ask()
    assert first is not None and dict(first.values) == best[1]
    assert ctrl.sensitivity["keep/a"][0.25] == pytest.approx(0.30)


# --- costs, budgets, coupling ------------------------------------------------------------
@pytest.fixture(scope="module")
def profile() -> Any:
    """A shipped CPU profile with a measured latency table (named: ``auto`` depends on the CPU)."""
    return load_profile(Path(__file__).resolve().parents[2] / "hw_profiles" / "cpu-x86-2core-ort.yaml")


def test_solver_costs_equal_the_cost_model_and_every_plan_meets_every_budget(profile: Any) -> None:
    space = toy_space()
    cm = CostModel(profile=profile)
    base = cm.estimate(space.layers, CompressionPlan()).total
    # the toy layers are not in the profile: its global fit prices them mostly as fixed overhead,
    # so the latency budget sits halfway between the cheapest plan and the base
    cheapest = min(
        cm.estimate(space.layers, space.to_plan(v)).total["latency_ms"] for v in cheapest_corners(space)
    )
    limits = {
        "macs": 0.6 * base["macs"],
        "params": 0.8 * base["params"],
        "size_bytes": 0.5 * base["size_bytes"],
        "energy_mj": 0.7 * base["energy_mj"],
        "latency_ms": 0.5 * (cheapest + base["latency_ms"]),
        "peak_activation_bytes": 0.9 * base["peak_activation_bytes"],
    }
    scorer = Scorer(list(space.layers), cm)
    ctrl = ilp(space, Recorder(None, "costs", OBJECTIVES, {}), limits, front_size=4)
    ctrl.prepare(scorer)
    assert ctrl.knapsack is not None
    plans = solved(ctrl, scorer, 10)
    assert len({tuple(sorted(c.values.items())) for c in plans}) == len(plans) == 10
    for c in plans:
        predicted = ctrl.knapsack.table.predict(c.values)
        totals = cm.estimate(space.layers, c.plan).total
        for metric, limit in limits.items():
            assert predicted[metric] == pytest.approx(totals[metric], rel=1e-6), metric
            assert totals[metric] <= limit * (1 + 1e-9), metric
    first, last = (cm.estimate(space.layers, c.plan).total for c in (plans[0], plans[3]))
    assert any(last[m] < first[m] for m in limits), "the sweep tightens the budgets level by level"


def test_a_time_limit_still_gives_plans_within_budget() -> None:
    space = toy_space()
    cm = CostModel()
    limit = 0.5 * plan_macs(space.layers, CompressionPlan())
    scorer = Scorer(list(space.layers), cm)
    ctrl = ilp(space, Recorder(None, "timed", OBJECTIVES, {}), {"macs": limit}, time_limit_s=30.0)
    ctrl.prepare(scorer)
    assert ctrl.knapsack is not None and ctrl.knapsack.time_limit_s == 30.0
    exact = ilp(toy_space(), Recorder(None, "exact", OBJECTIVES, {}), {"macs": limit})
    exact.prepare(Scorer(list(space.layers), cm))
    for c, e in zip(solved(ctrl, scorer, 3), solved(exact, scorer, 3)):
        assert cm.estimate(space.layers, c.plan).total["macs"] <= limit
        assert ctrl.knapsack.timed_out > 0 or dict(c.values) == dict(e.values)


def test_merging_dominated_choices_keeps_the_exact_optimum(profile: Any) -> None:
    import random

    from automc.search.knapsack import CostTable, Knapsack

    space = toy_space()
    cm = CostModel(profile=profile)
    base = cm.estimate(space.layers, CompressionPlan()).total
    identity = space.identity_values()
    for metrics in (["macs"], ["latency_ms", "macs", "size_bytes"]):
        table = CostTable(
            space=space, report_fn=lambda plan: cm.estimate(space.layers, plan), metrics=metrics
        )
        full, reduced = Knapsack(table, reduce=False), Knapsack(table)
        rng = random.Random(len(metrics))
        merged = 0
        for trial in range(12):
            # ties on purpose: a third of the values score exactly 0, as the identity does
            sens = {
                p.name: {
                    v: 0.0 if v == identity[p.name] else rng.choice([0.0, rng.random()]) for v in p.grid()
                }
                for p in table.params
            }
            objective = full.x_vector(sens)
            merged += reduced.n_vars - len(reduced._columns(objective))
            limits = {m: rng.uniform(0.35, 0.9) * base[m] for m in metrics}
            a, b = full.solve(objective, limits), reduced.solve(objective, limits)
            assert (a is None) == (b is None), trial
            if a is None or b is None:
                continue
            loss = [sum(sens[p.name][v[p.name]] for p in table.params) for v in (a, b)]
            assert loss[1] == pytest.approx(loss[0], abs=1e-12), trial
            for m, limit in limits.items():
                assert table.predict(b)[m] <= limit * (1 + 1e-9)
        assert merged > 0, "the constructed case has dominated choices to merge"
    # macs does not depend on bit widths: every w_bits value with a loss is merged into the identity's
    table = CostTable(space=space, report_fn=lambda plan: cm.estimate(space.layers, plan), metrics=["macs"])
    knapsack = Knapsack(table)
    bits = [p for p in table.params if p.field == "w_bits"]
    sens = {p.name: {v: 0.0 if v == identity[p.name] else 0.1 for v in p.grid()} for p in bits}
    kept = knapsack.kept_values(knapsack.x_vector(sens))
    assert bits and all(kept[p.name] == [p.grid().index(identity[p.name])] for p in bits)


def test_coupled_layers_get_one_choice() -> None:
    space = toy_space()
    keeps = [p for p in space.params if p.field == "keep"]
    assert ("layer2.0.conv2", "layer2.0.shortcut") in [p.layers for p in keeps]
    cm = CostModel()
    scorer = Scorer(list(space.layers), cm)
    limit = 0.4 * plan_macs(space.layers, CompressionPlan())
    ctrl = ilp(space, Recorder(None, "coupled", OBJECTIVES, {}), {"macs": limit})
    ctrl.prepare(scorer)
    plans = solved(ctrl, scorer, 8)
    assert any(c.plan.choice("layer2.0.conv2").keep_ratio < 1.0 for c in plans)
    for c in plans:
        assert c.plan.choice("layer2.0.conv2").keep_ratio == c.plan.choice("layer2.0.shortcut").keep_ratio


def test_an_infeasible_budget_is_refused_before_any_scoring() -> None:
    space = toy_space()
    scorer = Scorer(list(space.layers), CostModel())
    ctrl = ilp(space, Recorder(None, "tight", OBJECTIVES, {}), {"macs": 1000.0})
    with pytest.raises(
        AutomcError, match=r"^ilp controller: budget macs=1k cannot be met: the cheapest plan costs 37.2k"
    ):
        ctrl.prepare(scorer)
    assert scorer.calls == []


def test_a_resumed_run_reuses_the_cached_sensitivities(tmp_path: Path) -> None:
    url = str(tmp_path / "study.log")
    space = toy_space()
    limits = {"macs": 0.6 * plan_macs(space.layers, CompressionPlan())}
    first = Scorer(list(space.layers), CostModel(), limits=limits)
    ctrl = ilp(space, Recorder(url, "resume", OBJECTIVES, {"model": "toy"}), limits)
    ctrl.drive(first, 3)
    n_probes = 1 + sum(len(p.grid()) - 1 for p in space.params)
    assert first.probes() == n_probes == ctrl.probes_scored
    assert len(first.calls) == n_probes + 3
    recorder = Recorder(url, "resume", OBJECTIVES, {"model": "toy"})
    assert len(recorder.study.user_attrs[SENSITIVITY_ATTR]["scores"]) == n_probes
    again = Scorer(list(space.layers), CostModel(), limits=limits)
    resumed = ilp(toy_space(), recorder, limits)
    resumed.drive(again, 5)
    assert again.probes() == 0 and resumed.probes_scored == 0
    assert len(again.calls) == 2
    plans = [r.plan for r in recorder.trials()]
    assert len(plans) == 5 and len({str(p) for p in plans}) == 5


# --- warm starts -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["optuna-tpe", "optuna-nsga2", "amc"])
def test_warm_start_evaluates_the_solver_plans_first(name: str) -> None:
    space = toy_space()
    limits = {"macs": 0.6 * plan_macs(space.layers, CompressionPlan())}
    reference = ilp(toy_space(), Recorder(None, "ref", OBJECTIVES, {}), limits)
    ref_scorer = Scorer(list(space.layers), CostModel(), limits=limits)
    reference.prepare(ref_scorer)
    expected = [dict(c.values) for c in solved(reference, ref_scorer, 8)]
    recorder = Recorder(None, name, OBJECTIVES, {})
    ctrl = create(
        name,
        space=space,
        objectives=OBJECTIVES,
        recorder=recorder,
        budgets=limits,
        cost_fn=lambda plan: CostModel().estimate(space.layers, plan).total,
        warm_start="ilp",
        **({"warmup_episodes": 2, "hidden_units": 8} if name == "amc" else {}),
    )
    scorer = Scorer(list(space.layers), CostModel(), limits=limits)
    ctrl.drive(scorer, 10)
    trials = recorder.trials()
    assert len(trials) == 10
    assert [dict(t.params) for t in trials[:8]] == expected
    assert scorer.probes() == ref_scorer.probes() > 0


# --- Ray ---------------------------------------------------------------------------------
@pytest.mark.ray
def test_sensitivity_probes_run_as_ray_tasks(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    space = toy_space()
    limits = {"macs": 0.6 * plan_macs(space.layers, CompressionPlan())}
    local = ilp(toy_space(), Recorder(None, "local", OBJECTIVES, {}), limits)
    local.prepare(Scorer(list(space.layers), CostModel()))
    pids = tmp_path / "pids"
    inner = synthetic_evaluate(list(space.layers))

    def scored_in_worker(candidate: Candidate) -> Measurement:
        with open(pids, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        return inner(candidate)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cm = CostModel()
        remote = ilp(
            space,
            Recorder(None, "ray", OBJECTIVES, {}),
            limits,
            ray=True,
            cost_report=lambda plan: cm.estimate(space.layers, plan),
        )
        remote.prepare(scored_in_worker)
    finally:
        ray.shutdown()
    assert remote.sensitivity == local.sensitivity
    seen = {int(line) for line in pids.read_text().split()}
    assert seen and os.getpid() not in seen


# --- the shared controller contract -------------------------------------------------------
class TestIlpContract(ControllerContract):
    """The contract, with the solver prepared on the synthetic evaluate and the real cost model.

    Two cases are replaced: the solver is deterministic (the seed changes nothing) and it
    proposes only plans within budget, so the contract's "different seeds ask different
    plans" and "infeasible candidates are told" assumptions of sampling controllers do not hold.
    """

    controller_name = "ilp"

    def make_controller(self, *, space: BoundSpace, recorder: Recorder, seed: int = 0) -> Controller:
        ctrl = super().make_controller(space=space, recorder=recorder, seed=seed)
        assert isinstance(ctrl, IlpController)
        ctrl.prepare(Scorer(list(space.layers), CostModel()))
        return ctrl

    def test_same_seed_same_first_plans(self) -> None:
        def first_plans(seed: int) -> list[dict]:
            controller = self._fresh(seed=seed)
            evaluate = synthetic_evaluate(controller.space.layers)
            return [c.plan.to_dict() for c in self._run(controller, 4, evaluate)]

        assert first_plans(3) == first_plans(3) == first_plans(4)

    def test_infeasible_candidates_never_beat_feasible(self) -> None:
        controller = self._fresh()
        evaluate = synthetic_evaluate(controller.space.layers)
        self._run(controller, 15, evaluate)
        records = controller.recorder.trials()
        assert len(records) == 15 and all(r.feasible for r in records)
        assert all(all(v <= 0 for v in t.constraints.values()) for t in controller.recorder.study.best_trials)


# --- through the pipeline -----------------------------------------------------------------
@pytest.mark.parametrize(("controller", "warm_start"), [("ilp", None), ("optuna-tpe", "ilp")])
def test_search_runs_the_solver_end_to_end(tmp_path: Path, controller: str, warm_start: str | None) -> None:
    import optuna
    import torch

    from automc import models
    from automc.pipeline import search

    weights = tmp_path / "base.pt"  # untrained weights: this test is about plumbing, not accuracy
    torch.save(models.create("test_tiny").state_dict(), weights)
    result = search(
        model="test_tiny",
        dataset="synthetic",
        space="prune",
        budgets=["flops=0.9"],
        objectives=["acc", "macs"],
        controller=controller,
        warm_start=warm_start,
        trials=3,
        profile=None,
        weights=str(weights),
        out=tmp_path / "run",
        finetune_top=0,
        export_onnx=False,
        progress=False,
    )
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    assert study.user_attrs[SENSITIVITY_ATTR]["scores"]
    assert len(result.trials) == 3
    assert all(t.feasible for t in result.trials)
    if warm_start:
        assert all("fixed_params" in t.system_attrs for t in study.trials)
