"""User models named by an import path: built only from a path the user gives, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from torch import nn

from automc import models
from automc.errors import AutomcError
from automc.models import user

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def user_pkg_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def test_build_calls_the_factory_with_the_given_kwargs():
    net = user.build("user_pkg.netdef:build_net", {"width": 4})
    assert isinstance(net, nn.Module) and net.stem.out_channels == 4
    assert user.class_path(net) == "user_pkg.netdef:SeparableResNet"
    assert user.build("user_pkg.netdef:SeparableResNet").stem.out_channels == 8


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("user_pkg.no_such_module:build_net", "cannot import module 'user_pkg.no_such_module'"),
        ("user_pkg.netdef:no_such_factory", "has no attribute 'no_such_factory'"),
        ("user_pkg.netdef:broken_factory", "the factory raised ValueError: width must be even"),
        ("user_pkg.netdef:not_a_module", "returned a dict, not a torch nn.Module"),
        ("not a path", "an import path has the form package.module:factory"),
    ],
)
def test_bad_import_paths_are_one_line_errors(path: str, message: str):
    with pytest.raises(AutomcError) as info:
        user.build(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_factory_kwargs_must_be_a_json_object():
    assert user.parse_kwargs('{"width": 2}') == {"width": 2}
    assert user.parse_kwargs(None) == {}
    for text in ("[1, 2]", "{width: 2}"):
        with pytest.raises(AutomcError, match="--model-kwargs"):
            user.parse_kwargs(text)


def test_import_paths_are_told_apart_from_zoo_and_torchvision_names():
    assert user.is_import_path("my_pkg.models:build_net") and user.is_import_path("mod:Net.build")
    assert not user.is_import_path("tv:resnet18") and not user.is_import_path("resnet20")
    assert not user.is_import_path("imagefolder:/data/x")


def test_create_never_imports_a_path_it_is_given(monkeypatch: pytest.MonkeyPatch):
    """``models.create`` is reached from data files (saved models, configs): it must not import."""
    monkeypatch.delitem(sys.modules, "user_pkg.netdef", raising=False)
    with pytest.raises(AutomcError, match="never from a data file"):
        models.create("user_pkg.netdef:build_net")
    assert "user_pkg.netdef" not in sys.modules


def test_a_user_module_is_priced_compressed_and_analysed_as_it_is():
    import torch

    from automc import compress, cost, graph, sensitivity
    from automc.plan import CompressionPlan, LayerChoice

    net = user.build("user_pkg.netdef:build_net").eval()
    x = torch.zeros(1, 3, 16, 16)
    layers = graph.layers(net, x)
    plan = CompressionPlan(layers={"down": LayerChoice(keep_ratio=0.5)})
    by_module = cost.estimate(net, plan, example_input=x).total
    assert by_module == cost.estimate(layers, plan).total
    assert by_module["macs"] < cost.estimate(net, CompressionPlan(), example_input=x).total["macs"]
    with pytest.raises(AutomcError, match="needs example_input"):
        cost.estimate(net, plan)
    assert compress.apply(net, plan, x).down.out_channels == 8
    score = sensitivity.proxy_scorer(net, x, _CountingProxy())
    rows = sensitivity.analyse(layers, score, keeps=[0.5], bits=[8], criterion="l1", quantizer="uniform")
    assert {r.layer for r in rows if r.param == "keep_ratio"} >= {"down"}


class _CountingProxy:
    """Scores a candidate by its share of the base's parameters (a real, cheap signal)."""

    def evaluate(self, model, plan):
        return {"acc": float(sum(p.numel() for p in model.parameters()))}


def test_cli_trains_and_analyses_a_user_factory(tmp_path, capsys):
    from automc.cli import main

    weights = tmp_path / "net.pt"
    train = ["train", "--model", "user_pkg.netdef:build_net", "--model-kwargs", '{"width": 4}']
    train += ["--dataset", "synthetic", "--epochs", "1", "--device", "cpu", "--no-progress"]
    assert main(train) == 2  # not cached: the weights must go somewhere
    assert "give --weights-out" in capsys.readouterr().err
    assert main([*train, "--weights-out", str(weights), "--json"]) == 0
    info = __import__("json").loads(capsys.readouterr().out)
    assert info["device"] == "cpu" and 0.0 <= info["test_acc"] <= 1.0 and weights.is_file()
    sens = ["sensitivity", "--model", "user_pkg.netdef:build_net", "--model-kwargs", '{"width": 4}']
    sens += ["--dataset", "synthetic", "--weights", str(weights), "--keep", "0.5", "--bits", "8"]
    assert main([*sens, "--device", "cpu", "--out", str(tmp_path / "s"), "--val-limit", "64"]) == 0
    assert (tmp_path / "s" / "sensitivity.csv").is_file()


def test_cli_prices_and_compresses_a_user_factory(tmp_path, capsys):
    import json

    from automc.cli import main

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"layers": {"down": {"keep_ratio": 0.5}}}))
    model = ["--model", "user_pkg.netdef:build_net", "--model-kwargs", '{"width": 4}', "--input", "1x3x16x16"]
    assert main(["cost", *model, "--plan", str(plan), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["macs"] > 0
    assert main(["compress", *model, "--plan", str(plan), "--out", str(tmp_path / "c.pt")]) == 0
    assert (tmp_path / "c.pt").is_file()


def test_cli_inspects_and_profiles_a_user_factory(tmp_path, capsys):
    import json

    from automc.cli import main
    from automc.schema.hw_profile import load_hw_profile

    model = ["--model", "user_pkg.netdef:build_net", "--model-kwargs", '{"width": 4}', "--input", "1x3x16x16"]
    assert main(["inspect", *model, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["macs"] > 0
    out = tmp_path / "p.yaml"
    profile = ["profile", *model, "--validate", "2", "--fit-variants", "2", "--repeats", "3", "--warmup", "1"]
    assert main([*profile, "--fractions", "0.5,1", "--threads", "1", "--out", str(out), "--quiet"]) == 0
    assert load_hw_profile(out).latency.networks[0].model == "user_pkg.netdef:build_net"
