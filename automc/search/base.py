"""The controller contract shared by every search algorithm (no torch, no optuna at import).

A controller proposes candidates (:meth:`Controller.ask`) and learns from their
measurements (:meth:`Controller.tell`). Every finished candidate is recorded in the one
Optuna study held by a :class:`automc.search.storage.Recorder`, so a run is resumable
and inspectable with optuna-dashboard whichever algorithm produced it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from automc.errors import AutomcError, one_line
from automc.plan import CompressionPlan, Measurement
from automc.space import BoundSpace

if TYPE_CHECKING:
    from automc.search.storage import Recorder

OBJECTIVE_DIRECTIONS: Mapping[str, str] = {
    "acc": "maximize",
    "kl": "minimize",
    "macs": "minimize",
    "params": "minimize",
    "size_bytes": "minimize",
    "latency_ms": "minimize",
    "energy_mj": "minimize",
}


class TrialFailed(Exception):  # noqa: N818 - reads as "raise TrialFailed(reason)"
    """Raised by an evaluate function for a candidate that could not be evaluated."""


@dataclass(frozen=True)
class Candidate:
    """A point of the search space proposed by a controller.

    Attributes:
        id: unique within the study (the Optuna trial number for Optuna controllers).
        values: param name -> value (a point of the controller's ``BoundSpace``).
        plan: the compression plan for ``values``.
    """

    id: str
    values: Mapping[str, Any]
    plan: CompressionPlan


@dataclass(frozen=True)
class Objective:
    """One optimisation objective.

    Attributes:
        name: ``acc``, ``kl``, ``macs``, ``params``, ``size_bytes``, ``latency_ms`` or ``energy_mj``.
        direction: ``maximize`` or ``minimize``.
    """

    name: str
    direction: str

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise AutomcError(
                f"objective {self.name!r}: direction must be maximize or minimize, got {self.direction!r}"
            )

    @classmethod
    def named(cls, name: str) -> Objective:
        """The objective ``name`` with its usual direction (``acc`` maximised, the rest minimised)."""
        if name not in OBJECTIVE_DIRECTIONS:
            raise AutomcError(f"unknown objective {name!r} (known: {', '.join(OBJECTIVE_DIRECTIONS)})")
        return cls(name=name, direction=OBJECTIVE_DIRECTIONS[name])


PRICED_ONLY_PER_TRIAL = 10
"""A search asked for ``n`` trials stops after ``n`` times this many finished candidates, even when
fewer than ``n`` of them were scored (a budget that almost no proposal meets)."""

Evaluate = Callable[[Candidate], Measurement]
OnResult = Callable[[Candidate, Measurement | None, str], None]


def failure_reason(result: Measurement | None, objectives: Sequence[Objective]) -> str:
    """Why ``result`` must be recorded as a failed trial, or ``""`` if it is usable.

    A result is unusable when it is ``None``, has a NaN constraint, misses an objective
    although it is within budget, or has a NaN/±inf objective; such candidates never win.
    An over-budget result may miss objectives: it was priced by the cost model and not
    scored (see :func:`is_unscored`).
    """
    if result is None:
        return "failed"
    for key, v in result.constraints.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(float(v)):
            return f"constraint {key!r} is not a number ({v!r})"
    for obj in objectives:
        if obj.name not in result.objectives:
            if not result.feasible:
                continue
            return f"objective {obj.name!r} missing from the result"
        v = result.objectives[obj.name]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
            return f"objective {obj.name!r} is not a finite number ({v!r})"
    return ""


def is_unscored(result: Measurement | None, objectives: Sequence[Objective]) -> bool:
    """Whether ``result`` is an over-budget candidate that was priced but not scored.

    Such a candidate has no value for some objective (the proxy never ran on it), so it is
    recorded as an Optuna ``PRUNED`` trial carrying its constraint values, never with
    made-up objective values.
    """
    return (
        result is not None
        and not result.feasible
        and any(o.name not in result.objectives for o in objectives)
    )


class Controller(ABC):
    """Base class of every search algorithm.

    Subclasses implement :meth:`ask`, :meth:`tell`, :meth:`state_dict` and
    :meth:`load_state_dict`, and list their extra keyword options with defaults in
    ``OPTIONS`` (an unknown option is an ``AutomcError``, never silently dropped).

    Args:
        space: the bound search space.
        objectives: objectives in study order.
        recorder: where finished candidates are recorded (and controller state saved).
        seed: random seed; the same seed on a fresh study asks the same first plans.
        budgets: constraint limits keyed by cost metric, absolute units.
        cost_fn: ``plan -> cost totals`` (fast, torch-free) for feasibility reasoning.
        **options: algorithm-specific options listed in ``OPTIONS``.
    """

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        *,
        space: BoundSpace,
        objectives: Sequence[Objective],
        recorder: Recorder,
        seed: int = 0,
        budgets: Mapping[str, float] | None = None,
        cost_fn: Callable[[CompressionPlan], Mapping[str, float]] | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(sorted(self.OPTIONS)) or "none"
            raise AutomcError(
                f"controller {self.name!r}: unknown option(s) {', '.join(unknown)} (known: {known})"
            )
        if not objectives:
            raise AutomcError(f"controller {self.name!r}: at least one objective is needed")
        self.space = space
        self.objectives = tuple(objectives)
        self.recorder = recorder
        self.seed = int(seed)
        self.budgets = dict(budgets or {})
        self.cost_fn = cost_fn
        self.options: dict[str, Any] = {**self.OPTIONS, **options}
        self.recorder.attach_space(space)

    @abstractmethod
    def ask(self) -> Candidate | None:
        """The next candidate, or ``None`` when the controller has nothing more to propose."""

    @abstractmethod
    def tell(self, candidate_id: str, result: Measurement | None, *, reason: str = "") -> None:
        """Report a candidate's measurement (``None`` = failed, with ``reason``) and record it."""

    @abstractmethod
    def state_dict(self) -> dict:
        """The controller's own state (beyond what the study holds), JSON-able or with bytes values."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output."""

    def restore(self) -> bool:
        """Load the state saved in the recorder, if any; return whether there was one.

        The state is passed on as it was saved: a dict, or bytes for controllers whose
        :meth:`checkpoint` saves bytes (their ``load_state_dict`` accepts them).
        """
        state = self.recorder.load_controller_state()
        if state is None:
            return False
        self.load_state_dict(cast(dict, state))
        return True

    def checkpoint(self) -> None:
        """Save :meth:`state_dict` into the recorder."""
        self.recorder.save_controller_state(self.state_dict())

    def trials_left(self, n_trials: int) -> int:
        """How many more candidates :meth:`drive` may run towards ``n_trials`` scored trials: the
        scored trials missing, at most what is left of ``n_trials * PRICED_ONLY_PER_TRIAL``
        finished candidates (one read of the storage)."""
        scored, finished = self.recorder.counts()
        return min(int(n_trials) - scored, int(n_trials) * PRICED_ONLY_PER_TRIAL - finished)

    def drive(self, evaluate: Evaluate, n_trials: int, *, on_result: OnResult | None = None) -> None:
        """Ask, evaluate and tell until the study holds ``n_trials`` scored trials.

        Restores the saved state first and checkpoints after every tell, so a killed run
        continues where it stopped: ``n_trials`` counts scored trials in the storage
        (complete or failed, not those marked ``interrupted``: ``Recorder.scored``), not
        trials of this call. Over-budget candidates that the cost model only priced
        (:func:`is_unscored`, recorded ``PRUNED``) cost milliseconds and do not count, so a
        tight budget still gets ``n_trials`` candidates scored; the search stops anyway once
        the study holds ``n_trials * PRICED_ONLY_PER_TRIAL`` finished candidates. Any
        exception from ``evaluate`` marks that candidate failed; a non-finite objective is
        recorded as failed too.

        Args:
            evaluate: ``candidate -> Measurement``; raise ``TrialFailed`` (or anything) to fail it.
            n_trials: total scored trials wanted in the study.
            on_result: called after each tell with the candidate, the usable result (or
                ``None``) and the failure reason.
        """
        self.restore()
        while self.trials_left(n_trials) > 0:
            candidate = self.ask()
            if candidate is None:
                break
            result: Measurement | None
            try:
                result = evaluate(candidate)
                reason = failure_reason(result, self.objectives)
            except Exception as e:  # noqa: BLE001 - any evaluation error fails only this candidate
                result, reason = None, one_line(e)
            usable = result if not reason else None
            self.tell(candidate.id, usable, reason=reason)
            self.checkpoint()
            if on_result is not None:
                on_result(candidate, usable, reason)
