"""The Optuna recorder: real SQLite/journal storages, resume, stale trials, meta checks, state files."""

from __future__ import annotations

import io
import json
import math
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from automc.errors import AutomcError
from automc.plan import Measurement
from automc.search import Candidate, Objective, Recorder, create
from automc.search.storage import OWNER_ATTR
from automc.space import SearchSpace
from automc.testing.controller_contract import TOY_SPACE, synthetic_evaluate, toy_layers

OBJECTIVES = (Objective.named("acc"), Objective.named("macs"))
META = {
    "model": "toy",
    "space": "toy.yaml",
    "objectives": ["acc", "macs"],
    "controller": "random",
    "proxy": "adaptive_bn",
    "profile_digest": "0123456789ab",
    "seed": 0,
}


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty Optuna SQLite DB created once (schema creation costs seconds), copied per test."""
    path = tmp_path_factory.mktemp("template") / "empty.db"
    optuna.storages.RDBStorage(f"sqlite:///{path}")
    return path


@pytest.fixture
def db(tmp_path: Path, template_db: Path) -> Path:
    path = tmp_path / "study.db"
    shutil.copyfile(template_db, path)
    return path


def bound():
    return SearchSpace.from_dict(dict(TOY_SPACE), source="toy.yaml").bind(toy_layers(), model="toy")


def controller(url: str | None, *, name: str = "random", meta: dict | None = None, seed: int = 0):
    recorder = Recorder(url, "study", OBJECTIVES, dict(meta or META, controller=name))
    return create(name, space=bound(), objectives=OBJECTIVES, recorder=recorder, seed=seed)


def test_sqlite_resume_keeps_the_first_trials_and_stops_at_the_total(db: Path) -> None:
    url = f"sqlite:///{db}"
    first = controller(url)
    evaluate = synthetic_evaluate(first.space.layers)
    first.drive(evaluate, 5)
    before = first.recorder.trials()
    assert [r.state for r in before] == ["COMPLETE"] * 5
    del first

    resumed = controller(url)
    assert resumed.recorder.resumed
    assert resumed.recorder.completed() == 5
    resumed.drive(evaluate, 10)
    after = resumed.recorder.trials()
    assert len(after) == 10 and resumed.recorder.completed() == 10
    assert after[:5] == before
    # the random controller continued its sequence instead of repeating it
    assert {json.dumps(r.params, sort_keys=True) for r in after[5:]}.isdisjoint(
        {json.dumps(r.params, sort_keys=True) for r in before}
    )
    study = optuna.load_study(study_name="study", storage=url)
    assert len(study.trials) == 10
    assert study.user_attrs["automc"]["model"] == "toy"


def test_optuna_controller_resume_on_sqlite(db: Path) -> None:
    url = f"sqlite:///{db}"
    first = controller(url, name="optuna-tpe")
    evaluate = synthetic_evaluate(first.space.layers)
    first.drive(evaluate, 3)
    resumed = controller(url, name="optuna-tpe")
    resumed.drive(evaluate, 6)
    records = resumed.recorder.trials()
    assert [r.number for r in records] == list(range(6))
    assert len({json.dumps(r.params, sort_keys=True) for r in records}) == 6


def test_stale_running_trial_is_marked_interrupted_on_load(db: Path) -> None:
    url = f"sqlite:///{db}"
    ctl = controller(url, name="optuna-nsga2")
    ctl.drive(synthetic_evaluate(ctl.space.layers), 2)
    ctl.ask()
    running = ctl.recorder.study.trials[-1]
    assert running.state == optuna.trial.TrialState.RUNNING
    again = Recorder(url, "study", OBJECTIVES, dict(META, controller="optuna-nsga2"))
    assert again.study.trials[-1].state == optuna.trial.TrialState.RUNNING, "its owner is alive"
    again.close()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = f"{socket.gethostname()}:{int(dead.stdout)}"  # the process "died" with this trial RUNNING
    ctl.recorder.storage.set_trial_system_attr(running._trial_id, OWNER_ATTR, owner)
    recorder = Recorder(url, "study", OBJECTIVES, dict(META, controller="optuna-nsga2"))
    stale = recorder.study.trials[-1]
    assert stale.state == optuna.trial.TrialState.FAIL
    assert stale.user_attrs["failure"] == "interrupted"
    assert recorder.completed() == 2
    assert recorder.trials()[-1].failure == "interrupted"


@pytest.mark.parametrize("key", ["model", "space", "objectives", "controller", "proxy", "profile_digest"])
def test_meta_mismatch_on_resume_is_refused_and_writes_nothing(db: Path, key: str) -> None:
    url = f"sqlite:///{db}"
    ctl = controller(url)
    ctl.drive(synthetic_evaluate(ctl.space.layers), 2)
    del ctl
    content = db.read_bytes()
    changed = dict(META, **{key: ["acc"] if key == "objectives" else "other"})
    with pytest.raises(AutomcError, match=f"cannot resume study 'study' .*{key} differs"):
        Recorder(url, "study", OBJECTIVES, changed)
    assert db.read_bytes() == content


def test_study_from_before_a_resume_key_existed_still_resumes(db: Path) -> None:
    url = f"sqlite:///{db}"
    older = {k: v for k, v in META.items() if k != "profile_digest"}
    Recorder(url, "study", OBJECTIVES, older)
    assert Recorder(url, "study", OBJECTIVES, META).study.study_name == "study"


def test_direction_mismatch_and_existing_study_without_load_are_refused(db: Path) -> None:
    url = f"sqlite:///{db}"
    Recorder(url, "study", OBJECTIVES, META)
    with pytest.raises(AutomcError, match="directions differ"):
        Recorder(url, "study", (Objective.named("acc"), Objective(name="macs", direction="maximize")), META)
    with pytest.raises(AutomcError, match="already exists"):
        Recorder(url, "study", OBJECTIVES, META, load_if_exists=False)
    optuna.create_study(storage=url, study_name="foreign")
    with pytest.raises(AutomcError, match="not written by automc"):
        Recorder(url, "foreign", OBJECTIVES[:1], META)


def test_recorded_trial_attrs_constraints_and_plain_json(db: Path) -> None:
    url = f"sqlite:///{db}"
    ctl = controller(url)
    c = ctl.ask()
    m = Measurement(
        objectives={"acc": 0.5, "macs": 1000.0},
        constraints={"macs": 0.25},
        info={
            "cost": {"macs": 1000.0, "latency_ms": float("nan")},
            "proxy": {"acc_proxy": 0.5},
            "note": Path("x"),
        },
    )
    ctl.tell(c.id, m)
    c2 = ctl.ask()
    ctl.tell(c2.id, None, reason="ValueError: boom")
    t, failed = optuna.load_study(study_name="study", storage=url).trials
    assert t.values == [0.5, 1000.0]
    assert t.constraints == {"macs": 0.25}
    assert t.user_attrs["constraints"] == {"macs": 0.25}
    assert t.user_attrs["feasible"] is False
    assert t.user_attrs["cost"] == {"macs": 1000.0, "latency_ms": None}
    assert t.user_attrs["proxy"] == {"acc_proxy": 0.5}
    assert t.user_attrs["info"] == {"note": "x"}
    assert t.user_attrs["candidate_id"] == c.id
    assert t.user_attrs["plan"] == c.plan.to_dict()
    assert set(t.params) == set(ctl.space.names)
    assert failed.state == optuna.trial.TrialState.FAIL and failed.values is None
    assert failed.user_attrs["failure"] == "ValueError: boom"
    records = ctl.recorder.trials()
    assert records[0].values == {"acc": 0.5, "macs": 1000.0} and not records[0].feasible
    assert records[1].state == "FAIL" and records[1].failure == "ValueError: boom"


def test_dashboard_can_open_the_database(db: Path) -> None:
    dashboard = pytest.importorskip("optuna_dashboard")
    url = f"sqlite:///{db}"
    ctl = controller(url)
    ctl.drive(synthetic_evaluate(ctl.space.layers), 3)
    summaries = optuna.get_all_study_summaries(url)
    assert [s.study_name for s in summaries] == ["study"] and summaries[0].n_trials == 3
    app = dashboard.wsgi(url)
    status: list[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/studies/1",
        "QUERY_STRING": "after=0",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status and status[0].startswith("200")
    data = json.loads(body)
    assert len(data["trials"]) == 3
    assert any(a["key"] == "plan" for a in data["trials"][0]["user_attrs"])


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_controller_state_json_and_bytes_round_trip(tmp_path: Path, db: Path, kind: str) -> None:
    url = {"sqlite": f"sqlite:///{db}", "journal": str(tmp_path / "study.log"), "memory": None}[kind]
    recorder = Recorder(url, "study", OBJECTIVES, META)
    assert recorder.load_controller_state() is None
    recorder.save_controller_state({"step": 3, "weights": b"\x00\x01binary", "x": math.inf})
    state = recorder.load_controller_state()
    assert state == {"step": 3, "weights": b"\x00\x01binary", "x": None}
    recorder.save_controller_state(b"raw-bytes")
    assert recorder.load_controller_state() == b"raw-bytes"
    if url is not None:
        assert Recorder(url, "study", OBJECTIVES, META).load_controller_state() == b"raw-bytes"
        assert len(list(tmp_path.glob("*.bin"))) == 2


def test_candidate_values_outside_distributions_are_not_params() -> None:
    recorder = Recorder(None, "study", OBJECTIVES, META)
    space = bound()
    recorder.attach_space(space)
    values = space.identity_values()
    number = recorder.add(Candidate(id="x", values=values, plan=space.to_plan(values)), None, "no result")
    assert number == 0
    trial = recorder.study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["failure"] == "no result"
    assert set(trial.params) == set(space.names)
