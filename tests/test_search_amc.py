"""The ``amc`` controller: contract, budget clipping, DDPG internals, determinism, learning."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from automc.errors import AutomcError
from automc.plan import CompressionPlan, Measurement
from automc.search.amc import AMCController, DDPGConfig, ReplayBuffer, truncated_normal
from automc.search.base import Objective
from automc.search.registry import create
from automc.search.storage import Recorder
from automc.space import SearchSpace
from automc.testing.controller_contract import (
    TOY_SPACE,
    ControllerContract,
    plan_macs,
    synthetic_evaluate,
    toy_layers,
)

torch.set_num_threads(1)

FAST = {"warmup_episodes": 3, "hidden_units": 32, "batch_size": 16}
OBJECTIVES = (Objective.named("acc"), Objective.named("macs"))
KEEP_BITS_SPACE = {
    "schema": "automc/search-space",
    "version": 1,
    "rules": [{"select": "*", "keep": {"low": 0.1, "high": 1.0, "step": 0.05}, "w_bits": [2, 4, 8, 32]}],
}
KEEP_SPACE = {
    "schema": "automc/search-space",
    "version": 1,
    "rules": [{"select": "*", "keep": {"low": 0.1, "high": 1.0, "step": 0.05}}],
}


class TestAMCContract(ControllerContract):
    controller_name = "amc"
    options = FAST

    def test_infeasible_candidates_never_beat_feasible(self) -> None:
        """AMC clips every action to the budget, so it never proposes an infeasible plan."""
        controller = self._fresh()
        evaluate = synthetic_evaluate(controller.space.layers)
        self._run(controller, 15, evaluate)
        records = controller.recorder.trials()
        assert len(records) == 15
        assert all(r.state == "COMPLETE" and r.feasible for r in records)
        assert all(all(v <= 0 for v in t.constraints.values()) for t in controller.recorder.study.best_trials)


def size_bytes(layers, plan: CompressionPlan) -> float:
    total = 0.0
    base = plan_macs(layers, CompressionPlan())
    ratio = plan_macs(layers, plan) / base
    for spec in layers:
        total += spec.params * plan.choice(spec.name).w_bits / 8
    return total * ratio


def make(
    space_dict=KEEP_BITS_SPACE, *, budget: float | None = 0.5, seed: int = 0, metrics=("macs",), **options
):
    layers = toy_layers()
    space = SearchSpace.from_dict(dict(space_dict), source="test-space").bind(layers, model="toy")
    identity = space.to_plan(space.identity_values())

    def cost_fn(plan: CompressionPlan) -> dict[str, float]:
        return {"macs": plan_macs(layers, plan), "size_bytes": size_bytes(layers, plan)}

    base = cost_fn(identity)
    budgets = {m: budget * base[m] for m in metrics} if budget is not None else {}
    recorder = Recorder(None, "amc-test", OBJECTIVES, {"controller": "amc"})
    controller = AMCController(
        space=space,
        objectives=OBJECTIVES,
        recorder=recorder,
        seed=seed,
        budgets=budgets,
        cost_fn=cost_fn,
        **{**FAST, **options},
    )
    return controller, cost_fn, budgets


def measure(plan: CompressionPlan, acc: float) -> Measurement:
    return Measurement(objectives={"acc": acc, "macs": plan_macs(toy_layers(), plan)})


@pytest.mark.parametrize("metrics", [("macs",), ("macs", "size_bytes")])
@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_every_asked_plan_meets_the_budget(metrics, fraction) -> None:
    controller, cost_fn, budgets = make(budget=fraction, metrics=metrics)
    keeps = []
    for i in range(25):
        c = controller.ask()
        costs = cost_fn(c.plan)
        for metric, limit in budgets.items():
            assert costs[metric] <= limit, (i, metric, costs[metric], limit)
        keeps.append(c.values[controller.space.layer_steps()[0].keep_param])
        controller.tell(c.id, measure(c.plan, 0.5 + 0.01 * i))
    assert len(set(keeps)) >= 2


def test_budget_is_used_not_just_met() -> None:
    """Clipping bounds actions from above only: plans are not all pushed to the cheapest point."""
    controller, cost_fn, budgets = make(budget=0.6)
    ratios = []
    for _ in range(10):
        c = controller.ask()
        ratios.append(cost_fn(c.plan)["macs"] / budgets["macs"])
        controller.tell(c.id, measure(c.plan, 0.5))
    assert max(ratios) > 0.6


def test_impossible_budget_gives_the_cheapest_plan_without_crashing() -> None:
    controller, cost_fn, _ = make(budget=0.001)
    c = controller.ask()
    floor = {
        name: controller.space.param(name).grid()[0] for name in c.values if not name.startswith("rank/")
    }
    assert {k: v for k, v in c.values.items() if k in floor} == floor
    controller.tell(c.id, measure(c.plan, 0.1))


def test_no_budget_means_no_clipping() -> None:
    controller, _, _ = make(budget=None)
    top = []
    for _ in range(12):
        c = controller.ask()
        top.append(max(v for k, v in c.values.items() if k.startswith("keep/")))
        controller.tell(c.id, measure(c.plan, 0.5))
    assert max(top) >= 0.9


def test_non_searched_params_stay_at_identity() -> None:
    controller, _, _ = make(TOY_SPACE)
    identity = controller.space.identity_values()
    ranks = [name for name in identity if name.startswith("rank/")]
    assert ranks
    for _ in range(5):
        c = controller.ask()
        assert {k: c.values[k] for k in ranks} == {k: identity[k] for k in ranks}
        controller.tell(c.id, measure(c.plan, 0.5))


def test_warmup_actions_are_random_and_ignore_the_actor() -> None:
    a, _, _ = make(seed=5, warmup_episodes=4)
    b, _, _ = make(seed=5, warmup_episodes=4)
    with torch.no_grad():
        b.agent.actor[-2].bias.fill_(-20.0)
    for _ in range(4):
        ca, cb = a.ask(), b.ask()
        assert ca.values == cb.values
        a.tell(ca.id, measure(ca.plan, 0.5))
        b.tell(cb.id, measure(cb.plan, 0.5))
    ca, cb = a.ask(), b.ask()
    assert ca.values != cb.values


def test_warmup_spreads_over_the_whole_range() -> None:
    controller, _, _ = make(budget=None, warmup_episodes=40)
    pname = controller.space.layer_steps()[0].keep_param
    seen = []
    for _ in range(40):
        c = controller.ask()
        seen.append(c.values[pname])
        controller.tell(c.id, measure(c.plan, 0.5))
    assert min(seen) <= 0.3 and max(seen) >= 0.8
    assert 0.35 < statistics.mean(seen) < 0.75


def test_noise_sigma_decays_each_episode_after_warmup() -> None:
    controller, _, _ = make(warmup_episodes=3, init_sigma=0.5, sigma_decay=0.9)
    assert controller.sigma(0) == 0.0 and controller.sigma(2) == 0.0
    assert controller.sigma(3) == pytest.approx(0.5)
    assert controller.sigma(4) == pytest.approx(0.45)
    assert controller.sigma(13) == pytest.approx(0.5 * 0.9**10)
    for _ in range(6):
        c = controller.ask()
        controller.tell(c.id, measure(c.plan, 0.5))
    assert controller.episode == 6
    assert controller.sigma() == pytest.approx(0.5 * 0.9**3)


def test_truncated_normal_stays_in_bounds_and_centres_on_mu() -> None:
    rng = np.random.default_rng(0)
    mu = np.full(4000, 0.3)
    wide = truncated_normal(rng, mu, 0.5)
    narrow = truncated_normal(rng, mu, 0.01)
    assert wide.min() >= 0.0 and wide.max() <= 1.0
    assert abs(narrow.mean() - 0.3) < 0.002
    assert narrow.std() < wide.std()
    edge = truncated_normal(rng, np.full(4000, 1.0), 0.2)
    assert edge.max() <= 1.0 and 0.8 < edge.mean() < 0.9


def test_replay_buffer_is_a_ring_and_round_trips() -> None:
    buf = ReplayBuffer(capacity=3, state_dim=2, action_dim=1)
    for i in range(5):
        buf.add([i, i], [i / 10], float(i), [i + 1, i + 1], i == 4)
    assert buf.size == 3
    assert sorted(buf.rewards.tolist()) == [2.0, 3.0, 4.0]
    other = ReplayBuffer(capacity=3, state_dim=2, action_dim=1)
    other.load_state_dict(buf.state_dict())
    assert np.array_equal(other.states, buf.states) and other.cursor == buf.cursor == 2
    s, a, r, s2, d = buf.sample(np.random.default_rng(0), 50)
    assert s.shape == (50, 2) and set(r.tolist()) <= {2.0, 3.0, 4.0}
    assert np.array_equal(s2[:, 0], s[:, 0] + 1)


def test_state_round_trip_restores_the_identical_next_episode() -> None:
    controller, _, _ = make(seed=2)
    for i in range(6):
        c = controller.ask()
        controller.tell(c.id, measure(c.plan, 0.4 + 0.05 * i))
    pending = controller.ask()
    twin, _, _ = make(seed=99)
    twin.load_state_dict(controller.state_dict())
    assert twin.episode == controller.episode
    for agent in (controller, twin):
        agent.tell(pending.id, measure(pending.plan, 0.3))
    for i in range(3):
        a, b = controller.ask(), twin.ask()
        assert a.values == b.values and a.id == b.id
        controller.tell(a.id, measure(a.plan, 0.6 + 0.01 * i))
        twin.tell(b.id, measure(b.plan, 0.6 + 0.01 * i))
    for p, q in zip(controller.agent.critic.parameters(), twin.agent.critic.parameters()):
        assert torch.equal(p, q)
    fresh, _, _ = make(seed=99)
    assert fresh.ask().values != controller.ask().values


def test_checkpoint_goes_to_a_file_and_restores(tmp_path: Path) -> None:
    layers = toy_layers()
    space = SearchSpace.from_dict(dict(KEEP_SPACE), source="s").bind(layers, model="toy")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    meta = {"model": "toy", "controller": "amc"}

    def build(recorder: Recorder) -> AMCController:
        return create(
            "amc",
            space=space,
            objectives=OBJECTIVES,
            recorder=recorder,
            seed=1,
            budgets={"macs": 0.5 * plan_macs(layers, CompressionPlan())},
            cost_fn=lambda plan: {"macs": plan_macs(layers, plan)},
            **FAST,
        )

    first = build(Recorder(url, "s", OBJECTIVES, meta))
    evaluate = synthetic_evaluate(layers)
    first.drive(evaluate, 6)
    assert list(tmp_path.glob("*.bin"))
    nxt = first.ask()
    resumed = build(Recorder(url, "s", OBJECTIVES, meta))
    assert resumed.restore()
    assert resumed.episode == first.episode - 1
    assert resumed.ask().values == nxt.values


def test_failed_and_non_finite_results_get_the_worst_reward() -> None:
    controller, _, _ = make()
    c = controller.ask()
    controller.tell(c.id, None, reason="boom")
    assert controller.agent.buffer.size == 0
    steps = len(controller.space.layer_steps())
    c = controller.ask()
    controller.tell(c.id, measure(c.plan, 0.7))
    c = controller.ask()
    controller.tell(c.id, measure(c.plan, 0.4))
    c = controller.ask()
    controller.tell(c.id, Measurement(objectives={"acc": math.nan, "macs": 1.0}))
    c = controller.ask()
    controller.tell(c.id, Measurement(objectives={"acc": 0.99, "macs": 1.0}, constraints={"macs": 0.5}))
    rewards = controller.agent.buffer.rewards[: controller.agent.buffer.size].tolist()
    assert len(rewards) == 4 * steps
    assert rewards[2 * steps :] == pytest.approx([0.4] * 2 * steps)
    records = controller.recorder.trials()
    assert [r.state for r in records] == ["FAIL", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    with pytest.raises(AutomcError, match="unknown or already told"):
        controller.tell(c.id, measure(c.plan, 0.5))


def test_learns_to_keep_the_layer_the_reward_favours() -> None:
    """Reward = keep ratio of the first searched group under a 50% MACs budget."""
    means = []
    for seed in (0, 1):
        controller, _, _ = make(
            KEEP_SPACE,
            seed=seed,
            warmup_episodes=10,
            hidden_units=64,
            actor_lr=1e-3,
            batch_size=32,
            sigma_decay=0.9,
        )
        pname = controller.space.layer_steps()[0].keep_param
        keeps = []
        for _ in range(50):
            c = controller.ask()
            keeps.append(c.values[pname])
            controller.tell(c.id, Measurement(objectives={"acc": c.values[pname], "macs": 1.0}))
        means.append((statistics.mean(keeps[:10]), statistics.mean(keeps[-10:])))
    for warm, late in means:
        assert late > warm + 0.15
        assert late >= 0.7


def test_options_and_space_are_validated() -> None:
    with pytest.raises(AutomcError, match="unknown option"):
        make(learning_rate=0.1)
    with pytest.raises(AutomcError, match="sigma_decay"):
        make(sigma_decay=1.5)
    with pytest.raises(AutomcError, match="cost_fn"):
        layers = toy_layers()
        space = SearchSpace.from_dict(dict(KEEP_SPACE), source="s").bind(layers)
        AMCController(
            space=space,
            objectives=OBJECTIVES,
            recorder=Recorder(None, "x", OBJECTIVES, {}),
            budgets={"macs": 10.0},
        )
    no_steps = {"schema": "automc/search-space", "version": 1, "rules": [{"select": "*", "rank": [0.5, 1.0]}]}
    with pytest.raises(AutomcError, match="no keep-ratio or bit-width"):
        make(no_steps)
    assert DDPGConfig().hidden_units == 300 and DDPGConfig().tau == 0.01


def test_loading_a_foreign_state_is_refused() -> None:
    controller, _, _ = make()
    with pytest.raises(AutomcError, match="not an AMC checkpoint"):
        controller.load_state_dict(b"\x00garbage")
    with pytest.raises(AutomcError, match="format"):
        controller.load_state_dict({"format": "other"})
    other, _, _ = make(KEEP_SPACE)
    with pytest.raises(AutomcError, match="another search space"):
        controller.load_state_dict(other.state_dict())


def test_import_does_not_pull_in_torch() -> None:
    code = "import sys, automc.search.amc; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
