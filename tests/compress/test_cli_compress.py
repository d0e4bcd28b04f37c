"""``automc inspect`` and ``automc compress`` end to end (in process, through automc.cli.main)."""

from __future__ import annotations

import json

import torch

from automc import models
from automc.cli import main
from automc.compress import load_compressed
from automc.graph import layers
from automc.plan import CompressionPlan

torch.set_num_threads(2)


def test_inspect_prints_the_layer_table(capsys):
    assert main(["inspect", "--model", "test_residual", "--input", "1x3x16x16"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["name", "kind", "in->out"]
    specs = layers(models.create("test_residual").eval(), torch.zeros(1, 3, 16, 16))
    assert [line.split()[0] for line in out[1 : 1 + len(specs)]] == [s.name for s in specs]
    assert any(line.startswith("total:") and f"{len(specs)} layers" in line for line in out)
    assert any("not prunable" in line and "fc" in line for line in out)


def test_inspect_json(capsys):
    assert main(["inspect", "--model", "test_tiny", "--input", "1x3x16x16", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in doc["layers"]] == ["conv1", "conv2", "fc"]
    assert doc["totals"]["macs"] == sum(d["macs"] for d in doc["layers"])


def test_compress_writes_a_reloadable_model(tmp_path, capsys):
    model = models.create("test_residual").eval()
    plan = CompressionPlan.uniform(
        layers(model, torch.zeros(1, 3, 16, 16)), keep_ratio=0.5, w_bits=8, a_bits=8, model="test_residual"
    )
    plan_path, out_path = tmp_path / "plan.json", tmp_path / "model.pt"
    plan_path.write_text(plan.to_json())
    rc = main(
        [
            "compress",
            "--model",
            "test_residual",
            "--plan",
            str(plan_path),
            "--input",
            "1x3x16x16",
            "--out",
            str(out_path),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "MACs:" in text and "params:" in text
    payload = torch.load(out_path, weights_only=True)
    assert payload["model"] == "test_residual" and CompressionPlan.from_json(payload["plan"]) == plan
    again = load_compressed(out_path)
    assert again(torch.randn(3, 3, 16, 16)).shape == (3, 10)
    assert sum(p.numel() for p in again.parameters()) < sum(p.numel() for p in model.parameters())


def test_compress_bad_plan_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": {"nope": {"keep_ratio": 0.5}}}')
    rc = main(
        [
            "compress",
            "--model",
            "test_tiny",
            "--plan",
            str(bad),
            "--input",
            "1x3x16x16",
            "--out",
            str(tmp_path / "m.pt"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "nope" in err
    bad.write_text("{not json")
    rc = main(["compress", "--model", "test_tiny", "--plan", str(bad), "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and str(bad) in err
    bad.write_text('{"layers": {}, "colour": 1}')
    rc = main(["compress", "--model", "test_tiny", "--plan", str(bad), "--out", str(tmp_path / "m.pt")])
    assert rc == 2 and "colour" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_unknown_model_exits_2(tmp_path, capsys):
    assert main(["inspect", "--model", "no_such_net"]) == 2
    assert "unknown model" in capsys.readouterr().err
    plan = tmp_path / "p.json"
    plan.write_text("{}")
    assert (
        main(["compress", "--model", "no_such_net", "--plan", str(plan), "--out", str(tmp_path / "m.pt")])
        == 2
    )
