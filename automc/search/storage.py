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

Several processes may drive one study at once (two ``automc search`` runs with the same
storage and study, or a crashed run restarted while another still runs). A trial asked
with ``study.ask`` records its owner (``host:pid``) and, with an RDB storage, an Optuna
heartbeat every :data:`HEARTBEAT_INTERVAL_S` seconds. A RUNNING trial is failed as
``interrupted`` only when its process is gone: its owner is a dead process on this host,
or its heartbeat is older than :data:`GRACE_PERIOD_S` seconds. Each recorder checks at
start-up and at every heartbeat. A journal storage (``*.log``) has no heartbeat in Optuna:
there only a dead owner on this host is detected, and a trial of a process that died on
another host stays RUNNING (it is not counted as finished, so the search still runs its
total; the report lists it as RUNNING).

A resumed study must describe the same run: :func:`resume_mismatch` compares the fields
of :data:`RESUME_FIELDS` of the stored and the new configuration, then the meta keys of
:data:`RESUME_META`, and names the first that differs.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import warnings
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
OWNER_ATTR = "automc_owner"
HEARTBEAT_INTERVAL_S = 5
"""Seconds between two heartbeats of a running trial (RDB storages)."""
GRACE_PERIOD_S = 30
"""A running trial whose last heartbeat is older than this belongs to a dead process."""
#: Configuration fields (dotted ``SearchConfig`` paths) that change what a trial means: a
#: study resumes only when all of them are equal. The number of trials, fine-tuning,
#: hardware execution settings, Ray resources and output paths may change on a resume.
RESUME_FIELDS = (
    "data.dataset",
    "data.root",
    "base.model",
    "base.model_kwargs",
    "base.weights",
    "base.epochs",
    "base.lr",
    "space",
    "budgets",
    "objectives",
    "seed",
    "controller.name",
    "proxy.name",
    "proxy.steps",
    "proxy.lr",
    "proxy.calib_batches",
    "proxy.batch_size",
    "hardware.profile",
)
#: Meta keys a resumed study must also match: the resolved space file and the profile's
#: content digest (a file edited at the same path), the user's ``train_step`` (its import
#: path: it trains the proxy's candidates), and the keys of studies recorded before the
#: configuration was stored. A key either side lacks is not checked.
RESUME_META = ("space", "profile_digest", "model", "objectives", "controller", "proxy", "train_step")
_MISSING = object()


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return _MISSING
        data = data[part]
    return data


def resume_mismatch(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The first difference between a stored study's meta ``old`` and this run's ``new``
    (``"budgets differs (stored [...], now [...])"``), or ``""`` when the run may resume."""
    pairs: list[tuple[str, Any, Any]] = [
        (path, _dig(old.get("config"), path), _dig(new.get("config"), path)) for path in RESUME_FIELDS
    ]
    pairs += [(key, old.get(key, _MISSING), new.get(key, _MISSING)) for key in RESUME_META]
    for name, before, now in pairs:
        if before is _MISSING or now is _MISSING:
            continue
        if to_jsonable(before) != to_jsonable(now):
            return f"{name} differs (stored {before!r}, now {now!r})"
    return ""


def stored_meta(storage: str, study_name: str) -> Mapping[str, Any] | None:
    """The ``automc`` meta of ``study_name`` in an existing ``storage``, or ``None`` without one.

    A SQLite file without Optuna's tables is not touched (opening it with Optuna would
    create them).
    """
    for summary in _summaries(storage):
        if summary.study_name == study_name:
            meta = summary.user_attrs.get(META_ATTR)
            return meta if isinstance(meta, Mapping) else {}
    return None


def study_names(storage: str) -> list[str]:
    """Names of the studies in ``storage`` (none when its SQLite or journal file does not exist yet)."""
    return [s.study_name for s in _summaries(storage)]


def _summaries(storage: str) -> list[Any]:
    import optuna

    if storage.startswith("sqlite:///") and not _has_optuna_tables(Path(storage[len("sqlite:///") :])):
        return []
    if storage.endswith(".log") and "://" not in storage and not Path(storage).is_file():
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return list(optuna.get_all_study_summaries(make_storage(storage), include_best_trial=False))
    except Exception as e:  # noqa: BLE001 - optuna raises many types for a bad URL/file
        raise AutomcError(f"cannot open storage {storage}: {e.__class__.__name__}: {e}") from None


def _has_optuna_tables(path: Path) -> bool:
    import sqlite3
    from contextlib import closing

    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as con:
            row = con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='studies'"
            ).fetchone()
    except sqlite3.DatabaseError as e:
        raise AutomcError(f"storage {path}: not a SQLite database ({e})") from None
    return row is not None


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_dead(owner: object) -> bool:
    """Whether ``owner`` (``host:pid``) names a process of this host that no longer runs."""
    host, _, pid = str(owner).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


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


def make_storage(storage: str | None, *, heartbeat: bool = False) -> Any:
    """An Optuna storage for ``storage``: ``None`` = in memory, ``*.log`` = journal file, else an RDB URL.

    With ``heartbeat`` an RDB storage records the owner and heartbeats of the trials this
    process asks (see the module docstring), and journal storages record the owner.
    Creating a fresh SQLite file from several processes at once is retried (Optuna's
    table creation races).
    """
    import optuna

    if storage is None or storage == ":memory:":
        return optuna.storages.InMemoryStorage()
    if storage.endswith(".log") and "://" not in storage:
        from optuna.storages.journal import JournalFileBackend

        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(storage)
        return (
            _owned(optuna.storages.JournalStorage)(backend)
            if heartbeat
            else optuna.storages.JournalStorage(backend)
        )
    kwargs: dict[str, Any] = {}
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    if heartbeat:
        kwargs.update(heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S)
    cls = _owned(optuna.storages.RDBStorage) if heartbeat else optuna.storages.RDBStorage
    return _retry_creation(lambda: cls(storage, **kwargs))


def _retry_creation(make: Any, attempts: int = 8) -> Any:
    """``make()``, retried when another process is creating the same tables or study right now."""
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return make()
        except DBAPIError as e:
            racing = any(w in str(e) for w in ("already exists", "locked", "UNIQUE constraint"))
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.25 * (attempt + 1))
    raise AssertionError("unreachable")


_OWNED: dict[type, type] = {}


def _restore_owned(base: type, state: dict[str, Any]) -> Any:
    """Unpickle an :func:`_owned` storage (its class is made at run time, so not importable)."""
    cls: Any = _owned(base)
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


def _owned(base: type) -> type:
    """``base`` (an Optuna storage class) whose trials asked here record their owner and
    heartbeat; ``live`` holds the ids of this process's running trials."""
    if base in _OWNED:
        return _OWNED[base]
    from optuna.trial import TrialState

    class Owned(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.live: set[int] = set()
            self.live_lock = threading.Lock()

        def __getstate__(self) -> dict[str, Any]:
            state = dict(super().__getstate__())
            state.pop("live_lock", None)
            state["live"] = set()
            return state

        def __reduce__(self) -> tuple[Any, ...]:  # picklable (Ray ships the searcher's storage)
            return (_restore_owned, (base, self.__getstate__()))

        def __setstate__(self, state: dict[str, Any]) -> None:
            restore = getattr(super(), "__setstate__", None)
            if restore is not None:
                restore(state)
            else:
                self.__dict__.update(state)
            self.live_lock = threading.Lock()

        def _own(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, OWNER_ATTR, _owner())
            if getattr(self, "heartbeat_interval", None):
                self.record_heartbeat(trial_id)
            with self.live_lock:
                self.live.add(trial_id)

        if hasattr(base, "_create_new_trial"):  # RDB: Optuna's cache calls this one directly

            def _create_new_trial(self, study_id: int, template_trial: Any = None) -> Any:
                trial = super()._create_new_trial(study_id, template_trial)
                if template_trial is None or template_trial.state == TrialState.RUNNING:
                    self._own(trial._trial_id)
                return trial

        else:

            def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
                trial_id = super().create_new_trial(study_id, template_trial)
                if template_trial is None or template_trial.state == TrialState.RUNNING:
                    self._own(trial_id)
                return trial_id

        def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
            done = super().set_trial_state_values(trial_id, state, values)
            if done and state == TrialState.RUNNING:
                self._own(trial_id)
            elif state.is_finished():
                with self.live_lock:
                    self.live.discard(trial_id)
            return done

    Owned.__name__ = Owned.__qualname__ = f"Owned{base.__name__}"
    _OWNED[base] = Owned
    return Owned


class Recorder:
    """Creates or loads the run's Optuna study and records candidates into it.

    Args:
        storage: RDB URL, ``*.log`` journal path, or ``None`` for in-memory.
        study_name: the study's name in the storage.
        objectives: objectives in order (the study's directions).
        meta: run description stored as the study user attr ``automc``; on resume it
            must match the stored one (:func:`resume_mismatch`).
        load_if_exists: continue an existing study (else an existing one is an error).

    While the recorder is open a daemon thread beats the heart of this process's running
    trials and fails the trials of dead processes (module docstring); :meth:`close` stops it.

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
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        self._storage = make_storage(storage, heartbeat=True)
        self._distributions: dict[str, optuna.distributions.BaseDistribution] = {}
        self._memory_blobs: dict[str, bytes] = {}
        directions: list[Any] = [o.direction for o in self.objectives]
        existing = {
            s.study_name for s in optuna.get_all_study_summaries(self._storage, include_best_trial=False)
        }
        self.resumed = study_name in existing
        if self.resumed and not load_if_exists:
            raise AutomcError(
                f"study {study_name!r} already exists in {storage}; choose another name or resume it"
            )
        if not self.resumed:
            try:
                self.study = optuna.create_study(
                    storage=self._storage,
                    study_name=study_name,
                    directions=directions,
                    sampler=optuna.samplers.RandomSampler(seed=0),
                )
                self.study.set_user_attr(META_ATTR, self.meta)
                with warnings.catch_warnings():  # set_metric_names is marked experimental
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    self.study.set_metric_names([o.name for o in self.objectives])
            except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
                self.resumed = True
        if self.resumed:
            study = optuna.load_study(study_name=study_name, storage=self._storage)
            self._check_resume(study, directions)
            self.study = study
        self._fail_stale_trials()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="automc-heartbeat", daemon=True)
        self._beat.start()

    def _check_resume(self, study: optuna.Study, directions: list[Any]) -> None:
        where = f"study {self.study_name!r} in {self.url}"
        old = study.user_attrs.get(META_ATTR)
        deadline = time.monotonic() + 10
        while old is None and time.monotonic() < deadline:  # its creator may be writing it now
            time.sleep(0.2)
            old = study._storage.get_study_user_attrs(study._study_id).get(META_ATTR)
        if not isinstance(old, Mapping):
            raise AutomcError(
                f"{where} was not written by automc (no '{META_ATTR}' user attr); refusing to resume"
            )
        problem = resume_mismatch(old, self.meta)
        if problem:
            raise AutomcError(
                f"cannot resume {where}: {problem}; use --new-study or another --study to start a fresh one"
            )
        stored = [d.name.lower() for d in study.directions]
        if stored != directions:
            raise AutomcError(f"cannot resume {where}: directions differ (stored {stored}, now {directions})")

    def _stale_trial_ids(self) -> list[int]:
        """RUNNING trials whose process is gone: a dead owner on this host, a stopped
        heartbeat, or no owner (recorded before owners were) and started over
        :data:`GRACE_PERIOD_S` seconds ago."""
        from datetime import datetime, timedelta

        from optuna.trial import TrialState

        live: set[int] = getattr(self._storage, "live", set())
        beating = getattr(self._storage, "heartbeat_interval", None) is not None
        stale = set(self._storage._get_stale_trial_ids(self.study._study_id)) if beating else set()
        old = datetime.now() - timedelta(seconds=GRACE_PERIOD_S)
        out = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t._trial_id in live:
                continue
            owner = t.system_attrs.get(OWNER_ATTR)
            unowned = owner is None and (t.datetime_start is None or t.datetime_start < old)
            if t._trial_id in stale or _owner_is_dead(owner) or unowned:
                out.append(t._trial_id)
        return out

    def _fail_stale_trials(self) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        for trial_id in self._stale_trial_ids():
            try:
                self._storage.set_trial_user_attr(trial_id, "failure", INTERRUPTED)
                self._storage.set_trial_user_attr(trial_id, "feasible", False)
                self._storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:  # another recorder failed it first
                continue

    def _heartbeat(self) -> None:
        if not hasattr(self._storage, "live"):  # in memory: one process, nothing to watch
            return
        while not self._stop.wait(HEARTBEAT_INTERVAL_S):
            try:
                if getattr(self._storage, "heartbeat_interval", None) is not None:
                    with self._storage.live_lock:
                        live = sorted(self._storage.live)
                    for trial_id in live:
                        self._storage.record_heartbeat(trial_id)
                self._fail_stale_trials()
            except Exception:  # noqa: BLE001 - a busy database skips one beat; the next one retries
                continue

    def close(self) -> None:
        """Stop the heartbeat thread (the trials still running here then go stale)."""
        self._stop.set()

    def __getstate__(self) -> dict[str, Any]:
        """A pickled copy (Ray ships its controller's callback) has no heartbeat thread: the
        heart beats in the process that asked the trials."""
        state = dict(self.__dict__)
        state.pop("_stop", None)
        state.pop("_beat", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stop = threading.Event()
        self._stop.set()

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
    def counts(self) -> tuple[int, int]:
        """``(scored, finished)`` from one read of the storage: :meth:`scored` and :meth:`completed`."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        )
        finished = [t for t in trials if t.user_attrs.get("failure") != INTERRUPTED]
        return sum(t.state != TrialState.PRUNED for t in finished), len(finished)

    def completed(self) -> int:
        """Finished trials (complete, failed or priced only), not counting those marked ``interrupted``."""
        return self.counts()[1]

    def scored(self) -> int:
        """Finished trials that were scored or failed: :meth:`completed` without the over-budget
        candidates the cost model only priced (state ``PRUNED``)."""
        return self.counts()[0]

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
