"""Sensitivity analysis: rows, CSV round trip, prior, plot and the CLI verb on a tiny model."""

from __future__ import annotations

import pytest
import torch

from automc import graph, sensitivity
from automc.cli import main
from automc.errors import AutomcError
from automc.models import create
from automc.plan import CompressionPlan
from automc.proxy import AdaptiveBNProxy, ProxyData

torch.set_num_threads(1)


def write(tmp_path, rows):
    return sensitivity.write_csv([sensitivity.SensitivityRow(*r) for r in rows], tmp_path / "s.csv")


def test_prior_takes_smallest_safe_keep_ratio(tmp_path):
    path = write(
        tmp_path,
        [
            ("", "base", "keep_ratio", 1.0, 0.90),
            ("a", "conv2d", "keep_ratio", 0.25, 0.50),
            ("a", "conv2d", "keep_ratio", 0.5, 0.89),
            ("a", "conv2d", "keep_ratio", 0.75, 0.90),
            ("b", "conv2d", "keep_ratio", 0.25, 0.89),  # noisy: passes at 0.25 ...
            ("b", "conv2d", "keep_ratio", 0.5, 0.70),  # ... but fails at 0.5
            ("b", "conv2d", "keep_ratio", 0.75, 0.895),
            ("c", "conv2d", "keep_ratio", 0.75, 0.10),
            ("fc", "linear", "w_bits", 2, 0.2),
        ],
    )
    assert sensitivity.sensitivity_prior(path, 0.02) == {"a": 0.5, "b": 0.75, "c": 1.0}
    assert sensitivity.sensitivity_prior(path, 0.5) == {"a": 0.25, "b": 0.25, "c": 1.0}
    with pytest.raises(AutomcError, match="threshold"):
        sensitivity.sensitivity_prior(path, -1)


def test_bad_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("layer,kind,param,value,acc\na,conv2d,keep_ratio,x,0.5\n")
    with pytest.raises(AutomcError, match="bad.csv:2"):
        sensitivity.read_csv(bad)
    bad.write_text("layer,kind,value\n")
    with pytest.raises(AutomcError, match="header"):
        sensitivity.read_csv(bad)
    with pytest.raises(AutomcError, match="missing.csv: file not found"):
        sensitivity.read_csv(tmp_path / "missing.csv")


def test_analyse_real_model_and_plot(tmp_path):
    torch.manual_seed(0)
    model = create("test_residual", num_classes=3, in_channels=3).eval()
    example = torch.zeros(1, 3, 8, 8)
    layers = graph.layers(model, example)
    x = torch.randn(48, 3, 8, 8)
    y = model(x).argmax(dim=1).detach()
    data = ProxyData(calib_inputs=(x[:24], x[24:]), val_inputs=(x,), val_targets=(y,))
    score = sensitivity.proxy_scorer(model, example, AdaptiveBNProxy(data=data))
    seen: list[CompressionPlan] = []

    def recording(plan: CompressionPlan) -> float:
        seen.append(plan)
        return score(plan)

    rows = sensitivity.analyse(layers, recording, keeps=(0.5,), bits=(2, 8))
    groups = {s.group for s in layers if s.prunable}
    assert len(seen) == 1 + len(groups) + 2 * len(layers)
    assert rows[0].kind == "base" and rows[0].acc == 1.0  # labels are the model's own predictions
    for plan in seen[1 : 1 + len(groups)]:
        pruned = {spec.group for spec in layers if plan.choice(spec.name).keep_ratio < 1}
        assert len(pruned) == 1
    keep_rows = [r for r in rows if r.param == "keep_ratio" and r.kind != "base"]
    assert {r.layer for r in keep_rows} == {s.name for s in layers if s.prunable}
    eight = [r.acc for r in rows if r.param == "w_bits" and r.value == 8]
    two = [r.acc for r in rows if r.param == "w_bits" and r.value == 2]
    assert min(eight) >= 0.9 and sum(two) <= sum(eight)
    csv_path = sensitivity.write_csv(rows, tmp_path / "out" / "s.csv")
    assert sensitivity.read_csv(csv_path) == [
        sensitivity.SensitivityRow(r.layer, r.kind, r.param, r.value, round(r.acc, 6)) for r in rows
    ]
    png = sensitivity.plot(rows, tmp_path / "out" / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(AutomcError, match="keep ratios"):
        sensitivity.analyse(layers, recording, keeps=(1.0,))
    with pytest.raises(AutomcError, match="bits"):
        sensitivity.analyse(layers, recording, bits=(16,))


def test_cli_rejects_bad_flags(capsys):
    assert main(["sensitivity", "--model", "test_tiny", "--dataset", "synthetic", "--keep", "a,b"]) == 2
    assert "--keep" in capsys.readouterr().err
    assert main(["sensitivity", "--model", "test_tiny", "--dataset", "synthetic", "--bits", "2.5"]) == 2
    assert main(["sensitivity", "--model", "test_tiny", "--dataset", "synthetic", "--criterion", "nope"]) == 2
    assert "unknown pruning criterion" in capsys.readouterr().err


def test_cli_writes_csv_and_png(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path / "home"))
    from automc.data import load

    torch.manual_seed(0)

    splits = load("synthetic", None, seed=0)
    model = create("test_tiny", num_classes=splits.num_classes, in_channels=splits.in_channels)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "sens"
    code = main(
        [
            "sensitivity",
            "--model",
            "test_tiny",
            "--dataset",
            "synthetic",
            "--weights",
            str(weights),
            "--keep",
            "0.5",
            "--bits",
            "4",
            "--out",
            str(out),
            "--val-limit",
            "64",
        ]
    )
    assert code == 0, capsys.readouterr().err
    rows = sensitivity.read_csv(out / "sensitivity.csv")
    assert {r.param for r in rows} == {"keep_ratio", "w_bits"}
    assert (out / "sensitivity.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out
