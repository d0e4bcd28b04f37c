"""scripts/bench_baselines.py: margins, bisection, refusal of a JSON of other settings, and a tiny end-to-end run."""

from __future__ import annotations

import json

import pytest

from automc.config import SearchConfig
from automc.errors import AutomcError


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_baselines")


def _rec(test: float, val: float, wall: float = 10.0) -> dict[str, float]:
    return {"test_acc": test, "val_acc": val, "wall_seconds": wall, "macs_fraction": 0.3}


def test_margins_pick_automc_on_val_and_baseline_on_test(bench) -> None:
    results = {}
    for s, (a, p, t1, t2) in enumerate(
        [(0.80, 0.90, 0.85, 0.70), (0.82, 0.88, 0.84, 0.72), (0.81, 0.92, 0.83, 0.71)]
    ):
        # automc-prune has the higher test accuracy but the lower val accuracy: it must not be picked
        results[f"automc-joint|flops=0.3|s{s}"] = _rec(a, 0.95, wall=100.0)
        results[f"automc-prune|flops=0.3|s{s}"] = _rec(p, 0.50)
        results[f"tp-l1-uniform|flops=0.3|s{s}"] = _rec(t1, 0.99, wall=20.0)
        results[f"tp-taylor|flops=0.3|s{s}"] = _rec(t2, 0.99)
    m = bench.margins_of(results, ["flops=0.3"])["flops=0.3"]
    assert m["automc_method"] == "automc-joint"
    assert m["best_baseline"] == "tp-l1-uniform"
    assert m["margin_points_per_seed"] == pytest.approx([-5.0, -2.0, -2.0])
    assert m["margin_points"] == pytest.approx(-2.0)
    assert m["target_met"] is False
    assert m["extra_wall_seconds"] == pytest.approx(80.0)
    summary = bench.summary_of(results, ["flops=0.3"])["flops=0.3"]
    assert summary["tp-taylor"]["test_acc"] == {"median": 0.71, "min": 0.70, "max": 0.72, "n": 3}


def test_margins_at_latency_compare_the_shipped_accuracy(bench) -> None:
    results = {
        "automc-joint|latency=0.5|s0": {
            "test_acc": 0.9,
            "test_acc_runtime": 0.6,
            "val_acc_runtime": 0.6,
            "wall_seconds": 1,
            "latency_fraction": 0.45,
        },
        "tp-l1-uniform-int8|latency=0.5|s0": {
            "test_acc": 0.5,
            "test_acc_runtime": 0.7,
            "wall_seconds": 1,
            "latency_fraction": 0.5,
        },
        "tp-l1-global-int8|latency=0.5|s0": {"test_acc": 0.9, "test_acc_runtime": 0.9, "wall_seconds": 1},
    }
    m = bench.margins_of(results, ["latency=0.5"])["latency=0.5"]
    assert m["accuracy"] == "test_acc_runtime"
    assert m["margin_points"] == pytest.approx(-10.0)
    # a baseline whose artifact was never timed has not shown that it meets the budget
    assert m["over_budget"] == {"tp-l1-global-int8|latency=0.5|s0": None}


def test_bisection_finds_the_smallest_ratio_meeting_the_target(bench) -> None:
    ratio, value = bench.bisect_ratio(lambda r: (1 - r) ** 2, 0.25, steps=12)
    assert value <= 0.25
    assert ratio == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(AutomcError, match="ratio 0.9"):
        bench.bisect_ratio(lambda r: 1.0, 0.5, steps=3)


def test_scan_finds_the_smallest_ratio_where_latency_is_not_monotone(bench) -> None:
    """Latency on a blocked layout: ratios in (0.4, 0.5) leave convs off the layout and run
    slower than the base. Bisection from 0.9 halves into that bump and overshoots; the scan
    finds the first ratio that meets the budget, then refines below it."""

    def latency(r: float) -> float:
        return 1.3 if 0.4 < r < 0.5 else 1.0 - 2 * r

    target = 0.45
    bisected, _ = bench.bisect_ratio(latency, target, steps=5)
    ratio, value = bench.scan_ratio(latency, target, points=18, steps=3)
    assert value <= target and ratio == pytest.approx(0.275, abs=0.05 / 8)
    assert bisected >= 0.5
    step, _ = bench.scan_ratio(latency, target, points=18)
    assert step == pytest.approx(0.3)
    with pytest.raises(AutomcError, match="at best -0.800"):
        bench.scan_ratio(latency, -1.0, points=18)


def test_a_json_of_other_settings_is_refused_in_one_line(bench, tmp_path, capsys) -> None:
    out = tmp_path / "b.json"
    out.write_text(
        json.dumps({"schema": bench.SCHEMA, "settings": {"trials": 99}, "results": {}, "runs": []})
    )
    assert bench.main(["--out", str(out), "--trials", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "trials 99 -> 3" in err[0]


def test_a_rerun_with_other_search_settings_keeps_the_torch_pruning_results(bench, tmp_path) -> None:
    settings = bench.settings_of(bench.parse_args([]))
    assert settings["space_criteria"] == bench.space_criteria()
    out = tmp_path / "b.json"
    results = {
        "tp-l1-uniform|flops=0.3|s0": {"test_acc": 0.7},
        "automc-prune|flops=0.3|s0": {"test_acc": 0.6},
    }
    old = {**settings, "trials": 99, "space_criteria": {"joint": "l1", "prune": "l1"}}
    out.write_text(json.dumps({"schema": bench.SCHEMA, "settings": old, "results": results, "runs": []}))
    report = bench.load_report(out, settings)
    assert list(report["results"]) == ["tp-l1-uniform|flops=0.3|s0"] and report["settings"] == settings
    assert report["reruns"][0]["search_settings_changed"]["trials"] == [99, settings["trials"]]
    out.write_text(
        json.dumps({"schema": bench.SCHEMA, "settings": {**old, "seeds_x": 1}, "results": results})
    )
    with pytest.raises(AutomcError, match="other settings"):
        bench.load_report(out, {**settings, "train_subset": 5})


def test_another_proxy_reruns_only_the_searches_and_the_default_matches_older_jsons(bench, tmp_path) -> None:
    default = bench.settings_of(bench.parse_args([]))
    other = bench.settings_of(bench.parse_args(["--proxy", "adaptive_bn"]))
    assert default["proxy"] is None and other["proxy"] == "adaptive_bn"
    out = tmp_path / "b.json"
    results = {
        "tp-l1-uniform|flops=0.3|s0": {"test_acc": 0.7},
        "automc-prune|flops=0.3|s0": {"test_acc": 0.6},
    }
    older = {k: v for k, v in default.items() if k != "proxy"}  # written before --proxy existed
    out.write_text(json.dumps({"schema": bench.SCHEMA, "settings": older, "results": results, "runs": []}))
    assert bench.load_report(out, default)["results"] == results
    report = bench.load_report(out, other)
    assert list(report["results"]) == ["tp-l1-uniform|flops=0.3|s0"]
    assert report["reruns"][0]["search_settings_changed"] == {"proxy": [None, "adaptive_bn"]}


def test_a_json_from_before_the_proxy_lr_setting_reruns_the_searches(bench, tmp_path) -> None:
    """Such a JSON's searches ran the short_train proxy at the learning rate of its day (0.01),
    not the search's default now, so only its Torch-Pruning results are kept."""
    default = bench.settings_of(bench.parse_args([]))
    assert default["proxy_lr"] == SearchConfig().proxy.lr
    assert bench.settings_of(bench.parse_args(["--proxy-lr", "0.02"]))["proxy_lr"] == 0.02
    out = tmp_path / "b.json"
    results = {
        "tp-l1-global|flops=0.15|s1": {"test_acc": 0.7},
        "automc-joint|flops=0.15|s1": {"test_acc": 0.6},
    }
    older = {k: v for k, v in default.items() if k != "proxy_lr"}
    out.write_text(json.dumps({"schema": bench.SCHEMA, "settings": older, "results": results, "runs": []}))
    report = bench.load_report(out, default)
    assert list(report["results"]) == ["tp-l1-global|flops=0.15|s1"]
    assert report["reruns"][0]["search_settings_changed"] == {"proxy_lr": [None, SearchConfig().proxy.lr]}


def test_budgets_are_no_setting_a_rerun_adds_one(bench, tmp_path) -> None:
    settings = bench.settings_of(bench.parse_args([]))
    assert "budgets" not in settings
    out = tmp_path / "b.json"
    results = {"tp-l1-uniform|flops=0.3|s0": _rec(0.7, 0.7)}
    legacy = {**settings, "budgets": "flops=0.3,flops=0.15"}
    out.write_text(json.dumps({"schema": bench.SCHEMA, "settings": legacy, "results": results, "runs": []}))
    report = bench.load_report(out, settings)
    assert report["results"] == results and report["settings"] == settings
    assert report["budgets"] == ["flops=0.3", "flops=0.15"]


def test_results_from_another_base_model_are_refused(bench) -> None:
    report = {"results": {"tp-l1-uniform|flops=0.3|s0": _rec(0.7, 0.7)}}
    base = {"test_acc": 0.81, "val_acc": 0.84, "weights_digest": "aa"}
    bench.check_same_base({**report, "base": base}, base)
    # a JSON written before the digest was recorded: told apart by the base's accuracies
    bench.check_same_base({**report, "base": {"test_acc": 0.81, "val_acc": 0.84}}, base)
    with pytest.raises(AutomcError, match="base model differs"):
        bench.check_same_base({**report, "base": {"test_acc": 0.813, "val_acc": 0.843}}, base)
    with pytest.raises(AutomcError, match="base model differs"):
        bench.check_same_base({**report, "base": {**base, "weights_digest": "bb"}}, base)
    bench.check_same_base({"results": {}, "base": {**base, "weights_digest": "bb"}}, base)


def test_unknown_method_is_refused(bench, tmp_path, capsys) -> None:
    assert bench.main(["--out", str(tmp_path / "b.json"), "--methods", "tp-nope"]) == 2
    assert "unknown --methods" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_run_end_to_end_writes_margins_and_resumes(bench, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path / "home"))
    out = tmp_path / "baselines.json"
    argv = [
        "--dataset", "digits", "--train-subset", "256", "--base-epochs", "1", "--seeds", "1",
        "--trials", "3", "--finetune-epochs", "1", "--budgets", "flops=0.3,latency=0.5",
        "--methods", "automc-joint,tp-l1-uniform,tp-l1-uniform-int8", "--threads", "1", "--out", str(out), "--work", str(tmp_path / "runs"),
    ]  # fmt: skip
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {
        "automc-joint|flops=0.3|s0",
        "tp-l1-uniform|flops=0.3|s0",
        "automc-joint|latency=0.5|s0",
        "tp-l1-uniform|latency=0.5|s0",
        "tp-l1-uniform-int8|latency=0.5|s0",
    }
    ours = report["results"]["automc-joint|flops=0.3|s0"]
    assert ours["macs_fraction"] <= 0.3 and 0 <= ours["test_acc"] <= 1 and ours["wall_seconds"] > 0
    # a budget the space cannot meet is recorded as automc's one-line refusal, not dropped
    at_latency = report["results"]["automc-joint|latency=0.5|s0"]
    assert "test_acc_runtime" in at_latency or "cannot be met" in at_latency["error"]
    tp = report["results"]["tp-l1-uniform|flops=0.3|s0"]
    assert tp["macs_fraction"] <= 0.3 and tp["macs"] < report["base"]["macs"]
    assert 0 <= tp["test_acc"] <= 1 and tp["latency_ms"] > 0
    int8 = report["results"]["tp-l1-uniform-int8|latency=0.5|s0"]
    # timed on a shared machine: even the thinnest int8 model may measure above half the base latency
    assert (
        "reaches" in int8["error"] if "error" in int8 else int8["int8"] is True and int8["int8_speedup"] > 0
    )
    assert set(report["margins"]) == {"flops=0.3", "latency=0.5"}
    if "error" in at_latency:
        assert report["margins"]["latency=0.5"]["automc_errors"] == {"automc-joint": at_latency["error"]}
    assert report["margins"]["flops=0.3"]["best_baseline"] == "tp-l1-uniform"
    assert report["missing"] == []
    assert report["runs"][0]["command"].startswith("python scripts/bench_baselines.py --dataset digits")
    assert bench.main(argv) == 0
    again = json.loads(out.read_text())
    assert again["runs"][-1]["computed"] == 0
    assert again["results"] == report["results"]


def test_margins_name_automc_refusal_when_it_has_no_result(bench) -> None:
    results = {
        "automc-joint|latency=0.5|s0": {"error": "budget latency_ms=0.3ms cannot be met", "wall_seconds": 1},
        "tp-l1-uniform|latency=0.5|s0": {"test_acc_runtime": 0.7, "wall_seconds": 1, "latency_fraction": 0.4},
    }
    m = bench.margins_of(results, ["latency=0.5"])["latency=0.5"]
    assert m["margin_points"] is None
    assert m["automc_errors"] == {"automc-joint": "budget latency_ms=0.3ms cannot be met"}


def test_the_aligned_torch_pruning_baseline_keeps_multiples_of_the_runtime_block(bench) -> None:
    from types import SimpleNamespace

    import torch
    from torch import nn

    from automc import models

    ctx = SimpleNamespace(
        base=models.create("resnet20").eval(),
        example=torch.zeros(1, 3, 32, 32),
        runtime=SimpleNamespace(channel_block=16),
    )
    assert bench.ALIGNED_TP in bench.methods_for("latency=0.5", [])
    assert bench.ALIGNED_TP not in bench.methods_for("flops=0.3", [])

    def widths(method: str) -> set[int]:
        model = bench.tp_prune(ctx, method, 0.3, seed=0)
        return {m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)}

    assert all(w % 16 == 0 for w in widths(bench.ALIGNED_TP))
    assert any(w % 16 for w in widths("tp-l1-uniform"))


def test_margins_count_only_results_that_meet_the_budget_as_measured(bench) -> None:
    """A baseline timed at 76% of the base's latency is no answer to a 50% budget: its seed is left
    out of the margin (for automc and the baselines alike) and named in ``over_budget``."""

    def rec(test: float, fraction: float) -> dict[str, float]:
        return {
            "test_acc_runtime": test,
            "val_acc_runtime": test,
            "wall_seconds": 1,
            "latency_fraction": fraction,
        }

    results = {}
    for s, (ours, fast, slow) in enumerate([(0.70, 0.72, 0.80), (0.71, 0.70, 0.81), (0.69, 0.71, 0.82)]):
        results[f"automc-prune|latency=0.5|s{s}"] = rec(ours, 0.45)
        results[f"tp-l1-uniform-int8|latency=0.5|s{s}"] = rec(fast, 0.49 if s else 0.52)
        results[f"tp-taylor-int8|latency=0.5|s{s}"] = rec(slow, 0.76)
    m = bench.margins_of(results, ["latency=0.5"])["latency=0.5"]
    assert m["best_baseline"] == "tp-l1-uniform-int8"
    assert m["seeds"] == [1, 2]
    assert m["margin_points_per_seed"] == pytest.approx([1.0, -2.0])
    assert m["over_budget"] == {
        "tp-l1-uniform-int8|latency=0.5|s0": 0.52,
        **{f"tp-taylor-int8|latency=0.5|s{s}": 0.76 for s in range(3)},
    }
    assert m["paired"] is True
    # no seed with both in budget: the difference of their medians, said to be unpaired
    apart = dict(results)
    apart["automc-prune|latency=0.5|s0"] = rec(0.75, 0.51)
    for s in (1, 2):
        apart[f"tp-l1-uniform-int8|latency=0.5|s{s}"] = rec(0.70, 0.6)
    apart["tp-l1-uniform-int8|latency=0.5|s0"] = rec(0.72, 0.49)
    unpaired = bench.margins_of(apart, ["latency=0.5"])["latency=0.5"]
    assert (unpaired["seeds"], unpaired["paired"]) == ([], False)
    assert unpaired["margin_points"] == pytest.approx(-2.0)
    assert unpaired["target_met"] is False and unpaired["extra_wall_seconds"] == 0
    none_met = {k: v for k, v in results.items() if "tp-taylor" in k or "automc" in k}
    assert bench.margins_of(none_met, ["latency=0.5"])["latency=0.5"] == {
        "best_baseline": None,
        "automc_errors": {},
        "margin_points": None,
        "over_budget": {f"tp-taylor-int8|latency=0.5|s{s}": 0.76 for s in range(3)},
    }
    summary = bench.summary_of(results, ["latency=0.5"])["latency=0.5"]
    assert summary["tp-l1-uniform-int8"]["meets_budget_measured"] == 2
    assert summary["tp-taylor-int8"]["meets_budget_measured"] == 0
