"""A model class in no registry (residual add, depthwise conv) through search → winners → report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import automc
from automc.cli import main
from automc.testing.search import TINY_SEARCH

USER_PKG_PARENT = Path(__file__).parents[1] / "models"
ARGS = {
    **{k: v for k, v in TINY_SEARCH.items() if k != "model"},  # the model is the test's own module
    "finetune_top": 1,
    "finetune_epochs": 1,
    "base_epochs": 2,
    "device": "cpu",
}
CLI_ARGS = [
    "--dataset", "synthetic", "--space", "prune", "--budget", "flops=0.8", "--objectives", "acc,macs",
    "--controller", "random", "--profile", "none", "--finetune-top", "1", "--finetune-epochs", "1",
    "--base-epochs", "2", "--device", "cpu", "--trials", "4", "--quiet", "--no-onnx",
]  # fmt: skip


@pytest.fixture(autouse=True)
def user_pkg_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(USER_PKG_PARENT))


def _cli(args: list[str], log: Path) -> subprocess.CompletedProcess:
    """``automc ARGS`` in a fresh interpreter that can import ``user_pkg`` and logs when it does."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(USER_PKG_PARENT), os.environ.get("PYTHONPATH", "")]),
        "USER_PKG_IMPORT_LOG": str(log),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "automc", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_python_api_searches_a_user_module_and_records_its_class(tmp_path):
    from user_pkg.netdef import SeparableResNet

    net = SeparableResNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = automc.search(model=net, trials=6, out=tmp_path, seed=0, **ARGS)
    assert result.config.base.model == "user_pkg.netdef:SeparableResNet"
    assert result.winners and result.pareto
    assert all(w.trial in result.pareto for w in result.winners)
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    assert study.user_attrs["automc"]["model"] == "user_pkg.netdef:SeparableResNet"
    # the layer table is the user's model: the depthwise conv and the residual-coupled pointwise conv
    assert {"dw", "pw", "stem"} <= set(study.user_attrs["automc"]["layer_order"])
    winner = json.loads(Path(result.winners[0].files["winner"]).read_text())
    assert json.dumps(winner).count("user_pkg.netdef:SeparableResNet") >= 2  # model and model_class
    # the user's own object was copied, never trained in place
    assert all((before[k] == v).all() for k, v in net.state_dict().items())
    assert (
        main(["report", "--storage", result.storage, "--study", result.study, "--out", str(tmp_path / "r")])
        == 0
    )
    assert (tmp_path / "r" / "pareto.json").is_file()


def test_cli_searches_a_factory_and_never_imports_it_from_data_files(tmp_path):
    log = tmp_path / "imports.log"
    out = tmp_path / "run"
    factory = ["--model", "user_pkg.netdef:build_net", "--model-kwargs", '{"width": 4}']
    done = _cli(["search", *factory, *CLI_ARGS, "--out", str(out)], log)
    assert done.returncode == 0, done.stderr
    assert log.read_text().count("imported") == 1
    config = automc.SearchConfig.load(out / "config.yaml")
    assert config.base.model == "user_pkg.netdef:build_net" and json.loads(config.base.model_kwargs) == {
        "width": 4
    }
    assert list((out / "winners").glob("trial*/model.pt"))
    log.unlink()
    study = optuna.get_all_study_names(f"sqlite:///{out / 'study.db'}")[0]
    report = _cli(
        [
            "report",
            "--storage",
            f"sqlite:///{out / 'study.db'}",
            "--study",
            study,
            "--out",
            str(tmp_path / "r"),
        ],
        log,
    )
    assert report.returncode == 0, report.stderr
    again = _cli(["search", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "again")], log)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith("automc: error: config base.model")
    assert "never from a data file" in again.stderr and "Traceback" not in again.stderr
    assert not log.exists()  # neither the report nor the stored config imported the user's code


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("user_pkg.missing:build_net", "cannot import module 'user_pkg.missing'"),
        ("user_pkg.netdef:missing", "has no attribute 'missing'"),
        ("user_pkg.netdef:broken_factory", "the factory raised ValueError"),
        ("user_pkg.netdef:not_a_module", "not a torch nn.Module"),
    ],
)
def test_cli_bad_user_models_are_one_line_errors(model, message, tmp_path, capsys):
    assert main(["search", "--model", model, *CLI_ARGS, "--out", str(tmp_path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("automc: error")]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "study.db").exists()


def _top2(model, dataset) -> dict[str, float]:
    """Top-2 accuracy: a quality measure that is not the default top-1."""
    import torch
    from torch.utils.data import DataLoader

    hits = total = 0
    model.eval()
    with torch.inference_mode():
        for x, y in DataLoader(dataset, batch_size=256):
            hits += int((model(x).topk(2, dim=1).indices == y[:, None]).any(dim=1).sum())
            total += int(y.numel())
    return {"acc": hits / total}


def test_a_user_evaluate_measures_the_base_and_the_winners(tmp_path):
    from user_pkg.netdef import SeparableResNet

    from automc import data

    devices: list[str] = []

    def evaluate(model, dataset):
        devices.append(next(model.parameters()).device.type)
        return _top2(model, dataset)

    args = {**ARGS, "finetune_top": 1}
    result = automc.search(model=SeparableResNet(), evaluate=evaluate, trials=3, out=tmp_path, seed=0, **args)
    test = data.load("synthetic", None, seed=0).test
    (winner,) = result.winners
    assert winner.figures["test_acc"] == _top2(winner.model, test)["acc"]
    assert "test_loss" not in winner.figures  # the user's function measures no loss
    assert len(devices) >= 5 and set(devices) == {"cpu"}  # base val/test, winner before/val/test
    with pytest.raises(automc.AutomcError, match="finite number 'acc'"):
        automc.search(
            model=SeparableResNet(), evaluate=lambda m, d: {"top1": 1.0}, trials=1, out=tmp_path / "b", **ARGS
        )
