"""``ilp``: per-dimension sensitivity plus an exact multiple-choice knapsack (SciPy ``milp``, HiGHS).

1. **Sensitivity.** The proxy scores the base model once, then once per value of every
   numeric dimension (``keep/<group>``, ``w_bits/<layer>``, ``a_bits/<layer>``,
   ``rank/<layer>``, ``sparsity/<layer>``) with every other dimension at identity. A
   value's sensitivity is the proxy's loss against the identity (clipped at 0: noise above
   the identity counts as no loss). *Approximation, stated plainly:* a plan's sensitivity
   is the SUM of its values' sensitivities; interactions between layers are ignored (that
   is what a learning controller warm-started from these plans is for). Name dimensions
   (``criterion``, ``quantizer``, ``lowrank``) are held at their first choice. Scores are
   probes, not candidates: they are scored whatever their cost and cached in the study
   user attr ``ilp_sensitivity`` after each one, so a resumed run never re-scores.
2. **Costs, exactly.** :mod:`automc.search.knapsack` tabulates every layer's cost for
   every combination of the values it reads (priced by the cost model itself) and
   solves the multiple-choice knapsack with SciPy's ``milp`` (HiGHS); the solver's total
   of every metric equals ``CostModel.estimate(layers, plan).total``.
3. **Front.** Minimise the summed sensitivity under every budget, at ``front_size``
   budget levels swept geometrically from the limits down to the cheapest plan's cost;
   each solve excludes the plans already proposed (a no-good cut), so every ask is a new
   plan. Past the sweep the controller proposes the next-best distinct plans at the
   limits, and ``None`` when no unseen plan meets them.

Budgets no plan can meet are refused with one ``AutomcError`` line before any scoring.
The seed changes nothing: the solver is deterministic.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from automc.errors import AutomcError, one_line
from automc.plan import Measurement
from automc.search.base import Candidate, Controller, Evaluate, OnResult, failure_reason
from automc.search.knapsack import SOLVED_FIELDS, CostTable, Knapsack

COST_METRICS = frozenset({"macs", "params", "size_bytes", "latency_ms", "energy_mj"})
SENSITIVITY_ATTR = "ilp_sensitivity"
"""Study user attr caching the sensitivity probes: ``{"digest", "objective", "scores"}``."""
IDENTITY_KEY = "identity"


def probe_key(param: str, value: Any) -> str:
    """Cache key of the probe setting ``param`` to ``value``: ``keep/conv1=0.5``."""
    return f"{param}={json.dumps(value)}"


def _probe(scorer: Evaluate, candidate: Candidate) -> tuple[Measurement | None, str]:
    try:
        return scorer(candidate), ""
    except Exception as e:  # noqa: BLE001 - reported as one line by the caller
        return None, one_line(e, 200)


def _unbudgeted(evaluate: Evaluate) -> Evaluate:
    """``evaluate`` scoring whatever the cost: the pipeline's ``Evaluator`` copied without limits."""
    if isinstance(getattr(evaluate, "limits", None), Mapping):
        probe = copy.copy(evaluate)
        probe.limits = {}  # type: ignore[attr-defined]
        return probe
    return evaluate


class IlpController(Controller):
    """Sensitivity-scored exact knapsack front (see the module docstring).

    Call :meth:`drive` (or :meth:`prepare` then ``ask``/``tell``): preparing needs the
    evaluate function, which scores the probes, and per-layer costs, taken from the
    ``cost_report`` option or else from ``evaluate.cost`` (the pipeline's ``Evaluator``).

    Options:
        front_size: budget levels of the sweep (default 8).
        time_limit_s: seconds per MILP solve (default None: solved to optimality); a
            solve stopped by it returns its best feasible point, counted in
            ``knapsack.timed_out``.
        cost_report: ``plan -> CostReport``; default ``evaluate.cost``.
        ray: score the probes as parallel Ray tasks (default False).
        address: Ray cluster to join (default ``RAY_ADDRESS`` or a local instance).
        cpus_per_task: CPUs per probe task (default 1.0).
        gpus_per_task: GPUs per probe task (default 0.0).
    """

    name = "ilp"
    OPTIONS: ClassVar[Mapping[str, Any]] = {
        "front_size": 8,
        "time_limit_s": None,
        "cost_report": None,
        "ray": False,
        "address": None,
        "cpus_per_task": 1.0,
        "gpus_per_task": 0.0,
    }

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        if int(self.options["front_size"]) < 1:
            raise AutomcError(f"ilp controller: front_size must be >= 1, got {self.options['front_size']}")
        scored = [o for o in self.objectives if o.name not in COST_METRICS]
        if not scored:
            raise AutomcError("ilp controller: needs a proxy objective (acc or kl) to score sensitivity")
        self.score_objective = scored[0]
        self.knapsack: Knapsack | None = None
        self.levels: list[dict[str, float]] = []
        self.sensitivity: dict[str, dict[Any, float]] = {}
        self.probes_scored = 0
        """Probes the proxy scored in this process (cached ones excluded)."""
        self._asked: list[dict[str, Any]] = []
        self._pending: dict[str, Candidate] = {}

    # --- preparation ------------------------------------------------------------------
    def prepare(self, evaluate: Evaluate) -> None:
        """Tabulate costs, refuse impossible budgets, score (or load) the sensitivities, set the sweep."""
        report_fn = self.options["cost_report"] or getattr(evaluate, "cost", None)
        if report_fn is None:
            raise AutomcError(
                "ilp controller: needs per-layer costs: the cost_report option or an evaluate with cost(plan)"
            )
        limits = {k: float(v) for k, v in self.budgets.items()}
        identity = report_fn(self.space.to_plan(self.space.identity_values())).total
        swept = dict(limits) or {
            o.name: float(identity[o.name])
            for o in self.objectives
            if o.name in identity and o.name in COST_METRICS
        }
        table = CostTable(space=self.space, report_fn=report_fn, metrics=sorted(swept))
        knapsack = Knapsack(table, time_limit_s=self.options["time_limit_s"])
        cheapest = self._check_feasible(knapsack, limits)
        self._score(evaluate)
        self.knapsack = knapsack
        self.levels = self._sweep(swept, cheapest)

    def _check_feasible(self, knapsack: Knapsack, limits: Mapping[str, float]) -> dict[str, float]:
        """The cheapest cost of each budgeted metric under all budgets; refuses impossible budgets."""
        from automc.budget import format_amount

        cheapest: dict[str, float] = {}
        for metric in knapsack.table.metrics:
            values = knapsack.solve(knapsack.cost_vector(metric), limits)
            if values is None:
                break
            cheapest[metric] = knapsack.table.predict(values)[metric]
        else:
            return cheapest
        problems = []
        for metric, limit in limits.items():
            alone = knapsack.solve(knapsack.cost_vector(metric), {})
            assert alone is not None
            low = knapsack.table.predict(alone)[metric]
            if low > limit:
                problems.append(
                    f"budget {metric}={format_amount(metric, limit)} cannot be met: "
                    f"the cheapest plan costs {format_amount(metric, low)}"
                )
        problems = problems or ["the budgets cannot be met together by any plan"]
        raise AutomcError("ilp controller: " + "; ".join(problems) + f" (search space {self.space.source})")

    def _sweep(self, limits: Mapping[str, float], cheapest: Mapping[str, float]) -> list[dict[str, float]]:
        k = int(self.options["front_size"])
        levels = []
        for i in range(k):
            t = i / (k - 1) if k > 1 else 0.0
            level = {}
            for m, limit in limits.items():
                low = min(cheapest[m], limit)
                level[m] = limit * (low / limit) ** t if low > 0 and limit > 0 else limit + (low - limit) * t
            levels.append(level)
        return levels

    def _score(self, evaluate: Evaluate) -> None:
        obj = self.score_objective
        cache = self.recorder.study.user_attrs.get(SENSITIVITY_ATTR)
        digest = self.space.digest()
        if (
            not isinstance(cache, Mapping)
            or cache.get("digest") != digest
            or cache.get("objective") != obj.name
        ):
            cache = {"digest": digest, "objective": obj.name, "scores": {}}
        scores: dict[str, float] = dict(cache["scores"])
        probes: list[tuple[str, dict[str, Any]]] = [(IDENTITY_KEY, self.space.identity_values())]
        for p in self.space.params:
            if p.field in SOLVED_FIELDS:
                for v in p.grid():
                    if v != probes[0][1][p.name]:
                        probes.append((probe_key(p.name, v), {**probes[0][1], p.name: v}))
        todo = [
            (key, Candidate(id=f"ilp-probe:{key}", values=values, plan=self.space.to_plan(values)))
            for key, values in probes
            if key not in scores
        ]
        runner = self._ray_probes if self.options["ray"] else self._local_probes
        for key, (result, error) in runner(_unbudgeted(evaluate), todo):
            reason = error or failure_reason(result, self.objectives)
            if not reason and (result is None or obj.name not in result.objectives):
                reason = "not scored by the proxy"
            if reason:
                raise AutomcError(f"ilp controller: sensitivity probe {key} failed: {reason}")
            assert result is not None
            scores[key] = float(result.objectives[obj.name])
            self.probes_scored += 1
            self.recorder.set_study_attr(SENSITIVITY_ATTR, {**cache, "scores": scores})
        sign = 1.0 if obj.direction == "maximize" else -1.0
        base = scores[IDENTITY_KEY]
        self.sensitivity = {}
        for key, values in probes[1:]:
            name = key.split("=", 1)[0]
            loss = sign * (base - scores[key])
            self.sensitivity.setdefault(name, {})[values[name]] = max(0.0, loss)

    @staticmethod
    def _local_probes(
        scorer: Evaluate, todo: Sequence[tuple[str, Candidate]]
    ) -> Iterator[tuple[str, tuple[Measurement | None, str]]]:
        for key, candidate in todo:
            yield key, _probe(scorer, candidate)

    def _ray_probes(
        self, scorer: Evaluate, todo: Sequence[tuple[str, Candidate]]
    ) -> Iterator[tuple[str, tuple[Measurement | None, str]]]:
        import ray

        started = not ray.is_initialized()
        if started:
            address = self.options["address"] or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False)
        try:
            task = ray.remote(_probe).options(
                num_cpus=float(self.options["cpus_per_task"]), num_gpus=float(self.options["gpus_per_task"])
            )
            ref = ray.put(scorer)
            pending = {task.remote(ref, candidate): key for key, candidate in todo}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                yield pending.pop(done[0]), ray.get(done[0])
        finally:
            if started:
                ray.shutdown()

    # --- the front --------------------------------------------------------------------
    def objective_vector(self) -> Any:
        """Summed sensitivity, plus a tie-break (1e-6 of the largest sensitivity) towards cheaper plans."""
        assert self.knapsack is not None
        vec = self.knapsack.x_vector(self.sensitivity)
        top = max((v for s in self.sensitivity.values() for v in s.values()), default=0.0) or 1.0
        for metric, limit in (self.levels[0] if self.levels else {}).items():
            if limit > 0:
                vec = vec + 1e-6 * top * self.knapsack.cost_vector(metric) / limit / len(self.levels[0])
        return vec

    def next_values(self) -> dict[str, Any] | None:
        """The next unseen solved point: the sweep's levels in order, then the limits again."""
        if self.knapsack is None:
            raise AutomcError("ilp controller: call drive(evaluate, ...) or prepare(evaluate) before ask()")
        objective = self.objective_vector()
        start = min(len(self._asked), len(self.levels))
        for level in self.levels[start:] + self.levels[:1]:
            values = self.knapsack.solve(objective, level, self._asked)
            if values is not None:
                return values
        return None

    def drive(self, evaluate: Evaluate, n_trials: int, *, on_result: OnResult | None = None) -> None:
        if self.knapsack is None:
            self.prepare(evaluate)
        super().drive(evaluate, n_trials, on_result=on_result)

    def ask(self) -> Candidate | None:
        values = self.next_values()
        if values is None:
            return None
        self._asked.append(values)
        candidate = Candidate(
            id=f"ilp-{len(self._asked) - 1}", values=values, plan=self.space.to_plan(values)
        )
        self._pending[candidate.id] = candidate
        return candidate

    def tell(self, candidate_id: str, result: Measurement | None, *, reason: str = "") -> None:
        if candidate_id not in self._pending:
            raise AutomcError(f"controller {self.name!r}: unknown or already told candidate {candidate_id!r}")
        self.recorder.add(self._pending.pop(candidate_id), result, reason)

    def state_dict(self) -> dict:
        return {"asked": [dict(v) for v in self._asked]}

    def load_state_dict(self, state: dict) -> None:
        self._asked = [dict(v) for v in state.get("asked", [])]
        self._pending.clear()


def solver_values(controller: Controller, evaluate: Evaluate, n: int) -> list[dict[str, Any]]:
    """The solver's sweep (at most ``n`` and ``front_size`` points) for ``controller``'s space,
    budgets and study (the sensitivities are cached there).

    Per-layer costs come from ``evaluate.cost`` (the pipeline's ``Evaluator``).
    """
    solver = IlpController(
        space=controller.space,
        objectives=controller.objectives,
        recorder=controller.recorder,
        seed=controller.seed,
        budgets=controller.budgets,
        cost_fn=controller.cost_fn,
    )
    solver.prepare(evaluate)
    out: list[dict[str, Any]] = []
    while len(out) < min(n, int(solver.options["front_size"])):
        candidate = solver.ask()
        if candidate is None:
            break
        out.append(dict(candidate.values))
    return out
