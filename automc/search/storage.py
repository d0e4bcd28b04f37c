"""The one recorder every controller writes to: an Optuna study in an Optuna storage.

Storage is an RDB URL (``sqlite:///run/study.db``), a JournalStorage file (a path ending
in ``.log``) or ``None`` (in memory, for tests). The study's user attr ``automc`` holds
the run's meta (model, dataset, space, budgets, objectives, controller, proxy, seed); a
resume with a different model/space/objectives/controller/proxy/profile is refused before
anything is written.

Each finished candidate is one Optuna trial: ``params`` with the space's distributions,
``values`` in objective order (failed -> state FAIL; over budget and never scored ->
state PRUNED without values), Optuna's constraint system attrs (so constrained samplers
and the dashboard see feasibility) and user attrs ``plan``, ``cost``, ``proxy``, ``info``,
``constraints``, ``feasible``, ``failure``, ``candidate_id``. All stored values are plain
JSON (non-finite floats become ``null``). :func:`decode_trial` is the one reader of a
stored trial, used by the search and by the report.

Caveat: one process drives a study at a time. Trials left RUNNING when a study is loaded
are assumed to belong to a killed process and are marked FAIL (``interrupted``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from automc.errors import AutomcError
from automc.plan import Measurement
from automc.search.base import Candidate, Objective, failure_reason, is_unscored
from automc.space import BoundSpace

if TYPE_CHECKING:
    import optuna

META_ATTR = "automc"
STATE_ATTR = "automc_controller_state"
INTERRUPTED = "interrupted"
#: Meta keys a resumed study must match (a key the stored study lacks, written by an older
#: automc, is not checked).
RESUME_KEYS = ("model", "space", "objectives", "controller", "proxy", "profile_digest")


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: numpy scalars -> Python, non-finite floats -> ``None``."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)
    if callable(item):
        return to_jsonable(item())
    return str(value)


@dataclass(frozen=True)
class TrialRecord:
    """One recorded trial, read back from the study.

    Attributes:
        number: Optuna trial number.
        state: ``COMPLETE``, ``FAIL``, ``PRUNED`` (over budget, priced but not scored),
            ``RUNNING`` or ``WAITING``.
        values: objective name -> value (empty when failed or not scored).
        params: param name -> value.
        plan: the plan as a dict (``CompressionPlan.to_dict``).
        cost: cost totals.
        proxy: proxy metrics.
        constraints: constraint name -> value (feasible iff all <= 0).
        feasible: whether every constraint holds.
        failure: why the trial failed (empty when complete).
        candidate_id: the controller's candidate id.
    """

    number: int
    state: str
    values: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    plan: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    cost: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    proxy: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    constraints: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    feasible: bool = True
    failure: str = ""
    candidate_id: str = ""

    @property
    def complete(self) -> bool:
        """Scored: every objective has a value."""
        return self.state == "COMPLETE"

    @property
    def priced(self) -> bool:
        """Finished with a cost (complete, or over budget and not scored)."""
        return self.state in ("COMPLETE", "PRUNED") and not self.failure

    def metric(self, name: str) -> float:
        """Objective or cost figure ``name`` (NaN when the trial has none: e.g. the
        accuracy of a candidate that was never scored)."""
        for source in (self.values, self.cost, self.proxy):
            if name in source and source[name] is not None:
                return float(source[name])
        return math.nan


def decode_trial(trial: Any, objectives: Sequence[tuple[str, str]] | Sequence[Objective]) -> TrialRecord:
    """The :class:`TrialRecord` of a stored Optuna ``FrozenTrial`` (objectives in study order)."""
    names = [o.name if isinstance(o, Objective) else str(o[0]) for o in objectives]
    ua = trial.user_attrs
    values = {}
    if trial.values is not None:
        values = {name: float(v) for name, v in zip(names, trial.values)}
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        values=values,
        params=dict(trial.params),
        plan=ua.get("plan") or {},
        cost=ua.get("cost") or {},
        proxy=ua.get("proxy") or {},
        constraints=ua.get("constraints") or dict(getattr(trial, "constraints", None) or {}),
        feasible=bool(ua.get("feasible", trial.state.name == "COMPLETE")),
        failure=str(ua.get("failure") or ""),
        candidate_id=str(ua.get("candidate_id") or ""),
    )


def make_storage(storage: str | None) -> Any:
    """An Optuna storage for ``storage``: ``None`` = in memory, ``*.log`` = journal file, else an RDB URL."""
    import optuna

    if storage is None or storage == ":memory:":
        return optuna.storages.InMemoryStorage()
    if storage.endswith(".log") and "://" not in storage:
        from optuna.storages.journal import JournalFileBackend

        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(storage))
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(storage)


class Recorder:
    """Creates or loads the run's Optuna study and records candidates into it.

    Args:
        storage: RDB URL, ``*.log`` journal path, or ``None`` for in-memory.
        study_name: the study's name in the storage.
        objectives: objectives in order (the study's directions).
        meta: run description stored as the study user attr ``automc``; on resume its
            ``model``, ``space``, ``objectives`` and ``controller`` must match.
        load_if_exists: continue an existing study (else an existing one is an error).

    Raises:
        AutomcError: the study exists and ``load_if_exists`` is false, or its meta or
            directions differ from this run's (nothing is written in that case).
    """

    def __init__(
        self,
        storage: str | None,
        study_name: str,
        objectives: Sequence[Objective],
        meta: Mapping[str, Any],
        *,
        load_if_exists: bool = True,
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.url = storage
        self.study_name = study_name
        self.objectives = tuple(objectives)
        self.meta = to_jsonable(dict(meta))
        self._storage = make_storage(storage)
        self._distributions: dict[str, optuna.distributions.BaseDistribution] = {}
        self._memory_blobs: dict[str, bytes] = {}
        directions: list[Any] = [o.direction for o in self.objectives]
        existing = {
            s.study_name for s in optuna.get_all_study_summaries(self._storage, include_best_trial=False)
        }
        self.resumed = study_name in existing
        if self.resumed:
            if not load_if_exists:
                raise AutomcError(
                    f"study {study_name!r} already exists in {storage}; choose another name or resume it"
                )
            study = optuna.load_study(study_name=study_name, storage=self._storage)
            self._check_resume(study, directions)
            self.study = study
            self._fail_stale_trials()
        else:
            self.study = optuna.create_study(
                storage=self._storage,
                study_name=study_name,
                directions=directions,
                sampler=optuna.samplers.RandomSampler(seed=0),
            )
            self.study.set_user_attr(META_ATTR, self.meta)

    def _check_resume(self, study: optuna.Study, directions: list[Any]) -> None:
        old = study.user_attrs.get(META_ATTR)
        where = f"study {self.study_name!r} in {self.url}"
        if not isinstance(old, Mapping):
            raise AutomcError(
                f"{where} was not written by automc (no '{META_ATTR}' user attr); refusing to resume"
            )
        for key in RESUME_KEYS:
            if key in self.meta and key in old and old[key] != self.meta[key]:
                raise AutomcError(
                    f"cannot resume {where}: {key} differs (stored {old.get(key)!r}, now {self.meta.get(key)!r}); "
                    "use a new study name or output folder"
                )
        stored = [d.name.lower() for d in study.directions]
        if stored != directions:
            raise AutomcError(f"cannot resume {where}: directions differ (stored {stored}, now {directions})")

    def _fail_stale_trials(self) -> None:
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            self._storage.set_trial_user_attr(t._trial_id, "failure", INTERRUPTED)
            self._storage.set_trial_user_attr(t._trial_id, "feasible", False)
            self._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    def attach_space(self, space: BoundSpace) -> None:
        """Use ``space``'s distributions for the params of recorded trials (called by ``Controller``)."""
        self._distributions = space.distributions()

    @property
    def storage(self) -> Any:
        """The Optuna storage object (for ``optuna.load_study`` with another sampler)."""
        return self._storage

    def use_sampler(self, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
        """Make ``sampler`` the study's sampler (Optuna controllers); returns the study."""
        self.study.sampler = sampler
        return self.study

    def set_study_attr(self, key: str, value: Any) -> None:
        """Store a JSON-able study user attr (e.g. the base model's figures, the winners)."""
        if key in (META_ATTR, STATE_ATTR):
            raise AutomcError(f"study attr {key!r} is reserved for the recorder")
        self.study.set_user_attr(key, to_jsonable(value))

    # --- recording ---------------------------------------------------------------------
    def _attrs(
        self, candidate: Candidate, result: Measurement | None, reason: str
    ) -> tuple[dict[str, Any], str]:
        failure = failure_reason(result, self.objectives) if result is not None else (reason or "failed")
        if result is not None and failure and reason:
            failure = f"{reason}; {failure}"
        info = dict(result.info) if result is not None else {}
        constraints = dict(result.constraints) if result is not None else {}
        attrs = {
            "candidate_id": candidate.id,
            "plan": candidate.plan.to_dict(),
            "cost": info.pop("cost", {}),
            "proxy": info.pop("proxy", {}),
            "info": info,
            "constraints": constraints,
            "feasible": bool(result is not None and not failure and result.feasible),
            "failure": failure,
        }
        return to_jsonable(attrs), failure

    def _values(self, result: Measurement) -> list[float]:
        return [float(result.objectives[o.name]) for o in self.objectives]

    def add(self, candidate: Candidate, result: Measurement | None, reason: str = "") -> int:
        """Record a finished candidate as a new trial (random/AMC/Ray controllers); returns its number.

        ``result`` ``None`` or with a missing/non-finite objective is recorded as FAIL; an
        over-budget result that was not scored as PRUNED with its constraints.
        """
        import optuna
        from optuna.trial import TrialState

        attrs, failure = self._attrs(candidate, result, reason)
        params = {k: v for k, v in candidate.values.items() if k in self._distributions}
        dists = {k: self._distributions[k] for k in params}
        constraints = None
        if result is not None and not failure and result.constraints:
            constraints = {k: float(v) for k, v in result.constraints.items()}
        unscored = not failure and is_unscored(result, self.objectives)
        state = TrialState.FAIL if failure else TrialState.PRUNED if unscored else TrialState.COMPLETE
        trial = optuna.trial.create_trial(
            state=state,
            values=None if failure or unscored or result is None else self._values(result),
            params=params,
            distributions=dists,
            user_attrs=attrs,
            constraints=constraints,
        )
        self.study.add_trial(trial)
        return self.study.get_trials(deepcopy=False)[-1].number

    def finish(
        self, trial: optuna.Trial, candidate: Candidate, result: Measurement | None, reason: str = ""
    ) -> None:
        """Record a candidate asked with ``study.ask`` (Optuna controllers) and tell the study."""
        from optuna.trial import TrialState

        attrs, failure = self._attrs(candidate, result, reason)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if failure or result is None:
            self.study.tell(trial, state=TrialState.FAIL)
            return
        for key, value in result.constraints.items():
            trial.set_constraint(key, float(value))
        if is_unscored(result, self.objectives):
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        self.study.tell(trial, self._values(result))

    # --- reading -----------------------------------------------------------------------
    def completed(self) -> int:
        """Finished trials (complete or failed), not counting those marked ``interrupted``."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        )
        return sum(1 for t in trials if t.user_attrs.get("failure") != INTERRUPTED)

    def trials(self) -> list[TrialRecord]:
        """Every trial of the study, in number order."""
        return [decode_trial(t, self.objectives) for t in self.study.get_trials(deepcopy=False)]

    # --- controller state -------------------------------------------------------------
    def _blob_file(self, key: str) -> Path | None:
        url = self.url
        if url is not None and url.startswith("sqlite:///"):
            base = Path(url[len("sqlite:///") :])
        elif url is not None and url.endswith(".log") and "://" not in url:
            base = Path(url)
        else:
            return None
        return base.with_name(f"{base.name}.{self.study_name}.{key}.bin")

    def save_controller_state(self, state: Mapping[str, Any] | bytes) -> None:
        """Save controller state: JSON parts as a study user attr, bytes parts as files next to the storage.

        ``state`` is bytes or a dict whose top-level values are JSON-able or bytes. Bytes
        go to ``<db file>.<study>.<key>.bin`` (written atomically, never unpickled); with an
        in-memory storage they stay in memory, and with a server URL (MySQL, PostgreSQL)
        they are refused.
        """
        raw = isinstance(state, bytes | bytearray)
        items: dict[str, Any] = {"state": bytes(state)} if raw else dict(state)  # type: ignore[arg-type]
        body: dict[str, Any] = {}
        blobs: dict[str, str] = {}
        for key, value in items.items():
            if not isinstance(value, bytes | bytearray):
                body[str(key)] = to_jsonable(value)
                continue
            path = self._blob_file(str(key))
            if path is None:
                if self.url is not None and self.url != ":memory:":
                    raise AutomcError(
                        f"cannot store binary controller state with storage {self.url}; use sqlite or a .log file"
                    )
                self._memory_blobs[str(key)] = bytes(value)
                blobs[str(key)] = ""
                continue
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(bytes(value))
            tmp.replace(path)
            blobs[str(key)] = path.name
        self.study.set_user_attr(STATE_ATTR, {"raw": raw, "state": body, "blobs": blobs})

    def load_controller_state(self) -> dict | bytes | None:
        """The last saved controller state (as saved: bytes or dict), or ``None`` if none was saved."""
        entry = self.study.user_attrs.get(STATE_ATTR)
        if not isinstance(entry, Mapping):
            return None
        state: dict[str, Any] = dict(entry.get("state", {}))
        for key, name in dict(entry.get("blobs", {})).items():
            if not name:
                if key not in self._memory_blobs:
                    return None
                state[key] = self._memory_blobs[key]
                continue
            path = self._blob_file(key)
            if path is None or not path.is_file():
                raise AutomcError(
                    f"controller state file {name} next to {self.url} is missing; cannot resume"
                )
            state[key] = path.read_bytes()
        return state["state"] if entry.get("raw") else state
