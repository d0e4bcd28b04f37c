"""``automc report``: re-render a run's report from its Optuna storage."""

from __future__ import annotations

import argparse

HELP = "re-render the Pareto report of a finished (or running) search from its storage"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage", required=True, help="Optuna storage URL (sqlite:///run/study.db) or journal file"
    )
    p.add_argument("--study", help="study name (default: the storage's only study)")
    p.add_argument(
        "--out", required=True, help="folder for index.html, pareto.png, trials.csv, pareto.json, summary.md"
    )


def run(args: argparse.Namespace) -> int:
    from automc.report import ReportData, render
    from automc.report.data import existing_storage

    data = ReportData.from_storage(existing_storage(args.storage), args.study)
    paths = render(data, args.out)
    print(f"report: {paths['index.html']}")
    return 0
