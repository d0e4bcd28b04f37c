"""Winners measured as they ship on an ONNX Runtime profile, and ``automc export`` of a recorded winner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import onnx
import pytest

import automc
from automc.cli import main
from automc.hardware import runtimes

ARGS = dict(
    model="test_tiny",
    dataset="synthetic",
    space="joint",
    budgets=["flops=0.8"],
    objectives=["acc", "macs"],
    controller="random",
    finetune_top=2,
    finetune_epochs=1,
    progress=False,
)


def _ort_profile(folder: Path) -> Path:
    """A small profile of test_tiny, recorded as measured on ONNX Runtime's CPU provider."""
    from automc.schema.hw_profile import dump_hw_profile
    from automc.testing.profiles import full_width_profile

    prof = full_width_profile("tiny-ort")
    ort = runtimes.get("onnxruntime")
    info = replace(
        prof.runtime,
        framework=ort.name,
        version=ort.version,
        provider=ort.provider,
        graph_optimization=ort.graph_optimization,
    )
    return dump_hw_profile(replace(prof, runtime=info), folder / "tiny-ort.yaml")


@pytest.fixture(scope="module")
def run(home, tmp_path_factory):
    out = tmp_path_factory.mktemp("ort_run")
    profile = _ort_profile(out)
    # seed 1: among its random plans' winners is an int8 one (asserted below), with the shipped joint space
    return automc.search(trials=6, out=out / "run", seed=1, profile=str(profile), **ARGS), out / "run"


def test_winners_are_measured_and_evaluated_on_the_profiles_runtime(run):
    result, out = run
    assert result.winners
    recorded = {w["trial"]: w for w in json.loads((out / "pareto.json").read_text())["winners"]}
    for w in result.winners:
        fig = w.figures
        assert "runtime_error" not in fig, fig.get("runtime_error")
        assert fig["runtime"] == "onnxruntime"
        assert fig["latency_ms_measured"] > 0 and fig["base_latency_ms_runtime"] > 0
        assert fig["speedup_measured"] == pytest.approx(
            fig["base_latency_ms_runtime"] / fig["latency_ms_measured"]
        )
        assert abs(fig["test_acc_runtime"] - fig["test_acc"]) <= 0.05
        assert fig["runtime_int8_layers"] == len(runtimes.int8_layers(w.plan))
        artifact = Path(w.files["artifact"])
        assert artifact.suffix == ".onnx" and artifact.is_file()
        ops = {n.op_type for n in onnx.load(str(artifact)).graph.node}
        assert ("QuantizeLinear" in ops) == bool(runtimes.int8_layers(w.plan))
        assert recorded[w.trial]["test_acc_runtime"] == fig["test_acc_runtime"]
        assert recorded[w.trial]["files"]["artifact"] == w.files["artifact"]
    assert any(w.figures["runtime_int8_layers"] for w in result.winners)  # the search found an int8 winner
    assert result.base["runtime"] == "onnxruntime" and "test_acc_runtime" in result.base
    summary = (out / "summary.md").read_text()
    assert "test acc on runtime" in summary and "on onnxruntime" in summary


def test_export_re_exports_a_recorded_winner(run, tmp_path, capsys):
    result, out = run
    w = result.winners[0]
    target = tmp_path / "model.onnx"
    rc = main(
        [
            "export",
            "--run",
            str(out),
            "--trial",
            str(w.trial),
            "--runtime",
            "onnxruntime",
            "--out",
            str(target),
        ]
    )
    assert rc == 0 and target.is_file()
    line = capsys.readouterr().out
    assert f"export: {target} (onnxruntime" in line
    done = runtimes.export_winner(out, w.trial, "onnxruntime", tmp_path / "again.onnx")
    assert done.test_acc_recorded == pytest.approx(w.figures["test_acc"])
    assert done.test_acc_runtime == pytest.approx(w.figures["test_acc_runtime"], abs=0.02)
    assert done.int8_layers == tuple(sorted(runtimes.int8_layers(w.plan)))


def test_export_of_a_trial_that_is_no_winner_is_one_error(run, tmp_path, capsys):
    _, out = run
    rc = main(["export", "--run", str(out), "--trial", "999", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and "no fine-tuned winner for trial 999" in err and len(err.strip().splitlines()) == 1
    rc = main(["export", "--run", str(tmp_path), "--trial", "0", "--out", str(tmp_path / "m.onnx")])
    assert rc == 2 and "no config.yaml" in capsys.readouterr().err
    rc = main(["export", "--run", str(out), "--trial", "0", "--runtime", "tvm", "--out", str(tmp_path / "m")])
    assert rc == 2 and "unknown runtime 'tvm'" in capsys.readouterr().err
