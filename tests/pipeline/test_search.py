"""The whole pipeline on a tiny model and tiny data: search → front → fine-tuned winners → report."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import optuna
import pytest

import automc
from automc.cli import main
from automc.pareto import non_dominated
from automc.testing.search import TINY_SEARCH, TINY_SEARCH_ARGV

ARGS = {
    **TINY_SEARCH,
    "finetune_top": 2,
    "finetune_epochs": 1,
}


@pytest.fixture(scope="module")
def run(home, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return automc.search(trials=8, out=out, seed=0, **ARGS), out


def test_report_files_agree_with_storage(run):
    result, out = run
    for name in ("index.html", "pareto.png", "trials.csv", "pareto.json", "summary.md"):
        assert (out / name).is_file(), name
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    trials = study.get_trials()
    # 8 scored; over-budget candidates only priced (PRUNED) come on top
    assert len([t for t in trials if t.state.name == "COMPLETE"]) == 8
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [t.number for t in trials]
    feas = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs["feasible"]]
    front = sorted(feas[i].number for i in non_dominated([t.values for t in feas], ["maximize", "minimize"]))
    body = json.loads((out / "pareto.json").read_text())
    assert sorted(p["number"] for p in body["pareto"]) == front == sorted(result.pareto)
    for t in trials:  # infeasible candidates never paid for a proxy evaluation and carry no made-up values
        if not t.user_attrs["feasible"]:
            assert t.state.name == "PRUNED" and t.values is None
            assert not t.user_attrs.get("proxy")
            assert any(v > 0 for v in t.user_attrs["constraints"].values())
            assert t.constraints == t.user_attrs["constraints"]


def test_winners_are_feasible_front_points_with_files(run):
    result, out = run
    assert 1 <= len(result.winners) <= 2
    assert len({w.trial for w in result.winners}) == len(result.winners)
    for w in result.winners:
        assert w.trial in result.pareto
        assert w.figures["meets_budget_measured"] is True
        assert w.figures["latency_ms_measured"] > 0
        assert 0.0 <= w.figures["test_acc"] <= 1.0
        for path in w.files.values():
            assert (
                (out / "winners" / f"trial{w.trial}").exists() and path and __import__("os").path.isfile(path)
            )
    body = json.loads((out / "pareto.json").read_text())
    assert [w["trial"] for w in body["winners"]] == [w.trial for w in result.winners]


def test_report_rerenders_identically_from_storage(run, tmp_path):
    result, out = run
    assert main(["report", "--storage", result.storage, "--study", result.study, "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "pareto.json").read_text()) == json.loads((out / "pareto.json").read_text())


def test_resume_continues_to_the_total_and_keeps_trials(run, tmp_path):
    result, out = run
    before = {
        t.number: t.params for t in optuna.load_study(study_name=result.study, storage=result.storage).trials
    }
    again = automc.search(trials=10, out=out, seed=0, **{**ARGS, "finetune_top": 0})
    study = optuna.load_study(study_name=again.study, storage=again.storage)
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 10
    assert {n: t.params for n, t in ((t.number, t) for t in study.trials) if n in before} == before


def test_same_seed_same_trials(home, tmp_path):
    runs = []
    for name in ("a", "b"):
        r = automc.search(trials=4, out=tmp_path / name, seed=3, **{**ARGS, "finetune_top": 0})
        study = optuna.load_study(study_name=r.study, storage=r.storage)
        runs.append([(t.params, t.user_attrs.get("proxy")) for t in study.trials])
    assert runs[0] == runs[1]


def test_short_train_proxy_scores_the_search_and_is_part_of_the_resume_key(home, tmp_path):
    """``proxy="short_train"`` trains each feasible candidate a few steps before scoring it;
    the proxy is recorded in the study, and resuming with another proxy is refused."""
    args = {**ARGS, "finetune_top": 0}
    r = automc.search(trials=3, out=tmp_path, seed=0, proxy="short_train", proxy_steps=3, **args)
    study = optuna.load_study(study_name=r.study, storage=r.storage)
    assert study.user_attrs["automc"]["proxy"] == "short_train (3 steps, lr 0.005)"
    scored = [t.user_attrs["proxy"] for t in study.trials if t.user_attrs.get("proxy")]
    assert scored and all(set(p) == {"acc", "loss", "kl"} for p in scored)
    with pytest.raises(automc.AutomcError, match="proxy.name differs"):
        automc.search(trials=4, out=tmp_path, seed=0, proxy="adaptive_bn", **args)


def test_winners_priced_off_the_profile_table_are_marked(home, tmp_path):
    """A profile measured only at full width prices every pruned layer by the roofline: the
    winners record which layers (``latency_flags``) and the summary marks their prediction."""
    from automc.pipeline import summary_table
    from automc.schema.hw_profile import dump_hw_profile
    from automc.testing.profiles import full_width_profile

    prof = full_width_profile("full-width-only")
    path = dump_hw_profile(prof, tmp_path / "full-width-only.yaml")
    args = {**ARGS, "profile": str(path), "finetune_top": 1, "budgets": ["flops=0.6"]}
    r = automc.search(trials=6, out=tmp_path / "run", seed=0, proxy="adaptive_bn", **args)
    assert r.winners
    flags = r.winners[0].figures["latency_flags"]
    assert any("roofline" in v for v in flags.values()) and "(network)" not in flags
    assert "* latency predicted partly off the profile's table" in summary_table(r)
    assert "(roofline for" in (tmp_path / "run" / "summary.md").read_text()
    assert not r.base["latency_flags"]  # the unpruned base is on the table

    other = {**args, "model": "test_residual"}
    r = automc.search(trials=4, out=tmp_path / "other", seed=0, proxy="adaptive_bn", **other)
    assert "(network)" in r.base["latency_flags"] and "(network)" in r.winners[0].figures["latency_flags"]
    summary = summary_table(r)
    assert "without a profile of this network" in summary
    assert "automc profile --model test_residual" in summary
    assert "network not in the profile" in (tmp_path / "other" / "summary.md").read_text()


def test_search_refuses_a_model_computing_outside_conv_linear_before_training(
    home, tmp_path, capsys, monkeypatch, request
):
    """Attention's MACs are not in the layer table, so budgets could not hold: the search
    stops with one line before it spends time training the base model."""
    from automc import models, train
    from automc.testing.models import AttentionNet

    def no_training(*args, **kwargs):
        raise AssertionError("the base model was trained before the refusal")

    models.REGISTRY.register("engine_attention", "attention test model")(AttentionNet)
    request.addfinalizer(lambda: models.REGISTRY.remove("engine_attention"))
    monkeypatch.setattr(train, "base_model", no_training)
    argv = ["search", "--model", "engine_attention", "--dataset", "synthetic", "--space", "prune"]
    code = main([*argv, "--budget", "flops=0.8", "--trials", "2", "--out", str(tmp_path / "run")])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and "attn: MultiheadAttention calls multi_head_attention_forward" in err
    assert not (tmp_path / "run").exists()


def test_a_base_model_near_chance_is_reported(home, tmp_path, capsys):
    """Untrained weights get one warning line before the search; the trained base gets none."""
    import torch

    from automc import data, models, train
    from automc.pipeline import warn_if_near_chance

    splits = data.load("synthetic")
    torch.manual_seed(0)
    untrained = models.create("test_tiny", num_classes=splits.num_classes).eval()
    weights = tmp_path / "untrained.pt"
    torch.save(untrained.state_dict(), weights)
    argv = ["search", "--model", "test_tiny", "--weights", str(weights), "--dataset", "synthetic"]
    argv += ["--space", "prune", "--budget", "flops=0.8", "--trials", "12", "--finetune-top", "0"]
    argv += ["--proxy", "adaptive_bn"]
    assert main([*argv, "--profile", "none", "--no-onnx", "--quiet", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "automc: warning: base model test_tiny reaches" in err and "near chance" in err
    # its pruned candidates score near chance too: the proxy's ranking is flagged after the search
    assert "automc: warning: the adaptive_bn proxy scores a median" in err and "--proxy short_train" in err

    trained, _ = train.base_model(
        "test_tiny", "synthetic", splits=splits, options=train.FitOptions(progress=False)
    )
    assert not warn_if_near_chance(trained, splits, "test_tiny")
    assert capsys.readouterr().err == ""


def _rows(accs):
    from automc.search.storage import TrialRecord

    return [
        TrialRecord(
            number=i,
            state="COMPLETE",
            values={},
            plan={},
            cost={},
            proxy={"acc": a},
            constraints={},
            feasible=True,
        )
        for i, a in enumerate(accs)
    ]


def test_a_proxy_scoring_near_chance_is_reported(capsys):
    """A median proxy accuracy below twice chance gets one warning with the fix for that proxy."""
    from automc.pipeline import warn_if_proxy_blind

    blind = _rows([0.09, 0.12, 0.15, 0.18, 0.19, 0.45, 0.6])
    assert warn_if_proxy_blind(blind, 10, "adaptive_bn")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "automc: warning: the adaptive_bn proxy scores a median 18.0%" in err
    assert "use --proxy short_train" in err
    assert warn_if_proxy_blind(blind, 10, "short_train (10 steps, lr 0.005)")
    assert "raise --proxy-steps" in capsys.readouterr().err
    assert not warn_if_proxy_blind(_rows([0.15, 0.22, 0.3, 0.5, 0.76]), 10, "adaptive_bn")
    assert not warn_if_proxy_blind(blind, 100, "adaptive_bn")  # 18% is far above chance among 100 classes
    assert not warn_if_proxy_blind(_rows([0.1, 0.1, 0.1, 0.1]), 10, "adaptive_bn")  # too few scored
    # over-budget candidates the proxy never scored do not count
    skipped = [replace(r, proxy={}) for r in _rows([0.0] * 6)]
    assert not warn_if_proxy_blind(skipped + _rows([0.5] * 5), 10, "adaptive_bn")
    assert capsys.readouterr().err == ""


def test_channel_block_aligns_every_trial_and_is_recorded(home, tmp_path):
    """``channel_block=4`` (no profile needed when set): every trial's pruned channel counts
    are fewer than a block or a multiple of it, and the study records the block."""
    from automc.plan import CompressionPlan, kept_channels

    r = automc.search(trials=8, out=tmp_path, seed=0, channel_block=4, **{**ARGS, "finetune_top": 0})
    channels = {"conv1": 8, "conv2": 16}
    counts = set()
    for t in r.trials:
        plan = CompressionPlan.from_dict(t.plan)
        for name, c in channels.items():
            n = kept_channels(c, plan.choice(name).keep_ratio)
            assert n < 4 or n % 4 == 0, (t.number, name, n)
            counts.add(n)
    assert len(counts) > 2
    meta = optuna.load_study(study_name=r.study, storage=r.storage).user_attrs["automc"]
    assert meta["channel_block"] == 4


def test_channel_block_follows_the_profile_only_where_latency_is_priced():
    from automc.cost import load_profile
    from automc.pipeline.setup import channel_block

    ort = load_profile("cpu-x86-2core-ort")
    assert channel_block(None, ort, {"latency_ms", "macs"}) == ort.runtime.channel_block > 1
    assert channel_block(None, ort, {"macs"}) == 1  # a MACs budget is not told the layout
    assert channel_block(None, None, {"latency_ms"}) == 1
    assert channel_block(0, ort, {"latency_ms"}) == 1
    assert channel_block(8, None, {"macs"}) == 8


def test_the_global_warm_start_ranks_the_base_models_channels(home, tmp_path):
    """``warm_start="uniform+global"`` on TPE: after the uniform plans, the global-threshold plan
    of the base model's own channel importance, within the budget (``Evaluator.channel_importance``)."""
    from automc import budget, resources
    from automc.compress.prune import group_importance
    from automc.pipeline.setup import prepare
    from automc.search.warm_start import global_values, uniform_values
    from automc.space import SearchSpace

    args = {**ARGS, "controller": "optuna-tpe", "finetune_top": 0, "budgets": ["flops=0.5"]}
    r = automc.search(trials=4, out=tmp_path, seed=0, warm_start="uniform+global", **args)
    setup = prepare(
        r.config,
        space=SearchSpace.load(resources.find_space(r.config.space)),
        budgets=budget.parse_budgets(list(r.config.budgets)),
    )
    importance = setup.evaluator(budget.parse_objectives(list(r.config.objectives))).channel_importance()
    assert importance == group_importance(setup.base, setup.example)
    assert all(abs(sum(v) / len(v) - 1.0) < 1e-5 for v in importance.values())
    uniform = uniform_values(setup.bound, setup.limits, setup.cost_fn)
    expected = uniform + [
        v for v in global_values(setup.bound, setup.limits, setup.cost_fn, importance) if v not in uniform
    ]
    study = optuna.load_study(study_name=r.study, storage=r.storage)
    assert len(expected) > len(uniform)
    assert [t.params for t in study.trials[: len(expected)]] == expected


def test_the_cli_takes_the_global_warm_start_and_refuses_a_bad_spec(home, tmp_path, capsys):
    argv = [
        *TINY_SEARCH_ARGV,
        "--budget",
        "flops=0.5",
        "--no-onnx",
        "--quiet",
        "--finetune-top",
        "0",
        "--trials",
        "3",
    ]
    assert main([*argv, "--warm-start", "global", "--out", str(tmp_path / "run")]) == 0
    meta = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert meta["meta"]["config"]["controller"]["warm_start"] == "global"
    capsys.readouterr()
    assert main([*argv, "--warm-start", "global+greedy", "--out", str(tmp_path / "bad")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("automc: error:")]
    assert len(errors) == 1 and "unknown warm start 'global+greedy'" in errors[0]
    assert not (tmp_path / "bad").exists()
