"""Winners a team can act on: self-describing files, one-line loading, a recommendation on val and measured cost."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

import automc
from automc import data, train
from automc.compress import load_compressed
from automc.pipeline import summary_table
from automc.plan import CompressionPlan
from automc.testing.search import TINY_SEARCH

ARGS = {
    **TINY_SEARCH,
    "finetune_top": 2,
    "finetune_epochs": 1,
}


@pytest.fixture(scope="module")
def run(home, tmp_path_factory):
    out = tmp_path_factory.mktemp("winners")
    return automc.search(trials=8, out=out, seed=0, **ARGS), out


def test_every_winner_loads_through_the_public_loader_and_reproduces_its_test_accuracy(run):
    result, out = run
    splits = data.load("synthetic", seed=0)
    stored = json.loads((out / "pareto.json").read_text())["winners"]
    assert len(stored) == len(result.winners) >= 1
    for w in stored:
        model = automc.load_winner(out, w["trial"])
        assert isinstance(model, torch.nn.Module) and not model.training
        assert train.evaluate(model, splits.test)["acc"] == pytest.approx(w["test_acc"], abs=1e-9)
        assert train.evaluate(model, splits.val)["acc"] == pytest.approx(w["val_acc"], abs=1e-9)
        again = load_compressed(w["files"]["model"])
        x = splits.test[0][0].unsqueeze(0)
        with torch.inference_mode():
            assert torch.equal(model(x), again(x))


def test_every_winner_file_says_what_it_is(run):
    result, out = run
    for w in result.winners:
        wdir = out / "winners" / f"trial{w.trial}"
        payload = torch.load(wdir / "model.pt", weights_only=True)
        meta = payload["meta"]
        assert meta["automc_version"] == automc.__version__
        assert (meta["model"], meta["dataset"], meta["trial"]) == ("test_tiny", "synthetic", w.trial)
        assert payload["input_shape"] == meta["input_shape"] == [1, 3, 32, 32]
        assert payload["num_classes"] == meta["num_classes"] == 10
        assert meta["base_weights"].endswith(".pt")
        manifest = json.loads((wdir / "winner.json").read_text())
        assert manifest["schema"] == "automc/winner" and manifest["automc_version"] == automc.__version__
        assert manifest["figures"]["test_acc"] == w.figures["test_acc"]
        assert {"model", "plan", "winner", "onnx"} <= set(manifest["files"])
        plan = CompressionPlan.from_json((wdir / "plan.json").read_text())
        assert plan.model == "test_tiny" and plan.fingerprint and plan.to_dict() == w.plan.to_dict()
        props = {p.key: json.loads(p.value) for p in onnx.load(str(wdir / "model.onnx")).metadata_props}
        assert props["automc.model"] == "test_tiny" and props["automc.input_shape"] == [1, 3, 32, 32]
        assert props["automc.automc_version"] == automc.__version__


def test_the_recommended_winner_is_named_everywhere_and_loads_without_a_trial(run):
    result, out = run
    rec = result.recommendation
    ok = [w for w in result.winners if w.figures["meets_budget_measured"]]
    assert rec.trial == max(ok, key=lambda w: w.figures["val_acc"]).trial
    body = json.loads((out / "pareto.json").read_text())
    assert body["recommended"]["trial"] == rec.trial
    assert body["recommended"]["files"]["model"].endswith(f"trial{rec.trial}/model.pt")
    assert [r["trial"] for r in body["recommended"]["table"]][0] == rec.trial
    assert f"Ship trial {rec.trial}" in (out / "summary.md").read_text()
    assert f"automc.load_winner({str(out)!r}, {rec.trial})" in summary_table(result)
    html = (out / "index.html").read_text()
    assert "id='recommended'" in html and f"winners/trial{rec.trial}/model.pt" in html
    x = data.load("synthetic", seed=0).test[0][0].unsqueeze(0)
    with torch.inference_mode():
        assert torch.equal(automc.load_winner(out)(x), automc.load_winner(out, rec.trial)(x))


def test_measured_latencies_carry_their_spread(run):
    result, _ = run
    for fig in [result.base] + [w.figures for w in result.winners]:
        assert fig["latency_samples"] == 30
        assert 0 < fig["latency_ms_measured_min"] <= fig["latency_ms_measured_median"]
        assert fig["latency_ms_measured_iqr"] >= 0
        assert fig["latency_ms_measured"] == fig["latency_ms_measured_median"]  # no profile: the median


def test_loading_names_what_is_wrong(run, tmp_path):
    _, out = run
    with pytest.raises(automc.AutomcError, match=r"no winner trial 999 \(winners: trial"):
        automc.load_winner(out, 999)
    with pytest.raises(automc.AutomcError, match="no pareto.json"):
        automc.load_winner(tmp_path)


class Payload:
    """Any object torch.load would have to unpickle."""


def test_load_compressed_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "plan": "{}", "model": Payload()}, path)
    with pytest.raises(automc.AutomcError, match="pickled objects"):
        load_compressed(path)


def test_the_study_names_its_metrics_for_the_dashboard(run):
    import optuna

    result, _ = run
    assert optuna.load_study(study_name=result.study, storage=result.storage).metric_names == ["acc", "macs"]


def test_best_choice_takes_the_feasible_trials_best_in_the_first_objective() -> None:
    from automc.pipeline.winners import choose
    from automc.search.base import Objective
    from automc.search.storage import TrialRecord

    objectives = (Objective.named("acc"), Objective.named("macs"))
    rows = {
        0: TrialRecord(number=0, state="COMPLETE", values={"acc": 0.70, "macs": 10.0}),
        1: TrialRecord(number=1, state="COMPLETE", values={"acc": 0.90, "macs": 30.0}),
        2: TrialRecord(number=2, state="COMPLETE", values={"acc": 0.95, "macs": 40.0}, feasible=False),
        3: TrialRecord(number=3, state="COMPLETE", values={"acc": 0.85, "macs": 35.0}),  # dominated
        4: TrialRecord(number=4, state="PRUNED"),
        5: TrialRecord(number=5, state="COMPLETE", values={"acc": 0.60, "macs": 5.0}),
    }
    front = [0, 1, 5]
    assert choose(rows, front, objectives, 2, "best") == [1, 3]
    assert set(choose(rows, front, objectives, 2, "spread")) == {1, 5}
    assert choose(rows, front, objectives, 0, "best") == []


def test_an_unknown_winner_choice_is_one_clear_error() -> None:
    from automc.config import SearchConfig
    from automc.errors import AutomcError

    assert SearchConfig().with_overrides(finetune_choose="best").finetune.choose == "best"
    with pytest.raises(AutomcError, match="--finetune-choose: unknown winner choice 'top'"):
        SearchConfig().with_overrides(finetune_choose="top")


def test_a_winner_off_its_latency_prediction_is_flagged_with_the_reasons() -> None:
    from automc.pipeline.winners import latency_check

    close = latency_check({"latency_ms": 1.05, "latency_ms_measured": 1.0}, 0.5)
    assert close == {"latency_error": pytest.approx(0.05)}
    assert latency_check({"latency_ms": 1.0}, 0.5) == {}
    base = {"latency_ms": 1.3, "latency_ms_measured": 1.0, "latency_ms_measured_iqr": 0.05}
    form = latency_check(base, 0.5)["latency_check"]
    assert form.startswith("predicted +30% off the measurement") and "latency model's own error" in form
    slow = latency_check({**base, "base_latency_ms_runtime": 0.4}, 0.5)["latency_check"]
    assert "base model, timed in the same run, is +25% off too" in slow and "own error" not in slow
    opposite = latency_check({**base, "base_latency_ms_runtime": 0.6}, 0.5)["latency_check"]
    assert "base model" not in opposite
    noisy = latency_check({**base, "latency_ms_measured_iqr": 0.5}, None)["latency_check"]
    assert "noisy timing (IQR 50% of the latency)" in noisy
    rough = latency_check({**base, "latency_flags": {"conv1": "latency: outside the profile table"}}, None)
    assert "1 layers priced by the roofline" in rough["latency_check"]


def test_a_shipped_artifact_may_differ_by_half_a_point_or_one_test_sample(capsys):
    from automc.pipeline.winners import runtime_accuracy_check

    def check(runtime: float, pt: float, n: int) -> bool:
        return runtime_accuracy_check(7, {"test_acc_runtime": runtime, "test_acc": pt, "runtime": "ort"}, n)[
            "runtime_acc_ok"
        ]

    assert check(0.80, 0.804, 10_000) and not check(0.79, 0.80, 10_000)
    assert check(66 / 120, 67 / 120, 120) and not check(65 / 120, 67 / 120, 120)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("winner trial 7" in line and "not recommended" in line for line in err)
    assert runtime_accuracy_check(7, {"test_acc": 0.8}, 100) == {}
