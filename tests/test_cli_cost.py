"""``automc cost``: table/JSON output, profiles, unsupported layers and one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from automc import models
from automc.cli import main
from automc.plan import CompressionPlan, LayerChoice
from automc.testing.models import AttentionNet

ROOT = Path(__file__).resolve().parent.parent
ENERGY = ROOT / "hw_profiles" / "energy-45nm.yaml"
MODEL = ["--model", "test_tiny", "--input", "1x3x16x16"]


def tiny_profile(**energy: object) -> dict:
    """A valid device profile with an empty latency table (every layer falls back to the roofline)."""
    return {
        "schema": "automc/hw-profile",
        "version": 1,
        "device": {"id": "test-cpu", "kind": "cpu", "description": "hand-written test profile"},
        "runtime": {"framework": "torch", "version": "2", "threads": 1, "batch": 1, "dtype": "fp32"},
        "measurement": {"warmup": 1, "repeats": 3, "statistic": "median", "date": "2025-01-01"},
        "roofline": {
            "peak_macs_per_s": {"fp32": 1.0e10},
            "memory_bandwidth_bytes_per_s": 1.0e10,
            "launch_overhead_ms": 0.01,
        },
        "energy": {"table": "energy-45nm", "onchip_buffer_bytes": 65536, **energy},
        "latency": {
            "network_overhead_ms": 0.1,
            "grid": {"channel_fractions": [0.5, 1.0], "rank_fractions": [0.5, 1.0]},
            "table": [],
        },
    }


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_table_output(capsys):
    code, out, err = run_cli(capsys, "cost", *MODEL)
    assert code == 0, err
    assert "MACs" in out and "energy" in out and "peak activation" in out
    assert "sparsity saves size and memory traffic, not MACs" in out


def test_json_output_and_plan(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "cost", *MODEL, "--json")
    assert code == 0
    base = json.loads(out)
    assert set(base) >= {"total", "per_layer", "unsupported"}
    assert base["unsupported"] == {}
    layer_names = list(base["per_layer"])
    first = layer_names[0]
    plan = CompressionPlan(layers={name: LayerChoice(w_bits=8, a_bits=8) for name in layer_names})
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.to_json())
    code, out, _ = run_cli(capsys, "cost", *MODEL, "--json", "--plan", str(plan_path))
    assert code == 0
    quant = json.loads(out)
    assert quant["total"]["macs"] == base["total"]["macs"]
    assert quant["total"]["size_bytes"] < base["total"]["size_bytes"] / 3
    assert quant["total"]["energy_mj"] < base["total"]["energy_mj"]
    assert quant["per_layer"][first]["energy_compute_mj"] < base["per_layer"][first]["energy_compute_mj"]


def test_profile_gives_latency_and_roofline_flags(capsys, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_profile()))
    code, out, err = run_cli(capsys, "cost", *MODEL, "--json", "--profile", str(path))
    assert code == 0, err
    report = json.loads(out)
    assert report["total"]["latency_ms"] > 0
    assert report["flags"] and all("latency" in note for note in report["flags"].values())
    code, text, _ = run_cli(capsys, "cost", *MODEL, "--profile", str(path))
    assert code == 0 and "latency" in text and "ms (batch 1, profile test-cpu)" in text


def test_profile_auto_names_the_shipped_profile_it_resolved_to(capsys):
    from automc.schema.hw_profile import auto_profile

    code, text, err = run_cli(capsys, "cost", *MODEL, "--profile", "auto")
    assert code == 0, err
    assert f"ms (batch 1, profile {auto_profile()})" in text and auto_profile().startswith("cpu-x86-2core")


def test_unpriceable_layer_refused_unless_allowed(capsys, tmp_path):
    table = yaml.safe_load(ENERGY.read_text())
    table["compute"] = [e for e in table["compute"] if e["dtype"] == "float"]
    table_path = tmp_path / "float-only.yaml"
    table_path.write_text(yaml.safe_dump(table))
    code, out, _ = run_cli(capsys, "cost", *MODEL, "--json")
    names = list(json.loads(out)["per_layer"])
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(CompressionPlan(layers={names[0]: LayerChoice(w_bits=8, a_bits=8)}).to_json())
    argv = ["cost", *MODEL, "--plan", str(plan_path), "--energy-table", str(table_path)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and names[0] in err and "--allow-unsupported" in err
    code, out, err = run_cli(capsys, *argv, "--allow-unsupported")
    assert code == 0 and "unsupported (totals are lower bounds)" in out


ATTN_MODEL = "cli_cost_attention"


def test_attention_refused_unless_allowed_then_listed_as_unsupported(capsys, request):
    models.REGISTRY.register(ATTN_MODEL, "attention test model")(AttentionNet)
    request.addfinalizer(lambda: models.REGISTRY.remove(ATTN_MODEL))
    argv = ["cost", "--model", ATTN_MODEL, "--input", "1x3x16x16", "--json"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "attn: not a conv2d/linear layer: MultiheadAttention" in err
    code, out, err = run_cli(capsys, *argv, "--allow-unsupported")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc["unsupported"]) == {"attn"}
    assert set(doc["per_layer"]) == {"stem.0", "fc"}


def bad_profile(tmp_path: Path) -> str:
    data = tiny_profile()
    data["roofline"]["memory_bandwidth_bytes_per_s"] = -1
    data["device"]["colour"] = "red"
    path = tmp_path / "bad-profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def future_table(tmp_path: Path) -> str:
    data = yaml.safe_load(ENERGY.read_text())
    data["version"] = 99
    path = tmp_path / "future.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def bad_plan(tmp_path: Path) -> str:
    path = tmp_path / "plan.json"
    path.write_text('{"layers": {"no.such.layer": {"w_bits": 8}}}')
    return str(path)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (lambda tmp: ["--input", "1x3xtwo"], "--input"),
        (lambda tmp: ["--input", "3x32x32"], "NxCxHxW"),
        (lambda tmp: ["--profile", "no-such-device"], "unknown device profile 'no-such-device'"),
        (lambda tmp: ["--profile", bad_profile(tmp)], "device.colour: unknown key"),
        (lambda tmp: ["--energy-table", "energy-1nm"], "unknown energy table 'energy-1nm'"),
        (lambda tmp: ["--energy-table", future_table(tmp)], "unsupported version 99"),
        (lambda tmp: ["--plan", str(tmp / "missing.json")], "file not found"),
        (lambda tmp: ["--plan", bad_plan(tmp)], "no.such.layer"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, extra, fragment):
    argv = ["cost", "--model", "test_tiny", "--input", "1x3x16x16"]
    extra_args = extra(tmp_path)
    if extra_args[0] == "--input":
        argv = argv[:3]
    code, out, err = run_cli(capsys, *argv, *extra_args)
    assert code == 2
    assert err.startswith("automc: error:") and err.count("\n") == 1
    assert fragment in err
    assert "Traceback" not in err


def test_unknown_model_exit_2(capsys):
    code, _, err = run_cli(capsys, "cost", "--model", "no_such_net", "--input", "1x3x16x16")
    assert code == 2 and "no_such_net" in err and err.count("\n") == 1
