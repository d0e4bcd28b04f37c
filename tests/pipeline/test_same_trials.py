"""The pipeline records the same trials as the engine it replaced.

``data/trials_before_refactor.json`` holds the trials of two small searches (random search
on the prune space with over-budget candidates; TPE on the joint space) as the single
``automc/engine.py`` recorded them. ``automc.search`` and ``automc search`` must reproduce
their params, costs, constraints and proxy scores; over-budget trials are now stored
without made-up objective values (PRUNED) and do not count toward the trials asked for
(the search goes on until that many are scored), the two intended differences. They
search the spaces as they were then (``data/*_frozen_stem.yaml``: the stem frozen with its
dependency group) without a warm start (TPE's default ``uniform`` came later).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

import automc
from automc.cli import main

DATA = Path(__file__).parent / "data"
FIXTURE = json.loads((DATA / "trials_before_refactor.json").read_text())
CASES = FIXTURE["cases"]


def _as_recorded(search: dict) -> dict:
    """The recorded search's settings with the space file it ran on and no warm start."""
    out = {**search, "space": str(DATA / f"{search['space']}_frozen_stem.yaml")}
    if out["controller"] != "random":
        out["warm_start"] = "none"
    return out


def _trials(storage: str, study: str) -> list[dict]:
    out = []
    for t in optuna.load_study(study_name=study, storage=storage).trials:
        ua = t.user_attrs
        out.append(
            {
                "number": t.number,
                "state": t.state.name,
                "params": t.params,
                "feasible": ua.get("feasible"),
                "constraints": ua.get("constraints"),
                "proxy": ua.get("proxy"),
                "cost": ua.get("cost"),
                "values": t.values,
            }
        )
    return out


def _assert_same(got: list[dict], want: list[dict]) -> None:
    """The recorded trials are the first ones again; the engine counted its over-budget
    candidates as trials, the search goes on until as many are scored (``Controller.drive``)."""
    assert [t["number"] for t in got[: len(want)]] == [t["number"] for t in want]
    scored = sum(t["state"] != "PRUNED" for t in got)
    assert scored == len(want) or all(t["feasible"] for t in want)
    assert all(t["state"] == "PRUNED" for t in got[len(want) :] if not t["feasible"])
    for g, w in zip(got, want):
        assert g["params"] == w["params"], g["number"]
        assert g["feasible"] == w["feasible"]
        assert g["cost"] == pytest.approx(w["cost"], rel=1e-9)
        assert g["constraints"] == pytest.approx(w["constraints"], rel=1e-9, abs=1e-12)
        assert g["proxy"] == pytest.approx(w["proxy"], rel=1e-4)
        if w["feasible"]:
            assert g["state"] == "COMPLETE"
            assert g["values"] == pytest.approx(w["values"], rel=1e-4)
        else:
            assert g["state"] == "PRUNED" and g["values"] is None


@pytest.mark.parametrize("case", sorted(CASES))
def test_python_api_reproduces_the_recorded_trials(home, tmp_path, case):
    spec = CASES[case]
    result = automc.search(out=tmp_path, **_as_recorded(spec["search"]), **FIXTURE["common"])
    want = spec["trials"]
    assert any(not t["feasible"] for t in want) or case == "tpe_joint"
    _assert_same(_trials(result.storage, result.study), want)


def test_cli_reproduces_the_recorded_trials(home, tmp_path):
    spec = _as_recorded(CASES["random_prune"]["search"])
    argv = ["search", "--model", spec["model"], "--dataset", spec["dataset"], "--space", spec["space"]]
    argv += ["--budget", ",".join(spec["budgets"]), "--objectives", ",".join(spec["objectives"])]
    argv += ["--controller", spec["controller"], "--trials", str(spec["trials"]), "--seed", str(spec["seed"])]
    argv += [
        "--profile",
        "none",
        "--finetune-top",
        "0",
        "--proxy",
        "adaptive_bn",
        "--quiet",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    study = f"{spec['model']}-{spec['dataset']}-{spec['controller']}-s{spec['seed']}"
    _assert_same(_trials(f"sqlite:///{tmp_path / 'study.db'}", study), CASES["random_prune"]["trials"])
