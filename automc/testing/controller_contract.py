"""Conformance tests every search controller must pass (in the style of Optuna's ``pytest_samplers``).

Subclass :class:`ControllerContract` in ``tests/test_search_<name>.py`` and set
``controller_name`` (a registry name) or override :meth:`ControllerContract.make_controller`::

    class TestRandom(ControllerContract):
        controller_name = "random"

Everything here is torch-free: the model is a hand-written residual network's
``LayerSpec`` list (:func:`toy_layers`) and the evaluation a smooth synthetic function of
the plan (:func:`synthetic_evaluate`), so the tests exercise the real space, recorder and
Optuna storage in well under a second per case.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from automc.plan import CompressionPlan, LayerSpec, Measurement, kept_channels
from automc.search.base import PRICED_ONLY_PER_TRIAL, Candidate, Controller, Objective, TrialFailed
from automc.search.registry import create
from automc.search.storage import Recorder
from automc.space import BoundSpace, SearchSpace

TOY_SPACE: Mapping[str, Any] = {
    "schema": "automc/search-space",
    "version": 1,
    "rules": [
        {"select": "*", "keep": {"low": 0.25, "high": 1.0, "step": 0.25}, "w_bits": [4, 8]},
        {"select": "kind:conv2d", "rank": [0.5, 1.0]},
    ],
}


def _conv(
    name: str, index: int, cin: int, cout: int, hw: int, group: int, src: int, *, k: int = 3, stride: int = 1
) -> LayerSpec:
    out_hw = hw // stride
    return LayerSpec(
        name=name,
        kind="conv2d",
        in_channels=cin,
        out_channels=cout,
        kernel=(k, k),
        stride=(stride, stride),
        padding=(k // 2, k // 2),
        in_shape=(cin, hw, hw),
        out_shape=(cout, out_hw, out_hw),
        macs=k * k * cin * cout * out_hw * out_hw,
        params=k * k * cin * cout,
        group=group,
        in_segments=((src, cin, 1),),
        index=index,
    )


def toy_layers() -> list[LayerSpec]:
    """LayerSpecs of a small residual CNN (stem, two basic blocks, one with a 1x1 shortcut, linear head).

    Groups: 0 = stem + first block output (residual add, contains the frozen stem),
    1 = first block's inner conv, 2 = second block's inner conv, 3 = second block's
    output + its shortcut (coupled), classifier not prunable.
    """
    return [
        _conv("conv1", 0, 3, 8, 8, 0, -1),
        _conv("layer1.0.conv1", 1, 8, 8, 8, 1, 0),
        _conv("layer1.0.conv2", 2, 8, 8, 8, 0, 1),
        _conv("layer2.0.conv1", 3, 8, 16, 8, 2, 0, stride=2),
        _conv("layer2.0.conv2", 4, 16, 16, 4, 3, 2),
        _conv("layer2.0.shortcut", 5, 8, 16, 8, 3, 0, k=1, stride=2),
        LayerSpec(
            name="fc",
            kind="linear",
            in_channels=16,
            out_channels=10,
            in_shape=(16,),
            out_shape=(10,),
            macs=160,
            params=170,
            bias=True,
            group=-1,
            in_segments=((3, 16, 1),),
            index=6,
        ),
    ]


def plan_macs(layers: Sequence[LayerSpec], plan: CompressionPlan) -> float:
    """Closed-form MACs of ``plan`` (pruning and low rank; bits do not change MACs)."""
    keep = plan.group_keep(layers)
    by_group_channels = {s.group: s.out_channels for s in layers if s.prunable}
    total = 0.0
    for spec in layers:
        choice = plan.choice(spec.name)
        cout = kept_channels(spec.out_channels, keep[spec.group]) if spec.prunable else spec.out_channels
        cin = 0
        for group, channels, mult in spec.in_segments:
            kept = (
                channels if group < 0 else kept_channels(by_group_channels.get(group, channels), keep[group])
            )
            cin += kept * mult
        kk = spec.kernel[0] * spec.kernel[1]
        hw = spec.out_hw[0] * spec.out_hw[1]
        if choice.rank is not None:
            total += choice.rank * (cin * kk + cout) * hw
        else:
            total += cin * kk * cout * hw
    return total


def synthetic_evaluate(layers: Sequence[LayerSpec]) -> Callable[[Candidate], Measurement]:
    """A torch-free evaluate: smooth accuracy in keep ratios, bits and ranks; MACs in closed form.

    Accuracy falls quadratically as channels, bits or rank are removed, so the identity
    plan is the most accurate and the cheapest plans the least.
    """
    base_macs = plan_macs(layers, CompressionPlan())

    def evaluate(candidate: Candidate) -> Measurement:
        plan = candidate.plan
        loss = 0.0
        for spec in layers:
            c = plan.choice(spec.name)
            loss += 0.08 * (1.0 - c.keep_ratio) ** 2 + 0.02 * (8.0 / min(c.w_bits, 8) - 1.0) ** 2 / 9.0
            if c.rank is not None:
                loss += 0.05 * (1.0 - c.rank / spec.max_rank) ** 2
        macs = plan_macs(layers, plan)
        return Measurement(
            objectives={"acc": max(0.0, 0.95 - loss), "macs": macs},
            info={"cost": {"macs": macs}, "proxy": {"acc_proxy": max(0.0, 0.95 - loss)}},
            constraints={"macs": macs / (0.6 * base_macs) - 1.0},
        )

    return evaluate


class ControllerContract:
    """Behaviour every controller must show; subclass per controller.

    Attributes:
        controller_name: registry name used by the default :meth:`make_controller`.
        options: extra controller options for the tests (e.g. a small population).
    """

    controller_name: str = ""
    options: Mapping[str, Any] = {}
    objectives: tuple[Objective, ...] = (Objective.named("acc"), Objective.named("macs"))

    # --- hooks -------------------------------------------------------------------------
    def make_space(self) -> BoundSpace:
        return SearchSpace.from_dict(dict(TOY_SPACE), source="toy-space").bind(toy_layers(), model="toy")

    def make_recorder(self, storage: str | None, *, study_name: str = "contract") -> Recorder:
        meta = {"model": "toy", "space": "toy-space", "objectives": [o.name for o in self.objectives]}
        meta["controller"] = self.controller_name
        return Recorder(storage, study_name, self.objectives, meta)

    def make_controller(self, *, space: BoundSpace, recorder: Recorder, seed: int = 0) -> Controller:
        base = plan_macs(space.layers, CompressionPlan())
        return create(
            self.controller_name,
            space=space,
            objectives=self.objectives,
            recorder=recorder,
            seed=seed,
            budgets={"macs": 0.6 * base},
            cost_fn=lambda plan: {"macs": plan_macs(space.layers, plan)},
            **dict(self.options),
        )

    def storage_url(self, tmp_path: Path) -> str:
        """Persistent storage for the resume cases (a journal file: much faster than SQLite per trial)."""
        return str(tmp_path / "study.log")

    # --- helpers -----------------------------------------------------------------------
    def _fresh(self, tmp_path: Path | None = None, *, seed: int = 0) -> Controller:
        space = self.make_space()
        storage = None if tmp_path is None else self.storage_url(tmp_path)
        return self.make_controller(space=space, recorder=self.make_recorder(storage), seed=seed)

    @staticmethod
    def _run(controller: Controller, n: int, evaluate: Callable[[Candidate], Measurement]) -> list[Candidate]:
        asked = []
        for _ in range(n):
            c = controller.ask()
            assert c is not None
            asked.append(c)
            controller.tell(c.id, evaluate(c))
        return asked

    # --- the contract ------------------------------------------------------------------
    def test_asked_plans_lie_in_the_space(self) -> None:
        controller = self._fresh()
        space = controller.space
        evaluate = synthetic_evaluate(space.layers)
        ids = set()
        for c in self._run(controller, 12, evaluate):
            assert space.contains(c.values), space.problems(c.values)
            assert c.plan == space.to_plan(c.values)
            c.plan.validate_for(space.layers)
            assert c.id not in ids
            ids.add(c.id)
        assert controller.recorder.completed() == 12

    def test_bad_results_neither_crash_nor_win(self) -> None:
        controller = self._fresh()
        evaluate = synthetic_evaluate(controller.space.layers)
        bad = [float("nan"), float("inf"), -float("inf"), None]
        for i in range(12):
            c = controller.ask()
            assert c is not None
            if i % 3 == 0:
                value = bad[(i // 3) % len(bad)]
                if value is None:
                    controller.tell(c.id, None, reason="synthetic failure")
                else:
                    controller.tell(c.id, Measurement(objectives={"acc": value, "macs": 1.0}))
            else:
                controller.tell(c.id, evaluate(c))
        records = controller.recorder.trials()
        assert len(records) == 12
        failed = [r for r in records if r.state == "FAIL"]
        assert len(failed) == 4
        assert all(r.failure for r in failed)
        study = controller.recorder.study
        best_numbers = {t.number for t in study.best_trials}
        assert best_numbers
        assert not best_numbers & {r.number for r in failed}
        for t in study.best_trials:
            assert all(math.isfinite(v) for v in t.values)
        c = controller.ask()
        assert c is not None and controller.space.contains(c.values)

    def test_state_round_trip(self, tmp_path: Path) -> None:
        controller = self._fresh(tmp_path)
        evaluate = synthetic_evaluate(controller.space.layers)
        first = self._run(controller, 6, evaluate)
        state = controller.state_dict()
        controller.recorder.save_controller_state(state)
        recorder = self.make_recorder(self.storage_url(tmp_path))
        assert recorder.resumed
        assert recorder.completed() == 6
        loaded = recorder.load_controller_state()
        assert loaded == state
        restored = self.make_controller(space=self.make_space(), recorder=recorder, seed=0)
        restored.load_state_dict(loaded)
        later = self._run(restored, 4, evaluate)
        assert recorder.completed() == 10
        assert {c.id for c in later}.isdisjoint({c.id for c in first})
        for c in later:
            assert restored.space.contains(c.values)
        numbers = [r.number for r in recorder.trials()]
        assert numbers == list(range(10))

    def test_same_seed_same_first_plans(self) -> None:
        def first_plans(seed: int) -> list[dict]:
            controller = self._fresh(seed=seed)
            evaluate = synthetic_evaluate(controller.space.layers)
            return [c.plan.to_dict() for c in self._run(controller, 4, evaluate)]

        assert first_plans(3) == first_plans(3)
        assert first_plans(3) != first_plans(4)

    def test_drive_completes_and_resumes(self, tmp_path: Path) -> None:
        controller = self._fresh(tmp_path)
        evaluate = synthetic_evaluate(controller.space.layers)
        seen: list[tuple[str, bool]] = []

        def flaky(c: Candidate) -> Measurement:
            if len(seen) == 2:
                raise TrialFailed("synthetic failure")
            return evaluate(c)

        controller.drive(flaky, 5, on_result=lambda c, m, reason: seen.append((c.id, m is None)))
        assert controller.recorder.completed() == 5
        assert [failed for _, failed in seen] == [False, False, True, False, False]
        records = controller.recorder.trials()
        assert "synthetic failure" in records[2].failure
        recorder = self.make_recorder(self.storage_url(tmp_path))
        resumed = self.make_controller(space=self.make_space(), recorder=recorder, seed=0)
        resumed.drive(evaluate, 9)
        assert recorder.completed() == 9
        after = recorder.trials()
        assert [r.params for r in after[:5]] == [r.params for r in records]
        assert [r.values for r in after[:5]] == [r.values for r in records]
        assert all(r.state == "COMPLETE" for r in after[5:])
        resumed.drive(evaluate, 9)
        assert recorder.completed() == 9

    def test_over_budget_candidates_priced_only_do_not_count_as_trials(self) -> None:
        """``drive(n)`` scores ``n`` candidates however many over-budget ones it only priced,
        and stops at ``n * PRICED_ONLY_PER_TRIAL`` candidates when almost none is within budget."""
        controller = self._fresh()
        evaluate = synthetic_evaluate(controller.space.layers)

        def priced_only(c: Candidate) -> Measurement:
            m = evaluate(c)
            if m.feasible:
                return m
            return Measurement(
                objectives={"macs": m.objectives["macs"]}, constraints=m.constraints, info=m.info
            )

        controller.drive(priced_only, 6)
        records = controller.recorder.trials()
        assert controller.recorder.scored() == 6
        assert sum(r.state == "COMPLETE" for r in records) == 6
        assert len(records) == controller.recorder.completed() >= 6
        assert all(r.state == "PRUNED" and not r.feasible for r in records if r.state != "COMPLETE")

        never = self._fresh()
        budget = {"macs": 1.0}
        never.drive(lambda c: Measurement(objectives={"macs": 1.0}, constraints=budget), 2)
        assert never.recorder.scored() == 0
        assert never.recorder.completed() <= 2 * PRICED_ONLY_PER_TRIAL

    def test_infeasible_candidates_never_beat_feasible(self) -> None:
        controller = self._fresh()
        evaluate = synthetic_evaluate(controller.space.layers)
        self._run(controller, 15, evaluate)
        records = controller.recorder.trials()
        feasible = [r for r in records if r.feasible]
        infeasible = [r for r in records if r.state == "COMPLETE" and not r.feasible]
        assert len(feasible) + len(infeasible) == 15
        assert feasible and infeasible
        best = controller.recorder.study.best_trials
        assert best
        assert all(all(v <= 0 for v in t.constraints.values()) for t in best)
