"""The recommendation: val accuracy of what ships, measured budgets, never test accuracy."""

from __future__ import annotations

from automc.report.data import recommend


def _winner(trial: int, **figures: object) -> dict:
    base = {
        "trial": trial,
        "meets_budget_measured": True,
        "val_acc": 0.9,
        "test_acc": 0.9,
        "latency_ms_measured": 1.0,
        "macs_measured": 1e6,
    }
    return {**base, **figures}


def test_the_runtime_val_accuracy_ranks_and_a_broken_artifact_is_never_chosen() -> None:
    winners = [
        _winner(
            1,
            val_acc=0.99,
            val_acc_runtime=0.40,
            test_acc_runtime=0.41,
            runtime="onnxruntime",
            runtime_acc_ok=False,
        ),
        _winner(
            2,
            val_acc=0.95,
            val_acc_runtime=0.97,
            test_acc_runtime=0.96,
            runtime="onnxruntime",
            runtime_acc_ok=True,
        ),
        _winner(3, val_acc=0.96, val_acc_runtime=0.93, runtime="onnxruntime", runtime_acc_ok=True),
    ]
    rec = recommend(winners)
    assert rec.trial == 2
    verdicts = {r["trial"]: r["verdict"] for r in rec.rows}
    assert "artifact loses accuracy" in verdicts[1]


def test_test_accuracy_never_decides_and_measured_budgets_do() -> None:
    winners = [
        _winner(1, val_acc=0.90, test_acc=0.99),
        _winner(2, val_acc=0.93, test_acc=0.80),
        _winner(3, val_acc=0.99, meets_budget_measured=False, measured_constraints={"macs": 0.1}),
    ]
    assert recommend(winners).trial == 2
