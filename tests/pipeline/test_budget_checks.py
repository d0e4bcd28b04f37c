"""Cheap checks before expensive work: budgets no plan can meet, and models that cannot ship on the
profile's runtime, are refused before the base model trains."""

from __future__ import annotations

import pytest
import torch

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


class UnexportablePool(torch.nn.Module):
    """An adaptive pool whose output size does not divide its input: torch's ONNX exporter refuses it."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, 8, 3, stride=4, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(3)
        self.fc = torch.nn.Linear(8 * 9, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_a_model_the_runtime_cannot_export_is_refused_for_a_latency_budget_and_warned_about_otherwise(capfd):
    from automc.cost import load_profile
    from automc.errors import AutomcError
    from automc.pipeline.setup import check_shippable

    ort, eager = load_profile("cpu-x86-2core-ort"), load_profile("cpu-x86-2core-torch")
    net, x = UnexportablePool().eval(), torch.randn(1, 3, 32, 32)
    with pytest.raises(
        AutomcError, match=r"cannot be exported for onnxruntime \(SymbolicValueError: .*adaptive_avg_pool2d"
    ):
        check_shippable(net, x, ort, {"macs", "latency_ms"})
    assert capfd.readouterr().out == ""  # torch's IR dump is not printed
    assert not check_shippable(net, x, ort, {"macs"})
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "warning: the model cannot be exported for onnxruntime" in err
    assert check_shippable(net, x, eager, {"latency_ms"})
    pooled = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    assert check_shippable(pooled.eval(), x, ort, {"latency_ms"}) and capfd.readouterr().err == ""


class TwoOutputs(torch.nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.conv(x).mean((2, 3))
        return self.fc(features), features


def _logits(n: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, n)
    )


def test_a_model_that_does_not_return_one_logits_tensor_is_refused_before_training(
    tmp_path, capsys, no_training
):
    import automc
    from automc.data import Splits
    from automc.errors import AutomcError
    from automc.pipeline.setup import check_logits

    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(AutomcError, match=r"returns a tuple, not a tensor"):
        check_logits(TwoOutputs(), x, 10)
    with pytest.raises(AutomcError, match=r"returns shape \(1, 4\) .* needs \(batch, 10\) logits"):
        check_logits(_logits(4), x, 10)
    check_logits(_logits(12), x, 10)  # more outputs than the data has classes: allowed
    gen = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(40, 3, 16, 16, generator=gen), torch.arange(40) % 10)
    with pytest.raises(AutomcError, match="returns a tuple"):
        automc.search(
            model=TwoOutputs(), data=Splits(train=ds, val=ds, test=ds), out=str(tmp_path / "r"), trials=2
        )
