"""AMC-style DDPG controller (He et al., "AMC: AutoML for Model Compression", ECCV 2018).

One episode is one candidate. The agent walks the model's layers in execution order
(``BoundSpace.layer_steps()``); at each step it sees an embedding of the layer and emits a
continuous action in [0, 1] per action dimension: the keep ratio of the layer's
dependency group (AMC) and, when the space searches them, the weight / activation
bit-widths (HAQ, Wang et al. CVPR 2019). ``ask()`` rolls out a whole episode with the actor
plus truncated-normal exploration noise and no evaluation; ``tell()`` hands every
transition of the episode the final reward, stores them in the replay buffer and runs a few
DDPG updates.

Resource-constrained mode (AMC's "action wall"): with ``budgets`` and a ``cost_fn``, each
action is bounded from above so that, even if every remaining layer takes its most
aggressive choice (smallest keep, fewest bits), the budgets can still be met. Every asked
plan therefore meets the budgets whenever the space's cheapest point does. The bound is
found by bisection over the layer's grid, assuming cost grows with keep ratio and bits;
with a non-monotone cost (e.g. a measured latency table) the chosen value is still
checked to be feasible but may not be the largest feasible one.

Defaults follow the AMC reference code: 300-unit hidden layers, actor lr 1e-4, critic lr
1e-3, batch 64, replay memory of 100 transitions per layer, soft target update tau 0.01,
discount 1, noise sigma 0.5 decayed by 0.95 per episode after the warm-up, reward baseline
as a moving average of the batch mean reward with factor 0.5. The warm-up (uniform random
actions, no training) defaults to 20 episodes instead of AMC's 100, since automc searches
usually run hundreds, not thousands, of trials.

Caveats:
    * Only keep ratios and bit-widths are searched; other parameters of the space (low-rank
      ``rank/*``, ``criterion``) stay at their identity value.
    * The reward is the first maximised objective (e.g. ``acc``), or minus the first
      objective when all are minimised. Failed, non-finite and infeasible results get the
      worst reward seen so far (or are skipped when nothing was seen yet).
    * ``import automc.search.amc`` does not import torch; constructing the controller does.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from automc.errors import AutomcError
from automc.plan import LAYER_KINDS, CompressionPlan, Measurement
from automc.search.base import Candidate, Controller, Objective, failure_reason
from automc.search.warm_start import parse_warm_start, warm_start_values

STATE_FORMAT = "automc-amc/1"
_ACTION_KINDS = ("keep", "w_bits", "a_bits")
_STATIC_FEATURES = (
    "index",
    "kind",
    "in_channels",
    "out_channels",
    "kernel",
    "stride",
    "in_hw",
    "macs",
    "params",
)


@dataclass(frozen=True)
class DDPGConfig:
    """Hyper-parameters of the DDPG agent (AMC reference defaults).

    Attributes:
        hidden_units: width of the two hidden layers of actor and critic.
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the critic.
        warmup_episodes: episodes with uniform random actions and no training.
        batch_size: transitions per DDPG update.
        replay_per_layer: replay capacity per layer step (capacity = this x steps).
        tau: soft target-network update factor.
        discount: reward discount between steps of an episode.
        init_sigma: initial sigma of the truncated-normal exploration noise.
        sigma_decay: sigma multiplier per episode after the warm-up.
        baseline_alpha: moving-average factor of the reward baseline.
        updates_per_step: DDPG updates per layer step of a told episode.
    """

    hidden_units: int = 300
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    warmup_episodes: int = 20
    batch_size: int = 64
    replay_per_layer: int = 100
    tau: float = 0.01
    discount: float = 1.0
    init_sigma: float = 0.5
    sigma_decay: float = 0.95
    baseline_alpha: float = 0.5
    updates_per_step: int = 1

    def __post_init__(self) -> None:
        problems = []
        for key in ("hidden_units", "batch_size", "replay_per_layer", "updates_per_step"):
            if int(getattr(self, key)) < 1:
                problems.append(f"{key} must be >= 1")
        if self.warmup_episodes < 0:
            problems.append("warmup_episodes must be >= 0")
        for key in ("actor_lr", "critic_lr", "init_sigma"):
            if not float(getattr(self, key)) > 0:
                problems.append(f"{key} must be > 0")
        for key in ("tau", "discount", "sigma_decay", "baseline_alpha"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                problems.append(f"{key} must be in [0, 1]")
        if problems:
            raise AutomcError("amc controller: " + "; ".join(problems))


def truncated_normal(rng: Any, mu: Any, sigma: float, low: float = 0.0, high: float = 1.0) -> Any:
    """Sample ``N(mu, sigma)`` truncated to ``[low, high]``, elementwise, by rejection.

    Args:
        rng: a ``numpy.random.Generator``.
        mu: array of means (inside ``[low, high]``).
        sigma: standard deviation (> 0).
        low: lower bound.
        high: upper bound.

    Returns:
        An array shaped like ``mu``. After 64 rejected rounds the remaining entries are
        clipped (practically unreachable while ``mu`` lies inside the bounds).
    """
    import numpy as np

    mu = np.asarray(mu, dtype=np.float64)
    out = rng.normal(mu, sigma)
    bad = (out < low) | (out > high)
    for _ in range(64):
        if not bad.any():
            break
        out[bad] = rng.normal(mu[bad], sigma)
        bad = (out < low) | (out > high)
    return np.clip(out, low, high)


class ReplayBuffer:
    """Fixed-capacity ring buffer of ``(state, action, reward, next_state, done)``."""

    def __init__(self, *, capacity: int, state_dim: int, action_dim: int) -> None:
        import numpy as np

        self.capacity = int(capacity)
        self.states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, action_dim), dtype=np.float32)
        self.rewards = np.zeros((capacity,), dtype=np.float32)
        self.next_states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.dones = np.zeros((capacity,), dtype=np.float32)
        self.size = 0
        self.cursor = 0

    def add(self, state: Any, action: Any, reward: float, next_state: Any, done: bool) -> None:
        i = self.cursor
        self.states[i] = state
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_states[i] = next_state
        self.dones[i] = float(done)
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: Any, batch_size: int) -> tuple[Any, ...]:
        """A batch drawn uniformly with replacement (``rng``: numpy Generator)."""
        idx = rng.integers(0, self.size, size=batch_size)
        return self.states[idx], self.actions[idx], self.rewards[idx], self.next_states[idx], self.dones[idx]

    def state_dict(self) -> dict[str, Any]:
        import torch

        n = self.size
        return {
            "capacity": self.capacity,
            "size": n,
            "cursor": self.cursor,
            "states": torch.from_numpy(self.states[:n].copy()),
            "actions": torch.from_numpy(self.actions[:n].copy()),
            "rewards": torch.from_numpy(self.rewards[:n].copy()),
            "next_states": torch.from_numpy(self.next_states[:n].copy()),
            "dones": torch.from_numpy(self.dones[:n].copy()),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise AutomcError(f"amc controller: replay capacity {state['capacity']} != {self.capacity}")
        n = int(state["size"])
        for key in ("states", "actions", "rewards", "next_states", "dones"):
            getattr(self, key)[:n] = state[key].numpy()
        self.size = n
        self.cursor = int(state["cursor"])


class DDPGAgent:
    """Actor-critic pair with target networks, Adam optimisers and a replay buffer.

    Actor: state -> 300 -> 300 -> sigmoid action in [0, 1]^d. Critic: [state, action] ->
    300 -> 300 -> Q. Network initialisation is seeded without touching torch's global RNG;
    minibatches are drawn with the numpy generator passed to ``update``, so training is
    deterministic for a seed (on CPU).
    """

    def __init__(
        self, *, state_dim: int, action_dim: int, config: DDPGConfig, capacity: int, seed: int
    ) -> None:
        import torch
        from torch import nn

        self.config = config
        self.state_dim = state_dim
        self.action_dim = action_dim
        h = config.hidden_units
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = nn.Sequential(
                nn.Linear(state_dim, h),
                nn.ReLU(),
                nn.Linear(h, h),
                nn.ReLU(),
                nn.Linear(h, action_dim),
                nn.Sigmoid(),
            )
            self.critic = nn.Sequential(
                nn.Linear(state_dim + action_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1)
            )
        self.actor_target = _clone(self.actor)
        self.critic_target = _clone(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.buffer = ReplayBuffer(capacity=capacity, state_dim=state_dim, action_dim=action_dim)
        self.baseline: float | None = None

    def act(self, state: Any) -> Any:
        """Deterministic actor output (numpy, shape ``(action_dim,)``)."""
        import torch

        with torch.no_grad():
            return self.actor(torch.as_tensor(state, dtype=torch.float32)[None])[0].double().numpy()

    def update(self, rng: Any) -> tuple[float, float]:
        """One DDPG step on a replay minibatch; returns ``(critic_loss, actor_loss)``."""
        import torch

        cfg = self.config
        s, a, r, s2, done = (torch.from_numpy(x) for x in self.buffer.sample(rng, cfg.batch_size))
        batch_mean = float(r.mean())
        if self.baseline is None:
            self.baseline = batch_mean
        else:
            self.baseline += cfg.baseline_alpha * (batch_mean - self.baseline)
        r = r - self.baseline
        with torch.no_grad():
            q_next = self.critic_target(torch.cat([s2, self.actor_target(s2)], dim=1)).squeeze(1)
            target = r + cfg.discount * (1.0 - done) * q_next
        q = self.critic(torch.cat([s, a], dim=1)).squeeze(1)
        critic_loss = torch.nn.functional.mse_loss(q, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        actor_loss = -self.critic(torch.cat([s, self.actor(s)], dim=1)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            for net, target_net in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, tp in zip(net.parameters(), target_net.parameters()):
                    tp.mul_(1.0 - cfg.tau).add_(p, alpha=cfg.tau)
        return critic_loss.item(), actor_loss.item()

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "buffer": self.buffer.state_dict(),
            "baseline": self.baseline,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt", "buffer"):
            getattr(self, key).load_state_dict(state[key])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])


def _clone(net: Any) -> Any:
    import copy

    out = copy.deepcopy(net)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


@dataclass(frozen=True)
class _Episode:
    """An asked, not yet told episode: its candidate and per-step states and actions."""

    candidate: Candidate
    index: int
    states: tuple[tuple[float, ...], ...]
    actions: tuple[tuple[float, ...], ...]


class AMCController(Controller):
    """DDPG agent choosing keep ratios (and bit-widths) layer by layer, as in AMC/HAQ.

    Args:
        space: the bound search space.
        objectives: the study objectives; the reward is the first maximised one.
        recorder: the study recorder every told trial is written to.
        seed: seeds network initialisation, exploration noise and replay sampling.
        budgets: cost limits (``macs``, ``params``, ``size_bytes``, ``latency_ms``,
            ``energy_mj``) every asked plan is clipped to meet.
        cost_fn: plan -> cost totals; needed to enforce ``budgets``.
        **options: fields of :class:`DDPGConfig` (e.g. ``warmup_episodes=10``), and
            ``warm_start``: plans that are the first episodes (:mod:`automc.search.warm_start`;
            default ``uniform``, ``none`` for none; see :meth:`drive`).
    """

    name = "amc"
    OPTIONS: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {**{f.name: f.default for f in dataclasses.fields(DDPGConfig)}, "warm_start": "uniform"}
    )

    def __init__(
        self,
        *,
        space: Any,
        objectives: Sequence[Objective],
        recorder: Any,
        seed: int = 0,
        budgets: Mapping[str, float] | None = None,
        cost_fn: Callable[[CompressionPlan], Mapping[str, float]] | None = None,
        **options: Any,
    ) -> None:
        import numpy as np

        super().__init__(
            space=space,
            objectives=objectives,
            recorder=recorder,
            seed=seed,
            budgets=budgets,
            cost_fn=cost_fn,
            **options,
        )
        self.config = DDPGConfig(**{k: v for k, v in self.options.items() if k != "warm_start"})
        try:
            parse_warm_start(self.options["warm_start"])
        except AutomcError as e:
            raise AutomcError(f"amc controller: {e}") from None
        self._warm: list[dict[str, Any]] = []
        self._budgets = {str(k): float(v) for k, v in (budgets or {}).items()}
        self._cost_fn = cost_fn
        self._steps = list(space.layer_steps())
        if not self._steps:
            raise AutomcError(
                "amc controller: the search space has no keep-ratio or bit-width params to search"
            )
        self._kinds = tuple(k for k in _ACTION_KINDS if any(_step_param(s, k) for s in self._steps))
        self._grids = {p.name: tuple(p.grid()) for p in space.params}
        self._base_values = space.identity_values()
        self._floor_values = dict(self._base_values)
        for step in self._steps:
            for kind in self._kinds:
                pname = _step_param(step, kind)
                if pname is not None:
                    self._floor_values[pname] = self._grids[pname][0]
        self._reward_sign, self._reward_key = _reward_objective(objectives)
        self._metric = next(iter(self._budgets), "macs")
        if self._budgets and cost_fn is None:
            raise AutomcError("amc controller: budgets need a cost_fn to clip actions")
        self._layer_macs = {spec.name: float(spec.macs) for spec in space.layers}
        self._base_cost = self._metric_cost(self._base_values)
        missing = [
            k for k in self._budgets if cost_fn is not None and k not in self._costs(self._base_values)
        ]
        if missing:
            raise AutomcError(
                f"amc controller: cost_fn does not report budget metric(s) {', '.join(missing)}"
            )
        self._static = _static_features(self._steps)
        step_macs = np.array([float(s.layer.macs) for s in self._steps])
        after = np.concatenate([np.cumsum(step_macs[::-1])[::-1][1:], [0.0]])
        self._macs_after = after / max(float(step_macs.sum()), 1.0)
        self.state_dim = self._static.shape[1] + 2 + len(self._kinds)
        self.action_dim = len(self._kinds)
        capacity = self.config.replay_per_layer * len(self._steps)
        self.agent = DDPGAgent(
            state_dim=self.state_dim,
            action_dim=self.action_dim,
            config=self.config,
            capacity=capacity,
            seed=seed,
        )
        self._rng = np.random.default_rng(seed)
        self._episode = 0
        self._worst_reward: float | None = None
        self._pending: dict[str, _Episode] = {}

    # --- exploration schedule -------------------------------------------------------
    @property
    def episode(self) -> int:
        """Number of episodes rolled out (asked) so far."""
        return self._episode

    def sigma(self, episode: int | None = None) -> float:
        """Exploration noise sigma of ``episode`` (default: the next one); 0 during warm-up."""
        e = self._episode if episode is None else episode
        if e < self.config.warmup_episodes:
            return 0.0
        return self.config.init_sigma * self.config.sigma_decay ** (e - self.config.warmup_episodes)

    # --- cost helpers ---------------------------------------------------------------
    def _costs(self, values: Mapping[str, Any]) -> Mapping[str, float]:
        assert self._cost_fn is not None
        return self._cost_fn(self.space.to_plan(values))

    def _metric_cost(self, values: Mapping[str, Any]) -> float:
        if self._cost_fn is not None:
            costs = self._costs(values)
            if self._metric in costs:
                return float(costs[self._metric])
        total = sum(self._layer_macs.values())
        for step in self._steps:
            if step.keep_param is not None:
                keep = float(values[step.keep_param])
                for name in self.space.param(step.keep_param).layers:
                    total -= (1.0 - keep) * self._layer_macs[name]
        return total

    def _feasible(self, values: Mapping[str, Any]) -> bool:
        if not self._budgets:
            return True
        costs = self._costs(values)
        return all(float(costs[k]) <= limit for k, limit in self._budgets.items())

    def _max_index(self, values: dict[str, Any], pname: str) -> int:
        """Largest grid index of ``pname`` keeping ``values`` (rest at their floor) feasible.

        Index 0 is assumed feasible (it is the previous step's verified configuration); if
        not, the budget is impossible and 0 (the most aggressive choice) is returned.
        """
        grid = self._grids[pname]
        lo, hi = 0, len(grid) - 1
        if not self._budgets:
            return hi
        trial = dict(values)
        trial[pname] = grid[hi]
        if self._feasible(trial):
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            trial[pname] = grid[mid]
            if self._feasible(trial):
                lo = mid
            else:
                hi = mid
        return lo

    # --- episodes -------------------------------------------------------------------
    def _state(self, t: int, reduced: float, prev_action: Any) -> Any:
        import numpy as np

        rest = float(self._macs_after[t])
        return np.concatenate([self._static[t], [reduced, rest], np.asarray(prev_action, dtype=np.float64)])

    def _rollout(self) -> tuple[dict[str, Any], list[Any], list[Any]]:
        import numpy as np

        episode = self._episode
        warm = episode < self.config.warmup_episodes
        sigma = self.sigma(episode)
        values = dict(self._floor_values)
        decided = dict(self._base_values)
        states: list[Any] = []
        actions: list[Any] = []
        prev = np.ones(self.action_dim)
        for t, step in enumerate(self._steps):
            reduced = 0.0
            if self._base_cost > 0:
                reduced = max(0.0, (self._base_cost - self._metric_cost(decided)) / self._base_cost)
            state = self._state(t, reduced, prev)
            if warm:
                proposal = self._rng.uniform(0.0, 1.0, size=self.action_dim)
            else:
                proposal = truncated_normal(self._rng, self.agent.act(state), sigma)
            taken = np.ones(self.action_dim)
            for d, kind in enumerate(self._kinds):
                pname = _step_param(step, kind)
                if pname is None:
                    continue
                grid = self._grids[pname]
                n = len(grid) - 1
                want = int(round(float(proposal[d]) * n))
                index = min(want, self._max_index(values, pname))
                values[pname] = grid[index]
                decided[pname] = grid[index]
                taken[d] = index / n if n else 1.0
            states.append(state)
            actions.append(taken)
            prev = taken
        return values, states, actions

    def _replay(self, values: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        """The states and actions an episode choosing ``values`` walks through (as in :meth:`_rollout`)."""
        import numpy as np

        decided = dict(self._base_values)
        states: list[Any] = []
        actions: list[Any] = []
        prev = np.ones(self.action_dim)
        for t, step in enumerate(self._steps):
            reduced = 0.0
            if self._base_cost > 0:
                reduced = max(0.0, (self._base_cost - self._metric_cost(decided)) / self._base_cost)
            states.append(self._state(t, reduced, prev))
            taken = np.ones(self.action_dim)
            for d, kind in enumerate(self._kinds):
                pname = _step_param(step, kind)
                if pname is None:
                    continue
                grid = self._grids[pname]
                decided[pname] = values[pname]
                taken[d] = grid.index(values[pname]) / (len(grid) - 1) if len(grid) > 1 else 1.0
            actions.append(taken)
            prev = taken
        return states, actions

    def drive(self, evaluate: Any, n_trials: int, *, on_result: Any = None) -> None:
        """As :meth:`Controller.drive`; a fresh study first evaluates the ``warm_start`` plans as
        episodes (their transitions enter the replay buffer with their reward)."""
        if self.options["warm_start"] and self.recorder.completed() == 0 and not self._warm:
            self._warm = warm_start_values(self, evaluate, n_trials)
        super().drive(evaluate, n_trials, on_result=on_result)

    def ask(self) -> Candidate | None:
        """Roll out one episode (actor + noise, or uniform during warm-up) as a candidate;
        the warm-start plans come first."""
        if self._warm:
            values = self._warm.pop(0)
            states, actions = self._replay(values)
        else:
            values, states, actions = self._rollout()
        index = self._episode
        self._episode += 1
        candidate = Candidate(id=f"amc-{index:05d}", values=values, plan=self.space.to_plan(values))
        self._pending[candidate.id] = _Episode(
            candidate=candidate,
            index=index,
            states=tuple(tuple(float(x) for x in s) for s in states),
            actions=tuple(tuple(float(x) for x in a) for a in actions),
        )
        return candidate

    def _reward(self, result: Measurement | None) -> float | None:
        """Reward of a told result; failed, non-finite and infeasible ones get the worst seen."""
        if result is None or failure_reason(result, self.objectives) or not result.feasible:
            return self._worst_reward
        reward = self._reward_sign * float(result.objectives[self._reward_key])
        self._worst_reward = reward if self._worst_reward is None else min(self._worst_reward, reward)
        return reward

    def tell(self, candidate_id: str, result: Measurement | None, *, reason: str = "") -> None:
        """Record the trial, store the episode's transitions with the final reward, train."""
        episode = self._pending.pop(candidate_id, None)
        if episode is None:
            raise AutomcError(f"amc controller: unknown or already told candidate {candidate_id!r}")
        self.recorder.add(episode.candidate, result, reason)
        reward = self._reward(result)
        if reward is not None:
            n = len(episode.states)
            for t in range(n):
                done = t == n - 1
                nxt = episode.states[t] if done else episode.states[t + 1]
                self.agent.buffer.add(episode.states[t], episode.actions[t], reward, nxt, done)
            if episode.index >= self.config.warmup_episodes:
                for _ in range(n * self.config.updates_per_step):
                    self.agent.update(self._rng)

    # --- state ------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Save the state as bytes next to the study (networks and replay are megabytes)."""
        self.recorder.save_controller_state(json.dumps(self.state_dict()).encode())

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: networks, optimisers, replay, RNG, schedule.

        Returns:
            A JSON-able dict ``{"format", "meta" (JSON text), "agent" (base64 of the
            ``torch.save`` bytes of networks, optimisers and replay buffer)}``; the agent is
            read back with ``torch.load(weights_only=True)``. With 300-unit networks this
            is a few megabytes, so :meth:`checkpoint` writes it as a file next to the study.
        """
        import torch

        meta = {
            "episode": self._episode,
            "worst_reward": self._worst_reward,
            "rng": self._rng.bit_generator.state,
            "pending": [
                {
                    "id": e.candidate.id,
                    "values": dict(e.candidate.values),
                    "index": e.index,
                    "states": [list(s) for s in e.states],
                    "actions": [list(a) for a in e.actions],
                }
                for e in self._pending.values()
            ],
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
            "warm": [dict(v) for v in self._warm],
        }
        buf = io.BytesIO()
        torch.save(self.agent.state_dict(), buf)
        return {
            "format": STATE_FORMAT,
            "meta": json.dumps(meta),
            "agent": base64.b64encode(buf.getvalue()).decode(),
        }

    def load_state_dict(self, state: dict | bytes) -> None:
        """Restore :meth:`state_dict` output, or the bytes :meth:`checkpoint` saves."""
        import torch

        if isinstance(state, bytes | bytearray):
            try:
                state = json.loads(bytes(state).decode())
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise AutomcError("amc controller: saved state is not an AMC checkpoint") from None
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise AutomcError(f"amc controller: saved state has format {found!r}, expected {STATE_FORMAT}")
        meta = json.loads(state["meta"])
        if (meta["state_dim"], meta["action_dim"]) != (self.state_dim, self.action_dim):
            raise AutomcError("amc controller: saved state was made for another search space")
        self.agent.load_state_dict(
            torch.load(io.BytesIO(base64.b64decode(state["agent"])), weights_only=True)
        )
        self._episode = int(meta["episode"])
        self._worst_reward = meta["worst_reward"]
        self._rng.bit_generator.state = meta["rng"]
        self._warm = [dict(v) for v in meta.get("warm", [])]
        self._pending = {}
        for p in meta["pending"]:
            cand = Candidate(id=p["id"], values=p["values"], plan=self.space.to_plan(p["values"]))
            self._pending[cand.id] = _Episode(
                candidate=cand,
                index=int(p["index"]),
                states=tuple(tuple(s) for s in p["states"]),
                actions=tuple(tuple(a) for a in p["actions"]),
            )


def _step_param(step: Any, kind: str) -> str | None:
    return {"keep": step.keep_param, "w_bits": step.w_bits_param, "a_bits": step.a_bits_param}[kind]


def _reward_objective(objectives: Sequence[Objective]) -> tuple[float, str]:
    if not objectives:
        raise AutomcError("amc controller: needs at least one objective for its reward")
    for o in objectives:
        if o.direction == "maximize":
            return 1.0, o.name
    return -1.0, objectives[0].name


def _static_features(steps: Sequence[Any]) -> Any:
    """Per-step layer features, min-max normalised to [0, 1] over the steps (as AMC does)."""
    import numpy as np

    rows = []
    for t, step in enumerate(steps):
        spec = step.layer
        rows.append(
            [
                float(t),
                float(LAYER_KINDS.index(spec.kind)) if spec.kind in LAYER_KINDS else float(len(LAYER_KINDS)),
                float(spec.in_channels),
                float(spec.out_channels),
                float(spec.kernel[0] * spec.kernel[1]),
                float(spec.stride[0]),
                float(spec.in_hw[0]),
                float(spec.macs),
                float(spec.params),
            ]
        )
    feats = np.asarray(rows, dtype=np.float64)
    lo = feats.min(axis=0)
    span = feats.max(axis=0) - lo
    return np.where(span > 0, (feats - lo) / np.where(span > 0, span, 1.0), 0.0)
