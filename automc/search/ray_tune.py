"""Ray Tune controller: Optuna's TPE behind Ray Tune's ``OptunaSearch``, trials run in parallel Ray workers.

:meth:`RayController.drive` runs a ``ray.tune.Tuner`` whose trainable calls the
(picklable) ``evaluate(candidate)`` inside a Ray worker; ``evaluate`` travels once
through the object store (``tune.with_parameters``). As each trial finishes, a Tune
callback on the driver records it in the run's Optuna storage through the ``Recorder``
(so a killed driver loses only the in-flight trials) and calls ``on_result``.

* Cluster: a local Ray instance is started (``num_cpus`` option, default all CPUs) unless
  Ray is already initialised, or ``address`` / ``RAY_ADDRESS`` names a cluster to join.
  Ray started here is shut down when ``drive`` returns.
* Parallelism: ``cpus_per_trial`` (torch threads in the worker are set to it),
  ``gpus_per_trial``, ``max_concurrent`` (default: cluster CPUs // cpus_per_trial).
* Constraints: Ray's ``OptunaSearch`` has no constraint support, so the searcher used
  here sets each finished trial's constraint values on its Optuna trial
  (``Trial.set_constraint``) before telling it; Optuna's TPE then models feasibility
  (c-TPE) instead of being fed penalised objectives. Failed and non-finite results are
  told as FAIL. The recorded study carries the constraints too, so infeasible trials
  never reach the study's ``best_trials`` / the Pareto front.
* Failures: a trial whose worker dies is retried (``FailureConfig(max_failures=2)``),
  with one ``automc: ray:`` line on stderr per retry instead of Tune's traceback; an
  exception raised by ``evaluate`` fails only that trial (recorded with its reason,
  not retried).
* Checks: :func:`preflight` (called before the base model trains) refuses an address
  whose GCS port does not answer within :data:`CONNECT_TIMEOUT_S` seconds and, on a local
  cluster, more GPUs or CPUs per trial than this machine has; :meth:`RayController.drive`
  refuses per-trial resources that no node of the joined cluster has (a trial would
  wait for them forever).
* Trials: ``n_trials`` counts the scored trials in the storage, as every controller's
  (``Controller.drive``); Tune runs batches of the ones still missing until they are
  scored or the study holds ``PRICED_ONLY_PER_TRIAL`` times as many. A rerun runs only the
  rest and seeds the searcher with the recorded complete trials.
* Each trial records the Ray node id and host name that ran it (user attr ``info``:
  ``node_id``, ``hostname``).

``ask``/``tell`` work without Ray (the same searcher, driven in-process), so the
controller passes the shared contract tests and can be used by a sequential loop.

Importing this module needs neither ray nor optuna.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from automc.errors import AutomcError, one_line
from automc.plan import CompressionPlan, Measurement
from automc.search.base import (
    Candidate,
    Controller,
    Evaluate,
    Objective,
    OnResult,
    failure_reason,
    is_unscored,
)

STATE_FORMAT = "automc-ray/1"
MEASUREMENT_KEY = "automc_measurement"
FAILURE_KEY = "automc_failure"
NODE_KEY = "automc_node_id"
HOST_KEY = "automc_hostname"
MAX_FAILURES = 2
CONNECT_TIMEOUT_S = 10.0
"""Seconds to wait for a cluster's GCS port to accept a connection."""
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def metric_name(objective: Objective) -> str:
    """Name of an objective's value in a Tune result."""
    return f"obj_{objective.name}"


def _searcher_class() -> type:
    """``OptunaSearch`` subclass that tells failures as FAIL and passes constraints to Optuna."""
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    class ConstrainedOptunaSearch(OptunaSearch):
        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            study: Any = self._ot_study
            row: dict = result or {}
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            values = [row.get(m) for m in metrics]
            usable = (
                not error
                and not row.get(FAILURE_KEY)
                and all(isinstance(v, int | float) and math.isfinite(v) for v in values)
            )
            measurement = json.loads(row.get(MEASUREMENT_KEY, "{}"))
            constraints = measurement.get("constraints", {})
            unscored = not error and not row.get(FAILURE_KEY) and any(v > 0 for v in constraints.values())
            if usable or unscored:
                for key, value in constraints.items():
                    ot_trial.set_constraint(str(key), float(value))
            if usable:
                study.tell(ot_trial, values if isinstance(self.metric, list) else values[0])
            elif unscored:
                study.tell(ot_trial, state=TrialState.PRUNED)
            else:
                study.tell(ot_trial, state=TrialState.FAIL)
            self._completed_trials.add(trial_id)

    return ConstrainedOptunaSearch


def run_trial(
    config: dict,
    *,
    evaluate: Evaluate,
    space: Any,
    names: Sequence[str],
    objectives: Sequence[Objective],
    cpus_per_trial: int,
) -> dict:
    """The Tune trainable: decode the config, evaluate the candidate, return the result row.

    Runs in a Ray worker. An exception from ``evaluate`` is reported as a failed result
    (``automc_failure``, objective metrics NaN) rather than raised, so Tune does not retry a
    deterministic failure. Torch threads are set to ``cpus_per_trial`` (through
    ``OMP_NUM_THREADS`` when torch is not imported yet). A trial given a GPU
    (``gpus_per_trial``) scores its candidate there: Ray makes that GPU the worker's only
    visible CUDA device, and the evaluator's proxy is moved to it (:func:`to_trial_gpu`).
    """
    import socket
    import sys

    import ray

    threads = max(1, int(cpus_per_trial))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    if ray.get_gpu_ids():
        to_trial_gpu(evaluate)
    values = decode_values(config, names)
    candidate = Candidate(id=str(config.get("__candidate_id", "")), values=values, plan=space.to_plan(values))
    row: dict[str, Any] = {
        NODE_KEY: ray.get_runtime_context().get_node_id(),
        HOST_KEY: socket.gethostname(),
    }
    try:
        result = evaluate(candidate)
        reason = failure_reason(result, objectives)
    except Exception as e:  # noqa: BLE001 - any evaluation error fails only this trial
        result, reason = None, one_line(e)
    row[FAILURE_KEY] = reason
    for o in objectives:
        row[metric_name(o)] = (
            math.nan if reason or result is None else float(result.objectives.get(o.name, math.nan))
        )
    if result is not None:
        row[MEASUREMENT_KEY] = json.dumps(result.to_dict())
    return row


def to_trial_gpu(evaluate: Evaluate) -> bool:
    """Move the scoring of ``evaluate`` (an ``automc.pipeline.Evaluator``: its proxy) to the
    worker's CUDA device; ``False`` when it has no proxy that can move.

    Compression stays on the CPU (the base model is not copied to the GPU); each candidate
    is moved to the GPU when the proxy scores it.
    """
    import torch

    proxy = getattr(evaluate, "proxy", None)
    if proxy is None or not hasattr(proxy, "to") or not torch.cuda.is_available():
        return False
    proxy.to(torch.device("cuda", torch.cuda.current_device()))
    return True


def encode_distributions(space: Any) -> tuple[list[str], dict[str, Any]]:
    """Param names and Optuna distributions keyed ``p0, p1, ...`` (Tune splits keys on ``/``)."""
    dists = space.distributions()
    names = list(dists)
    return names, {f"p{i}": dists[n] for i, n in enumerate(names)}


def decode_values(config: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Space values from a Tune config keyed ``p0, p1, ...``."""
    return {name: config[f"p{i}"] for i, name in enumerate(names)}


class RayController(Controller):
    """Optuna TPE (constraint-aware) suggesting candidates that Ray Tune evaluates in parallel.

    Options:
        cpus_per_trial: CPUs reserved per trial (torch threads in the worker).
        gpus_per_trial: GPUs reserved per trial.
        max_concurrent: trials running at once (default: cluster CPUs // cpus_per_trial).
        address: Ray cluster address (default: ``RAY_ADDRESS``, else a local instance).
        num_cpus: CPUs of a locally started Ray instance (default: all).
        storage_path: folder for Ray Tune's own results (default: ``ray`` beside the
            SQLite/journal storage, else a temporary folder).
        n_startup_trials: random trials before TPE models the results.
    """

    name = "ray"
    OPTIONS: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "cpus_per_trial": 1,
            "gpus_per_trial": 0,
            "max_concurrent": None,
            "address": None,
            "num_cpus": None,
            "storage_path": None,
            "n_startup_trials": 10,
        }
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
        super().__init__(
            space=space,
            objectives=objectives,
            recorder=recorder,
            seed=seed,
            budgets=budgets,
            cost_fn=cost_fn,
            **options,
        )
        for key in ("cpus_per_trial", "n_startup_trials"):
            value = self.options[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value < (1 if key == "cpus_per_trial" else 0)
            ):
                raise AutomcError(f"controller 'ray': {key} must be a number >= 1, got {value!r}")
        self._names, self._dists = encode_distributions(space)
        self._asked = 0
        self._pending: dict[str, Candidate] = {}
        self._history: list[dict[str, Any]] = []
        self._searcher = self._make_searcher(history=())

    # --- the searcher ---------------------------------------------------------------------
    def _make_searcher(self, *, history: Sequence[Mapping[str, Any]]) -> Any:
        """A fresh searcher seeded with ``history``: {params, values, constraints} of the complete
        trials and of the over-budget ones that were not scored (``values`` None)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(
            seed=self.seed + len(history), n_startup_trials=int(self.options["n_startup_trials"])
        )
        metrics = [metric_name(o) for o in self.objectives]
        modes = ["max" if o.direction == "maximize" else "min" for o in self.objectives]
        searcher = _searcher_class()(
            space=dict(self._dists),
            metric=metrics if len(metrics) > 1 else metrics[0],
            mode=modes if len(modes) > 1 else modes[0],
            sampler=sampler,
        )
        for h in history:
            scored = h["values"] is not None
            searcher._ot_study.add_trial(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.COMPLETE if scored else optuna.trial.TrialState.PRUNED,
                    values=list(h["values"]) if scored else None,
                    params=dict(h["params"]),
                    distributions=dict(self._dists),
                    constraints=dict(h["constraints"]) or None,
                )
            )
        return searcher

    def _history_from_recorder(self) -> list[dict[str, Any]]:
        out = []
        index = {name: f"p{i}" for i, name in enumerate(self._names)}
        for r in self.recorder.trials():
            if not r.priced or set(r.params) != set(index):
                continue
            out.append(
                {
                    "params": {index[k]: v for k, v in r.params.items()},
                    "values": [r.values[o.name] for o in self.objectives] if r.complete else None,
                    "constraints": {k: float(v) for k, v in r.constraints.items() if v is not None},
                }
            )
        return out

    # --- sequential ask / tell (no Ray needed) ---------------------------------------------
    def ask(self) -> Candidate | None:
        trial_id = f"ask-{self._asked:05d}"
        self._asked += 1
        config = self._searcher.suggest(trial_id)
        values = decode_values(config, self._names)
        candidate = Candidate(id=trial_id, values=values, plan=self.space.to_plan(values))
        self._pending[trial_id] = candidate
        return candidate

    def tell(self, candidate_id: str, result: Measurement | None, *, reason: str = "") -> None:
        candidate = self._pending.pop(candidate_id, None)
        if candidate is None:
            raise AutomcError(f"controller 'ray': unknown or already told candidate {candidate_id!r}")
        self.recorder.add(candidate, result, reason)
        problem = failure_reason(result, self.objectives)
        row: dict[str, Any] = {FAILURE_KEY: problem}
        if result is not None and not problem:
            row[MEASUREMENT_KEY] = json.dumps(result.to_dict())
            unscored = is_unscored(result, self.objectives)
            row.update(
                {metric_name(o): float(result.objectives.get(o.name, math.nan)) for o in self.objectives}
            )
            params = {f"p{i}": candidate.values[n] for i, n in enumerate(self._names)}
            self._history.append(
                {
                    "params": params,
                    "values": None
                    if unscored
                    else [float(result.objectives[o.name]) for o in self.objectives],
                    "constraints": {k: float(v) for k, v in result.constraints.items()},
                }
            )
        self._searcher.on_trial_complete(candidate_id, row, error=bool(problem))

    def state_dict(self) -> dict:
        """JSON-able: the complete trials the searcher has seen and the ask counter.

        Restoring rebuilds the searcher from these trials; its sampler is reseeded with
        ``seed + len(trials)`` so a restored run does not repeat the first run's random
        start-up points. Candidates asked but not told are not kept.
        """
        return {"format": STATE_FORMAT, "asked": self._asked, "history": list(self._history)}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise AutomcError(f"controller 'ray': saved state is not a {STATE_FORMAT} state")
        history = [dict(h) for h in state["history"]]
        self._asked = int(state["asked"])
        self._history = history
        self._pending = {}
        self._searcher = self._make_searcher(history=history)

    # --- parallel drive --------------------------------------------------------------------
    def _storage_path(self) -> Path:
        if self.options["storage_path"]:
            return Path(self.options["storage_path"]).resolve()
        url = self.recorder.url or ""
        if url.startswith("sqlite:///"):
            return Path(url[len("sqlite:///") :]).resolve().parent / "ray"
        if url.endswith(".log") and "://" not in url:
            return Path(url).resolve().parent / "ray"
        return Path(tempfile.mkdtemp(prefix="automc-ray-"))

    def _init_ray(self) -> bool:
        """Connect to or start Ray; returns whether this call started it.

        Raises:
            AutomcError: the cluster does not answer, or refuses the connection (for
                example a missing or wrong ``RAY_AUTH_TOKEN`` on a token-auth cluster).
        """
        import ray

        if ray.is_initialized():
            return False
        address = self.options["address"] or os.environ.get("RAY_ADDRESS")
        try:
            if address:
                check_reachable(address)
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            else:
                num_cpus = self.options["num_cpus"]
                ray.init(
                    num_cpus=None if num_cpus is None else int(num_cpus),
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            first = one_line(e, named=False)
            raise AutomcError(
                f"--ray-address {address or '(local)'}: cannot start or join Ray: {first}"
            ) from None
        return True

    def _check_cluster(self, cpus: float, gpus: float) -> None:
        """Refuse per-trial resources no alive node of the cluster has."""
        import ray

        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        for key, need, flag in (("CPU", cpus, "--cpus-per-trial"), ("GPU", gpus, "--gpus-per-trial")):
            most = max((float(r.get(key, 0)) for r in nodes), default=0.0)
            if need > most:
                raise AutomcError(
                    f"{flag} {need:g}: no node of the Ray cluster has that many ({key}s per node: at most "
                    f"{most:g}); a trial would wait forever"
                )

    def drive(self, evaluate: Evaluate, n_trials: int, *, on_result: OnResult | None = None) -> None:
        """Run the remaining ``n_trials - scored`` trials in parallel Ray workers, batch after
        batch while over-budget candidates priced only leave some unscored (see the module
        docstring).

        Args:
            evaluate: picklable ``candidate -> Measurement`` run inside the workers.
            n_trials: total scored trials wanted in the study.
            on_result: called on the driver as each trial is recorded.
        """
        if self.trials_left(n_trials) <= 0:
            return
        import ray

        started = self._init_ray()
        try:
            while (n := self.trials_left(n_trials)) > 0:
                self._run_batch(evaluate, n, on_result)
        finally:
            if started:
                ray.shutdown()

    def _run_batch(self, evaluate: Evaluate, remaining: int, on_result: OnResult | None) -> None:
        """``remaining`` trials in one Tune run on the joined Ray."""
        import ray
        from ray import tune

        cpus = int(self.options["cpus_per_trial"])
        gpus = float(self.options["gpus_per_trial"])
        self._check_cluster(cpus, gpus)
        _quiet_tune_errors()
        concurrent = self.options["max_concurrent"]
        if concurrent is None:
            concurrent = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)
        history = self._history_from_recorder()
        searcher = self._make_searcher(history=history)
        trainable = tune.with_resources(
            tune.with_parameters(
                run_trial,
                evaluate=evaluate,
                space=self.space,
                names=tuple(self._names),
                objectives=tuple(self.objectives),
                cpus_per_trial=cpus,
            ),
            {"cpu": cpus, "gpu": gpus},
        )
        callback = _recording_callback(self, on_result)
        name = _SAFE.sub("_", f"{self.recorder.study_name}-from{self.recorder.completed()}")
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=remaining,
                max_concurrent_trials=int(concurrent),
                reuse_actors=True,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(self._storage_path()),
                failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                callbacks=[callback],
                verbose=0,
            ),
        )
        tuner.fit()

    def _record(self, trial: Any, *, errored: bool) -> tuple[Candidate, Measurement | None, str]:
        values = decode_values(trial.config, self._names)
        candidate = Candidate(id=f"ray-{trial.trial_id}", values=values, plan=self.space.to_plan(values))
        row = trial.last_result or {}
        result: Measurement | None = None
        if errored:
            reason = f"ray worker failed {MAX_FAILURES + 1} times"
            if trial.error_file:
                reason += f" (see {trial.error_file})"
        else:
            reason = str(row.get(FAILURE_KEY) or "")
            if MEASUREMENT_KEY in row:
                raw = Measurement.from_dict(json.loads(row[MEASUREMENT_KEY]))
                info = {**dict(raw.info), "node_id": row.get(NODE_KEY), "hostname": row.get(HOST_KEY)}
                result = Measurement(objectives=raw.objectives, constraints=raw.constraints, info=info)
            elif not reason:
                reason = "trial reported no result"
        usable = result if not reason else None
        self.recorder.add(candidate, result if not errored else None, reason)
        return candidate, usable, reason


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an address where no Ray cluster answers, within about ``timeout_s`` seconds.

    ``host:port`` (or ``ray://host:port``) must accept a TCP connection and then answer a
    GCS request (its cluster id) as a Ray head does; the request runs in a child process
    so Ray's own retry logging stays out of the user's terminal. ``auto`` and port-less
    addresses are left to ``ray.init``.
    """
    import socket
    import subprocess

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    hint = "start it with 'ray start --head', fix the address, or set RAY_AUTH_MODE/RAY_AUTH_TOKEN as on the head"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise AutomcError(
            f"--ray-address {address}: no Ray cluster answers there ({reason}); {hint}"
        ) from None
    probe = "import sys; from ray._raylet import GcsClient; GcsClient(address=sys.argv[1], cluster_id=None).cluster_id"
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe, hostport], capture_output=True, text=True, timeout=2 * timeout_s
        )
    except subprocess.TimeoutExpired:
        raise AutomcError(
            f"--ray-address {address}: no Ray cluster answers there (no reply in {2 * timeout_s:g} s); {hint}"
        ) from None
    if done.returncode != 0:
        last = next((ln.strip() for ln in reversed(done.stderr.splitlines()) if ln.strip()), "no reply")
        raise AutomcError(f"--ray-address {address}: no Ray cluster answers there ({last[:200]}); {hint}")


def preflight(options: Mapping[str, Any]) -> None:
    """Cheap checks of the Ray options before any training (see the module docstring).

    ``options`` are the controller options (``address``, ``cpus_per_trial``,
    ``gpus_per_trial``); without an address the local machine is the cluster.
    """
    address = options.get("address") or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(str(address))
        return
    gpus, cpus = float(options.get("gpus_per_trial") or 0), float(options.get("cpus_per_trial") or 1)
    have_cpus = float(os.cpu_count() or 1)
    if cpus > have_cpus:
        raise AutomcError(f"--cpus-per-trial {cpus:g}: this machine has {have_cpus:g} CPUs")
    if gpus > 0:
        import torch

        have = torch.cuda.device_count()
        if gpus > have:
            raise AutomcError(f"--gpus-per-trial {gpus:g}: this machine has {have} GPU(s)")


def _quiet_tune_errors() -> None:
    """Tune logs each failed trial with its whole traceback; the callback writes one line instead."""
    import logging

    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune", "ray.train._internal.session"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _error_line(trial: Any) -> str:
    """The last line of a failed trial's error file (the exception), or ``see <file>``."""
    path = getattr(trial, "error_file", None)
    if not path:
        return "no error file"
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"see {path}"
    return lines[-1][:200] if lines else f"see {path}"


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _recording_callback(controller: RayController, on_result: OnResult | None) -> Any:
    """A Tune callback recording each finished trial on the driver, then calling ``on_result``."""
    from ray.tune import Callback

    class RecordingCallback(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.retries: dict[str, int] = {}

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, errored=False)

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
            sys.stderr.write(
                f"automc: ray: trial {trial.trial_id}: worker failed ({_error_line(trial)}); "
                f"retry {self.retries[trial.trial_id]} of {MAX_FAILURES}\n"
            )

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            sys.stderr.write(
                f"automc: ray: trial {trial.trial_id}: worker failed {MAX_FAILURES + 1} times "
                f"({_error_line(trial)}); recorded as failed\n"
            )
            self._finish(trial, errored=True)

        def _finish(self, trial: Any, *, errored: bool) -> None:
            candidate, usable, reason = controller._record(trial, errored=errored)
            if on_result is not None:
                on_result(candidate, usable, reason)

    return RecordingCallback()
