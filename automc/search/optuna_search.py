"""Optuna controllers: ``optuna-tpe``, ``optuna-nsga2``, ``optuna-gp``.

The study held by the :class:`~automc.search.storage.Recorder` *is* the controller's
memory: candidates are asked with ``study.ask`` and told through the recorder, which sets
each trial's constraints with ``Trial.set_constraint`` (Optuna 5's constraint API, read by
all three samplers: infeasible trials rank below every feasible one). Resuming is loading
the study; the sampler is re-seeded from the seed and the number of trials already in the
study, so a resumed run does not replay its first random proposals.

With the option ``warm_start`` (``optuna-tpe``, ``optuna-nsga2``; default ``uniform``, see
:mod:`automc.search.warm_start`), :meth:`drive` on a study without trials first enqueues
the warm-start plans (``study.enqueue_trial``), so they are the first trials and the
sampler learns from them; a resumed study is not enqueued again.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from automc.errors import AutomcError
from automc.plan import Measurement
from automc.search.base import Candidate, Controller, Evaluate, OnResult
from automc.search.warm_start import parse_warm_start, warm_start_values

if TYPE_CHECKING:
    import optuna


def _resume_seed(seed: int, n_trials: int) -> int:
    return seed if n_trials == 0 else (seed * 1_000_003 + n_trials * 7_919) % (2**31 - 1)


class OptunaController(Controller):
    """Base of the Optuna controllers; subclasses build the sampler in :meth:`make_sampler`."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        try:
            parse_warm_start(self.options.get("warm_start"))
        except AutomcError as e:
            raise AutomcError(f"controller {self.name!r}: {e}") from None
        self._distributions = self.space.distributions()
        self._open: dict[str, tuple[optuna.Trial, Candidate]] = {}
        self._install_sampler()

    @abstractmethod
    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """The sampler, seeded with ``seed``."""

    def drive(self, evaluate: Evaluate, n_trials: int, *, on_result: OnResult | None = None) -> None:
        if parse_warm_start(self.options.get("warm_start")) and not self.study.get_trials(deepcopy=False):
            for values in warm_start_values(self, evaluate, n_trials):
                self.study.enqueue_trial(values, skip_if_exists=True)
        super().drive(evaluate, n_trials, on_result=on_result)

    def _install_sampler(self) -> None:
        n = len(self.recorder.study.get_trials(deepcopy=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = self.make_sampler(_resume_seed(self.seed, n))
        self.study = self.recorder.use_sampler(sampler)

    def ask(self) -> Candidate | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask(self._distributions)
        values = {name: trial.params[name] for name in self._distributions}
        candidate = Candidate(id=str(trial.number), values=values, plan=self.space.to_plan(values))
        self._open[candidate.id] = (trial, candidate)
        return candidate

    def tell(self, candidate_id: str, result: Measurement | None, *, reason: str = "") -> None:
        if candidate_id not in self._open:
            raise AutomcError(f"controller {self.name!r}: unknown or already told candidate {candidate_id!r}")
        trial, candidate = self._open.pop(candidate_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.recorder.finish(trial, candidate, result, reason)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "trials": len(self.study.get_trials(deepcopy=False))}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state.get("seed", self.seed))
        self._install_sampler()


class TPEController(OptunaController):
    """Multivariate TPE with constraints; MOTPE for several objectives.

    Options:
        n_startup_trials: random trials before TPE starts modelling (default 10).
        warm_start: plans evaluated first (:mod:`automc.search.warm_start`; default
            ``uniform``, ``none`` for none).
    """

    name = "optuna-tpe"
    OPTIONS = {"n_startup_trials": 10, "warm_start": "uniform"}

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        import optuna

        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=int(self.options["n_startup_trials"])
        )


class NSGA2Controller(OptunaController):
    """NSGA-II with constrained domination (feasible before infeasible, then by violation).

    Options:
        population_size: individuals per generation (default 16: 3 to 9 generations in
            50 to 150 evaluations).
        warm_start: plans evaluated first (:mod:`automc.search.warm_start`; default
            ``uniform``, ``none`` for none).
    """

    name = "optuna-nsga2"
    OPTIONS = {"population_size": 16, "warm_start": "uniform"}

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        import optuna

        return optuna.samplers.NSGAIISampler(seed=seed, population_size=int(self.options["population_size"]))


class GPController(OptunaController):
    """Gaussian-process Bayesian optimisation (log EI / EHVI with constraint models).

    Caveats: needs torch and scipy; each ask fits one GP per objective and constraint, which
    gets slow beyond about 20 params or a few hundred trials.

    Options:
        n_startup_trials: random trials before the GP is fitted (default 10).
    """

    name = "optuna-gp"
    OPTIONS = {"n_startup_trials": 10}

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        import optuna

        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=int(self.options["n_startup_trials"]))
