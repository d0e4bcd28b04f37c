"""Fault tolerance: a search killed with SIGKILL resumes from its storage, and a trial whose
proxy raises, returns NaN or runs out of memory is recorded as failed while the search goes on.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import optuna
import pytest

from automc.pipeline import search
from automc.proxy import ShortTrainProxy
from automc.search.storage import OWNER_ATTR

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


SEARCH = (
    "search --model test_tiny --dataset synthetic --space prune --budget flops=0.9 --objectives acc,macs "
    "--controller optuna-tpe --profile none --finetune-top 0 --no-onnx --quiet"
)


def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=True)


def _mid_trial(db: Path) -> bool:
    """Whether the study holds at least two complete trials and one running whose owner is
    recorded (the moment to kill: a trial killed before its owner is written is failed only
    after ``GRACE_PERIOD_S``, see ``automc.search.storage``).

    Reads the SQLite file read-only (the poller must never create Optuna's tables itself);
    a missing file or table, or a locked database, means "not yet".
    """
    if not db.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            states = [row[0] for row in con.execute("SELECT state FROM trials")]
            owned_running = con.execute(
                "SELECT COUNT(*) FROM trials JOIN trial_system_attributes USING (trial_id) "
                "WHERE trials.state = 'RUNNING' AND trial_system_attributes.key = ?",
                (OWNER_ATTR,),
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return False
    return states.count("COMPLETE") >= 2 and owned_running > 0


def test_sigkill_mid_search_then_rerun_resumes(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    storage, study, total = f"sqlite:///{out / 'study.db'}", "killed", 8
    argv = [sys.executable, "-m", "automc", *SEARCH.split(), "--trials", str(total)]
    argv += ["--out", str(out), "--study", study]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "AUTOMC_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not _mid_trial(out / "study.db"):
            assert proc.poll() is None, f"search ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no two complete trials and one running within 240 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    before = _trials(storage, study)
    done_before = {t.number: (t.params, t.values) for t in before if t.state.name == "COMPLETE"}
    running_before = [t.number for t in before if t.state.name == "RUNNING"]
    assert 2 <= len(done_before) < total and running_before
    assert not (out / "index.html").exists(), "the killed run must not have reached the report"

    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-2000:]
    after = _trials(storage, study)
    by_number = {t.number: t for t in after}
    for number, (params, values) in done_before.items():
        assert by_number[number].state.name == "COMPLETE"
        assert (by_number[number].params, by_number[number].values) == (params, values)
    for number in running_before:  # the killed process's stale trial is failed, not rerun
        assert by_number[number].state.name == "FAIL"
        assert by_number[number].user_attrs["failure"] == "interrupted"
    assert not [t for t in after if t.state.name in ("RUNNING", "WAITING")]
    finished = [
        t
        for t in after
        if t.state.name in ("COMPLETE", "PRUNED", "FAIL") and t.user_attrs.get("failure") != "interrupted"
    ]
    assert len(finished) == total
    assert len(after) == total + len(running_before)
    rows = list(csv.DictReader((out / "trials.csv").open(encoding="utf-8")))
    assert [int(r["number"]) for r in rows] == sorted(by_number)
    assert {int(r["number"]): r["state"] for r in rows} == {t.number: t.state.name for t in after}


FAULTS = ("oom", "nan", "memory", "raise")


def flaky(real: Any, failed_plans: dict[str, dict[str, Any]]) -> Any:
    """A stand-in for ``ShortTrainProxy.evaluate`` (the search default): its first calls fail in the ways of ``FAULTS``
    (recording each failed plan in ``failed_plans``), later calls run the real proxy."""
    calls = [0]

    def evaluate(proxy: ShortTrainProxy, model: Any, plan: Any) -> Any:
        calls[0] += 1
        if calls[0] > len(FAULTS):
            return real(proxy, model, plan)
        fault = FAULTS[calls[0] - 1]
        failed_plans[fault] = plan.to_dict()
        if fault == "oom":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if fault == "memory":
            raise MemoryError("cannot allocate 1 GiB")
        if fault == "raise":
            raise ValueError("proxy exploded")
        return {**real(proxy, model, plan), "acc": math.nan}

    return evaluate


@pytest.mark.parametrize("controller", ["random", "optuna-tpe"])
def test_failing_proxy_fails_only_that_trial(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, controller: str
) -> None:
    failed_plans: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(ShortTrainProxy, "evaluate", flaky(ShortTrainProxy.evaluate, failed_plans))
    result = search(
        model="test_tiny",
        dataset="synthetic",
        space="prune",
        budgets=["flops=1.0"],
        objectives=["acc", "macs"],
        controller=controller,
        trials=7,
        profile=None,
        out=tmp_path / "run",
        finetune_top=0,
        export_onnx=False,
        progress=False,
    )
    trials = _trials(result.storage, result.study)
    assert len(trials) == 7
    assert set(failed_plans) == set(FAULTS)
    expected = {
        "oom": "RuntimeError: CUDA out of memory",
        "memory": "MemoryError: cannot allocate 1 GiB",
        "raise": "ValueError: proxy exploded",
        "nan": "non-finite acc",
    }
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == len(FAULTS)
    for fault, plan in failed_plans.items():
        matching = [
            t for t in failed if t.user_attrs["plan"] == plan and expected[fault] in t.user_attrs["failure"]
        ]
        assert matching, (fault, [t.user_attrs["failure"] for t in failed])
        assert all(t.values is None and t.user_attrs["feasible"] is False for t in matching)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    assert all(math.isfinite(t.values[0]) and 0.0 <= t.values[0] <= 1.0 for t in complete)
    assert all(t.user_attrs["failure"] == "" for t in complete)
    assert set(result.pareto) <= {t.number for t in complete}
    assert (tmp_path / "run" / "index.html").is_file()


def _running(db: Path) -> bool:
    """Whether the study holds a RUNNING trial (read-only, like :func:`_mid_trial`)."""
    if not db.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            return con.execute("SELECT 1 FROM trials WHERE state = 'RUNNING'").fetchone() is not None
    except sqlite3.OperationalError:
        return False


def test_two_concurrent_searches_on_one_study_never_interrupt_a_live_trial(
    home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    storage, study = f"sqlite:///{out / 'study.db'}", "shared"
    argv = [sys.executable, "-m", "automc", *SEARCH.split(), "--out", str(out), "--study", study]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "AUTOMC_THREADS": "1"}
    first = subprocess.run([*argv, "--trials", "2"], env=env, capture_output=True, text=True, timeout=400)
    assert first.returncode == 0, first.stderr[-2000:]
    total = 30
    a = subprocess.Popen(
        [*argv, "--trials", str(total)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not _running(out / "study.db"):  # b starts while a has a trial in flight
            assert a.poll() is None, f"the first search ended before a trial ran: {a.stderr.read()!r}"
            assert time.monotonic() < deadline, "no running trial within 240 s"
            time.sleep(0.05)
        b = subprocess.run(
            [*argv, "--trials", str(total)], env=env, capture_output=True, text=True, timeout=400
        )
        assert a.wait(timeout=400) == 0, a.stderr.read()[-2000:]
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        a.stderr.close()
    assert b.returncode == 0, b.stderr[-2000:]
    trials = _trials(storage, study)
    assert len(trials) >= total
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED", "FAIL"}
    interrupted = [t.number for t in trials if t.user_attrs.get("failure") == "interrupted"]
    assert not interrupted, f"trials of a live process were marked interrupted: {interrupted}"
    owners = {t.system_attrs.get("automc_owner", "").rpartition(":")[2] for t in trials if t.number >= 2}
    assert len(owners) == 2, "both processes ran trials of the study"


def test_two_processes_create_one_fresh_sqlite_study_at_once(tmp_path: Path) -> None:
    code = (
        "import sys; from automc.search.base import Objective; from automc.search.storage import Recorder; "
        "Recorder(sys.argv[1], 'fresh', [Objective('acc', 'maximize')], {'model': 'm'}).close()"
    )
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    summaries = optuna.get_all_study_summaries(url)
    assert [s.study_name for s in summaries] == ["fresh"]
    assert summaries[0].user_attrs["automc"] == {"model": "m"}
