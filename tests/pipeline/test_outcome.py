"""Empty or doubtful runs say so: nothing feasible, a profile far off this machine (torch-free)."""

from __future__ import annotations

import shlex
from pathlib import Path

import optuna

from automc.pipeline.outcome import (
    PROFILE_TOLERANCE,
    profile_fix,
    warn_if_nothing_feasible,
    warn_if_profile_off,
)
from automc.report import ReportData, render
from automc.search.storage import TrialRecord

LIMITS = {"macs": 10e6, "latency_ms": 3.0}


def over_budget(number: int, macs: float, latency_ms: float) -> TrialRecord:
    cost = {"macs": macs, "latency_ms": latency_ms}
    return TrialRecord(
        number=number,
        state="PRUNED",
        cost=cost,
        constraints={m: cost[m] / v - 1 for m, v in LIMITS.items()},
        feasible=False,
    )


def test_nothing_feasible_names_the_cheapest_candidate_against_the_budget_and_the_levers(capsys):
    trials = [over_budget(0, 40e6, 6.0), over_budget(1, 12e6, 2.5), over_budget(2, 11e6, 4.0)]
    assert warn_if_nothing_feasible(trials, LIMITS)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("automc: warning: no feasible candidate in 3 trials")
    # trial 1 is closest to the budget: its worst ratio is 1.2 (trial 2: 1.33)
    assert "the cheapest (trial 1) costs macs 12M > 10M, latency_ms 2.5ms <= 3ms" in err
    assert "loosen the budget" in err and "--trials" in err and "lower keep ratios" in err


def test_nothing_feasible_because_every_trial_failed_names_the_first_failure(capsys):
    failed = [
        TrialRecord(number=n, state="FAIL", failure=f"ProxyFailure: RuntimeError: shapes {n}\ntraceback")
        for n in (4, 5)
    ]
    assert warn_if_nothing_feasible(failed, LIMITS)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "2 of them failed (trial 4: ProxyFailure: RuntimeError: shapes 4)" in err
    assert "no candidate was priced" not in err


def test_a_feasible_candidate_silences_the_empty_run_warning(capsys):
    ok = TrialRecord(number=3, state="COMPLETE", values={"acc": 0.9}, cost={"macs": 5e6, "latency_ms": 1.0})
    assert not warn_if_nothing_feasible([over_budget(0, 40e6, 6.0), ok], LIMITS)
    assert capsys.readouterr().err == ""


def test_a_profile_off_by_more_than_the_tolerance_names_the_fix(capsys):
    base = {"latency_ms": 2.02, "latency_ms_measured": 1.12}
    assert warn_if_profile_off(base, fix="automc profile --model resnet20 --out my-device.yaml")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "automc: warning: the profile predicts the base model at 2.02ms"
    )
    assert "measured 1.12ms here (+80%)" in err
    assert err.rstrip().endswith(
        "re-profile on this one: automc profile --model resnet20 --out my-device.yaml"
    )


def test_the_fix_re_profiles_for_the_profiles_runtime_at_the_runs_input_and_parses():
    from automc.cli import build_parser
    from automc.cost import load_profile

    profile = load_profile("cpu-x86-2core-ort")
    fix = profile_fix("my_pkg.nets:Net", profile=profile, input_shape=(1, 1, 28, 28))
    command, then = fix.split(", then ")
    assert then == "--profile my-device.yaml"
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.runtime, args.device, args.threads) == ("onnxruntime", "cpu", 2)
    assert args.model == ["my_pkg.nets:Net"] and args.input == ["1x1x28x28"] and args.out == "my-device.yaml"
    script = profile_fix("__main__:Net", profile=profile, input_shape=(1, 3, 32, 32))
    assert "Net must first move from your script into an importable module" in script


def test_a_profile_within_the_tolerance_or_without_latency_is_quiet(capsys):
    close = {"latency_ms": 1.0, "latency_ms_measured": 1.0 / (1 + PROFILE_TOLERANCE * 0.9)}
    assert not warn_if_profile_off(close, fix="f")
    assert not warn_if_profile_off({"latency_ms_measured": 1.0}, fix="f")
    assert capsys.readouterr().err == ""


def test_the_report_shows_a_profile_banner_and_an_empty_run_banner(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr(
        "automc",
        {
            "model": "resnet20",
            "objectives": [["acc", "maximize"], ["macs", "minimize"]],
            "limits": {"macs": 1e6},
        },
    )
    study.set_user_attr(
        "base",
        {
            "latency_ms": 2.02,
            "latency_ms_measured": 1.12,
            "profile_error": 2.02 / 1.12 - 1,
            "profile_fix": "automc profile --model resnet20 --out cpu.yaml",
        },
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED,
            user_attrs={"cost": {"macs": 4e7}, "constraints": {"macs": 39.0}, "feasible": False, "plan": {}},
        )
    )
    text = render(ReportData.from_storage(url), tmp_path / "rep")["index.html"].read_text()
    assert (
        "class='banner'" in text
        and "Re-profile here: <code>automc profile --model resnet20 --out cpu.yaml" in text
    )
    assert "No candidate met the budget" in text
    assert "over budget, not scored" in text  # the unscored candidate is drawn as a strip, not at accuracy 0


def test_a_search_with_nothing_feasible_says_so_in_one_line(home, tmp_path, capsys):
    from automc.cli import main
    from automc.testing.search import TINY_SEARCH_ARGV

    # the frozen-stem variant of its space (the last --space given is the one used)
    argv = [*TINY_SEARCH_ARGV, "--space", str(Path(__file__).parent / "data" / "prune_frozen_stem.yaml")]
    # the space's smallest plan meets 55% of the base MACs, none of 20 random candidates (2 trials
    # asked for, PRICED_ONLY_PER_TRIAL times as many priced) does
    argv += [
        "--budget",
        "flops=0.55",
        "--trials",
        "2",
        "--controller",
        "random",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("automc: warning:")]
    assert len(warnings) == 1 and "no feasible candidate in 20 trials: the cheapest (trial" in warnings[0]
    assert "macs" in warnings[0] and "> 284k" in warnings[0] and "--trials" in warnings[0]
    assert "recommended: no winner was fine-tuned (no feasible candidate" in captured.out
    assert "No candidate met the budget" in (tmp_path / "run" / "index.html").read_text()
    assert "\r" not in captured.err and "\x1b[" not in captured.err  # no progress bar off a terminal
