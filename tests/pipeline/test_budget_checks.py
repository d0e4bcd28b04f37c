"""Cheap checks before expensive work: budgets no plan can meet are refused before the base model trains."""

from __future__ import annotations

import pytest

from automc import train
from automc.budget import fraction_hint, parse_budget
from automc.cli import main
from automc.testing.search import TINY_SEARCH_ARGV

ARGV = [*TINY_SEARCH_ARGV, "--trials", "2"]


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the base model was trained before the budget was checked")

    monkeypatch.setattr(train, "base_model", refuse)


def test_an_absolute_budget_that_reads_like_a_fraction_is_refused_before_training_with_a_hint(
    tmp_path, capsys, no_training
):
    code = main([*ARGV, "--budget", "flops=3", "--out", str(tmp_path / "run")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("automc: error:")]
    assert code == 2 and len(errors) == 1
    err = errors[0]
    assert "budget macs=3 cannot be met: the smallest plan in the space costs" in err
    assert "the base model" in err and "did you mean flops=0.3, a fraction of the base model?" in err
    assert not (tmp_path / "run").exists()


def test_a_relative_budget_below_the_cheapest_plan_is_refused_before_training(tmp_path, capsys, no_training):
    code = main([*ARGV, "--budget", "flops=0.01", "--out", str(tmp_path / "run")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("automc: error:")]
    assert code == 2 and len(errors) == 1
    assert "cannot be met" in errors[0] and "did you mean" not in errors[0]


@pytest.mark.parametrize(
    ("token", "hint"),
    [
        ("flops=3", "flops=0.3"),
        ("macs=30", "macs=0.3"),
        ("params=50", "params=0.5"),
        ("flops=3M", ""),
        ("flops=0.3", ""),
        ("flops=500", ""),
    ],
)
def test_fraction_hint(token, hint):
    text = fraction_hint(parse_budget(token))
    assert (hint in text) if hint else text == ""


def test_the_base_models_accuracy_is_one_line(home, capsys):
    from automc import data
    from automc.pipeline.setup import report_base_accuracy

    splits = data.load("synthetic", seed=0)
    base, info = train.base_model(
        "test_tiny", "synthetic", splits=splits, options=train.FitOptions(progress=False)
    )
    capsys.readouterr()
    val_acc, test_acc = report_base_accuracy(base, splits, "test_tiny")
    assert test_acc == pytest.approx(info["test_acc"])
    assert (
        capsys.readouterr().err
        == f"automc: base model test_tiny: val acc {val_acc:.4f}, test acc {test_acc:.4f}\n"
    )


def test_no_progress_bars_when_stderr_is_not_a_terminal(capsys):
    from automc.config import SearchConfig
    from automc.pipeline.setup import progress_enabled

    assert SearchConfig().output.progress  # asked for by default, but pytest's stderr is no terminal
    assert not progress_enabled(SearchConfig())
