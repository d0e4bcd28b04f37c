"""A resume cannot mix runs; studies sharing an ``--out`` keep their own reports."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import optuna
import pytest

from automc.errors import AutomcError
from automc.pipeline import search
from automc.search.storage import RESUME_FIELDS, resume_mismatch

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

ARGS: dict[str, Any] = dict(
    model="test_tiny",
    dataset="synthetic",
    space="prune",
    budgets=["flops=0.9"],
    objectives=["acc", "macs"],
    controller="random",
    profile=None,
    finetune_top=0,
    export_onnx=False,
    progress=False,
    seed=0,
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    search(trials=2, out=out, study="s", **ARGS)
    return out


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"budgets": ["flops=0.5"]}, "budgets"),
        ({"dataset": "digits"}, "data.dataset"),
        ({"seed": 1}, "seed"),
        ({"proxy_steps": 3}, "proxy.steps"),
        ({"proxy_lr": 0.02}, "proxy.lr"),
        ({"controller": "optuna-tpe"}, "controller.name"),
        ({"space": "quant"}, "space"),
    ],
)
def test_resume_with_another_meaning_is_refused_and_storage_unchanged(
    run: Path, change: dict[str, Any], field: str
) -> None:
    db = run / "study.db"
    before = (_digest(db), sorted(p.name for p in run.iterdir()))
    with pytest.raises(AutomcError) as e:
        search(**{**ARGS, "trials": 3, "out": run, "study": "s", **change})
    message = str(e.value)
    assert f": {field} differs (stored " in message and "--new-study" in message
    assert "\n" not in message
    assert (_digest(db), sorted(p.name for p in run.iterdir())) == before


def test_resume_with_more_trials_or_other_finetune_continues(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "study.db").write_bytes((run / "study.db").read_bytes())
    (copy / "config.yaml").write_bytes((run / "config.yaml").read_bytes())
    result = search(**{**ARGS, "trials": 3, "out": copy, "study": "s", "finetune_epochs": 1})
    assert sum(t.state != "PRUNED" for t in result.trials) == 3 and result.report_dir == copy


def test_new_study_starts_fresh_and_shared_out_keeps_both_reports(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "study.db").write_bytes((run / "study.db").read_bytes())
    (out / "config.yaml").write_bytes((run / "config.yaml").read_bytes())
    (out / "index.html").write_text("first study's report", encoding="utf-8")
    fresh = search(
        **{**ARGS, "trials": 2, "out": out, "study": "s", "budgets": ["flops=0.7"], "new_study": True}
    )
    assert fresh.study == "s-2" and len(fresh.trials) == 2
    assert fresh.report_dir == out / "s-2" and (out / "s-2" / "index.html").is_file()
    assert (out / "index.html").read_text(encoding="utf-8") == "first study's report"
    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{out / 'study.db'}")}
    assert names == {"s", "s-2"}
    other = search(**{**ARGS, "trials": 2, "out": out, "study": "t"})
    assert other.report_dir == out / "t"
    assert (out / "index.html").read_text(encoding="utf-8") == "first study's report"


def test_resume_mismatch_names_the_first_field_and_ignores_run_settings() -> None:
    config = {
        "data": {"dataset": "digits", "root": None},
        "budgets": ["flops=0.3"],
        "controller": {"name": "random", "trials": 5},
        "finetune": {"top": 3},
        "output": {"out": "a"},
        "seed": 0,
    }
    same = {
        **config,
        "controller": {"name": "random", "trials": 50},
        "finetune": {"top": 0},
        "output": {"out": "b"},
    }
    assert resume_mismatch({"config": config}, {"config": same}) == ""
    moved = {**config, "data": {"dataset": "digits", "root": "/elsewhere"}, "seed": 4}
    assert resume_mismatch({"config": config}, {"config": moved}) == (
        "data.root differs (stored None, now '/elsewhere')"
    )
    assert resume_mismatch({"profile_digest": "a"}, {"profile_digest": "b"}).startswith(
        "profile_digest differs"
    )
    assert "controller.trials" not in RESUME_FIELDS and "finetune.top" not in RESUME_FIELDS
