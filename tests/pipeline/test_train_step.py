"""The user's ``train_step=`` / ``--train-step`` through a tiny search: base training, proxy, fine-tuning.

The step (``user_pkg.steps.shifted_labels``) trains models to predict ``(label + 1) %
classes``, which no cross-entropy run does; ``user_pkg.steps.shifted_accuracy`` measures
that, so a good base and winner accuracy shows the step's loss was the one minimised.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

import automc
from automc.cli import main
from automc.testing.search import TINY_SEARCH

USER_PKG_PARENT = Path(__file__).parents[1] / "models"
CLI_ARGS = [
    "--model", "test_tiny", "--dataset", "synthetic", "--space", "prune", "--budget", "flops=0.8",
    "--objectives", "acc,macs", "--controller", "random", "--profile", "none", "--device", "cpu",
    "--base-epochs", "1", "--proxy-steps", "2", "--finetune-top", "0", "--trials", "3", "--quiet",
    "--no-onnx",
]  # fmt: skip


@pytest.fixture(autouse=True)
def user_pkg_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(USER_PKG_PARENT))


def test_search_trains_the_base_proxy_and_winners_with_the_users_step(tmp_path, monkeypatch):
    from user_pkg import steps

    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path / "home"))
    steps.CALLS.clear()
    run = {
        **TINY_SEARCH,
        "out": tmp_path / "run",
        "seed": 0,
        "device": "cpu",
        "base_epochs": 3,
        "proxy_steps": 2,
        "finetune_top": 1,
        "finetune_epochs": 1,
        "export_onnx": False,
    }
    result = automc.search(train_step=steps.shifted_labels, evaluate=steps.shifted_accuracy, trials=3, **run)
    stages = {call["stage"] for call in steps.CALLS}
    assert {"check", "base", "proxy", "finetune"} <= stages
    assert all(call["training"] for call in steps.CALLS)
    # the base was trained on the step's shifted labels (chance: 10%) and, user code
    # being no part of the cache key, not cached
    assert result.base["val_acc"] > 0.3
    assert not list((tmp_path / "home").glob("base_models/*.pt"))
    assert result.winners and result.winners[0].figures["test_acc"] > 0.2  # chance: 0.1
    # the step trained the proxy's candidates: a study scored with it resumes only with it
    with pytest.raises(automc.AutomcError, match="cannot resume .* train_step differs"):
        automc.search(trials=4, **run)


def test_bad_train_step_output_is_an_automc_error_before_any_training(tmp_path, monkeypatch):
    from user_pkg import steps

    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path / "home"))
    steps.CALLS.clear()
    for step, message in [(steps.returns_a_float, "got a float"), (steps.returns_nan, "non-finite loss")]:
        with pytest.raises(automc.AutomcError, match=f"train_step=.*{message}"):
            automc.search(train_step=step, trials=2, out=tmp_path / "run", device="cpu", **TINY_SEARCH)
    assert not (tmp_path / "home").exists()  # refused before the base model was trained


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--train-step", "user_pkg.steps:returns_a_float"], "train_step= must return a scalar loss tensor"),
        (["--train-step", "user_pkg.steps:returns_nan"], "train_step= returned a non-finite loss (nan)"),
        (["--train-step", "user_pkg.steps:missing"], "--train-step 'user_pkg.steps:missing': module"),
        (["--evaluate", "user_pkg.nosuch:accuracy"], "--evaluate 'user_pkg.nosuch:accuracy': cannot import"),
        (["--train-step", "steps"], "an import path has the form package.module:function"),
    ],
)
def test_cli_bad_train_steps_are_one_line_errors(flags, message, tmp_path, capsys):
    assert main(["search", *CLI_ARGS, *flags, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("automc: error")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def _trials(out: Path) -> list[tuple]:
    storage = f"sqlite:///{out / 'study.db'}"
    (study,) = optuna.get_all_study_names(storage)
    return [
        (t.number, t.state.name, t.params, t.values, t.user_attrs.get("proxy"))
        for t in optuna.load_study(study_name=study, storage=storage).trials
    ]


def test_cli_train_step_and_loader_workers_give_the_same_trials_as_none(tmp_path, monkeypatch, capsys):
    """``--workers 2`` on the CPU: the same batches, so the same trials as ``--workers 0``."""
    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path / "home"))
    user = ["--train-step", "user_pkg.steps:shifted_labels", "--evaluate", "user_pkg.steps:shifted_accuracy"]
    runs = {}
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}"
        assert main(["search", *CLI_ARGS, *user, "--workers", workers, "--out", str(out)]) == 0
        assert automc.SearchConfig.load(out / "config.yaml").hardware.workers == int(workers)
        runs[workers] = _trials(out)
    assert runs["0"] == runs["2"]
    assert any(t[1] == "COMPLETE" for t in runs["0"])
    assert "train_step:" not in (tmp_path / "w2" / "config.yaml").read_text()  # Python-only, never in a file
