"""Render a ``ReportData`` into ``index.html``, ``pareto.png``, ``trials.csv``,
``pareto.json`` and ``summary.md``.

The page is :mod:`automc.report.page`, its figures :mod:`automc.report.figures`, its
tables :mod:`automc.report.tables`; the other files are written here.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automc.budget import format_amount
from automc.cost.latency import PRECISION_FLAG_KEY
from automc.errors import AutomcError
from automc.report.data import COST_LABELS, ReportData, recommend
from automc.report.figures import MEASURED, RUG_Y, cost_axes, primary, trace_groups
from automc.report.page import page
from automc.report.tables import budget_text, recommendation_rows, trial_counts, winner_rows

FILES = ("index.html", "pareto.png", "trials.csv", "pareto.json", "summary.md")


def render(data: ReportData, out_dir: str | Path) -> dict[str, Path]:
    """Write every report file into ``out_dir``; returns name -> path.

    Atomic: each file is first written as ``.partial-<pid>-<name>`` next to its place and
    all of them are renamed over the old report only when every one was written, so a full
    disk or a crash leaves the previous report whole (and two processes rendering into one
    folder never rename each other's files).

    Raises:
        AutomcError: a file cannot be written (full disk, read-only folder); the previous
            report is left as it was.
    """
    out = Path(out_dir)
    paths = {name: out / name for name in FILES}
    partial = {name: out / f".partial-{os.getpid()}-{name}" for name in FILES}
    try:
        out.mkdir(parents=True, exist_ok=True)
        front = set(data.pareto_numbers())
        _write_csv(data, front, partial["trials.csv"])
        _write_pareto_json(data, front, partial["pareto.json"])
        _write_png(data, front, partial["pareto.png"])
        _write_summary(data, front, partial["summary.md"])
        partial["index.html"].write_text(page(data, front, out), encoding="utf-8")
        for name in FILES:
            os.replace(partial[name], paths[name])
    except OSError as e:
        for path in partial.values():
            path.unlink(missing_ok=True)
        raise AutomcError(
            f"cannot write the report into {out}: {e.strerror or e}; the previous report is unchanged"
        ) from None
    return paths


def _write_csv(data: ReportData, front: set[int], path: Path) -> None:
    cost_keys = sorted({k for t in data.trials for k in t.cost})
    proxy_keys = sorted({k for t in data.trials for k in t.proxy})
    cons_keys = sorted({k for t in data.trials for k in t.constraints})
    header = (
        ["number", "state", "feasible", "pareto"]
        + [f"value_{n}" for n, _ in data.objectives]
        + [f"cost_{k}" for k in cost_keys]
        + [f"proxy_{k}" for k in proxy_keys]
        + [f"constraint_{k}" for k in cons_keys]
        + ["failure", "plan"]
    )
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for t in data.trials:
            w.writerow(
                [t.number, t.state, int(t.feasible), int(t.number in front)]
                + [t.values.get(n, "") for n, _ in data.objectives]
                + [t.cost.get(k, "") for k in cost_keys]
                + [t.proxy.get(k, "") for k in proxy_keys]
                + [t.constraints.get(k, "") for k in cons_keys]
                + [t.failure, json.dumps(t.plan, sort_keys=True)]
            )


def _write_pareto_json(data: ReportData, front: set[int], path: Path) -> None:
    points = [
        {
            "number": t.number,
            "values": dict(t.values),
            "cost": dict(t.cost),
            "proxy": dict(t.proxy),
            "constraints": dict(t.constraints),
            "plan": t.plan,
        }
        for t in data.trials
        if t.number in front
    ]
    body = {
        "study": data.study_name,
        "objectives": [{"name": n, "direction": d} for n, d in data.objectives],
        "meta": dict(data.meta),
        "base": dict(data.base),
        "pareto": points,
        "winners": [_winner_json(w) for w in data.winners],
        "recommended": _recommended_json(data),
    }
    path.write_text(json.dumps(body, indent=2, sort_keys=True, default=str), encoding="utf-8")


def _winner_json(winner: Mapping[str, Any]) -> dict[str, Any]:
    """A winner's figures, with ``simulated`` (``sub-8-bit simulated: size/energy only on this
    runtime``) when its plan has bits the profile's runtime does not execute."""
    out = dict(winner)
    note = (winner.get("latency_flags") or {}).get(PRECISION_FLAG_KEY)
    if note:
        out["simulated"] = str(note).removeprefix("latency: ")
    return out


def _recommended_json(data: ReportData) -> dict[str, Any]:
    """The recommendation with the recommended winner's files (``trial`` ``None`` when there is none)."""
    rec = recommend(data.winners)
    files = next((w.get("files") or {} for w in data.winners if w.get("trial") == rec.trial), {})
    return {**rec.to_dict(), "files": dict(files)}


def _write_png(data: ReportData, front: set[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    acc = primary(data)
    axes_names = cost_axes(data)
    fig, axes = plt.subplots(1, len(axes_names), figsize=(5.2 * len(axes_names), 4.6), squeeze=False)
    rec = recommend(data.winners).trial
    for ax, cost in zip(axes[0], axes_names):
        for label, rows, is_x, color, alpha in trace_groups(data, front, cost):
            if rows:
                marker = "x" if is_x else "o"
                xs, ys = [t.metric(cost) for t in rows], [t.metric(acc) for t in rows]
                ax.scatter(xs, ys, s=18, marker=marker, color=color, alpha=alpha, label=label)
                if label.startswith("Pareto"):
                    ax.plot(xs, ys, color=color, lw=1)
        unscored = [t.metric(cost) for t in data.trials if t.priced and not t.complete]
        if unscored:
            rug = blended_transform_factory(ax.transData, ax.transAxes)
            ax.scatter(
                unscored,
                [RUG_Y] * len(unscored),
                marker="|",
                s=80,
                color="#888",
                alpha=0.6,
                transform=rug,
                label="over budget, not scored",
            )
        key = MEASURED.get(cost, cost)
        won = [w for w in data.winners if w.get(key) is not None and w.get("test_acc") is not None]
        if won:
            ax.scatter(
                [float(w[key]) for w in won],
                [float(w["test_acc"]) for w in won],
                s=140,
                marker="*",
                color=["#2ca02c" if w.get("trial") == rec else "#ff9f1c" for w in won],
                edgecolor="k",
                label="fine-tuned winners (test acc, measured cost)",
                zorder=3,
            )
        if data.base.get(cost) is not None:
            ax.axvline(float(data.base[cost]), color="grey", ls="--", lw=0.8, label="base model")
        limit = (data.meta.get("limits") or {}).get(cost)
        if limit is not None:
            ax.axvline(
                float(limit), color="#2ca02c", lw=1.5, label=f"budget {format_amount(cost, float(limit))}"
            )
        ax.set_xlabel(COST_LABELS.get(cost, cost))
        ax.set_ylabel(acc)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=4)
    fig.suptitle(f"{data.meta.get('model', '')} on {data.meta.get('dataset', '')}: study {data.study_name}")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _md(value: Any) -> str:
    """``value`` as inert Markdown text on one line: ``\\``, ``|``, backticks, ``*``, ``_``,
    ``[``, ``]`` and ``#`` escaped, ``<``/``>``/``&`` as entities, line breaks as spaces (a
    study or model name cannot break a table, open a code span, a link or raw HTML)."""
    text = " ".join(str(value).splitlines())
    for char in "\\`|*_[]#":
        text = text.replace(char, "\\" + char)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(rows: list[list[tuple[str, str]]]) -> list[str]:
    return [
        "| " + " | ".join(_md(h) for h, _ in rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *["| " + " | ".join(_md(v) for _, v in r) + " |" for r in rows],
        "",
    ]


def _write_summary(data: ReportData, front: set[int], path: Path) -> None:
    rec = recommend(data.winners)
    files = next((w.get("files") or {} for w in data.winners if w.get("trial") == rec.trial), {})
    lines = [
        f"# automc report: {_md(data.study_name)}",
        "",
        f"- model: {_md(data.meta.get('model', ''))}, dataset: {_md(data.meta.get('dataset', ''))}",
        f"- controller: {_md(data.meta.get('controller', ''))}, seed: {_md(data.meta.get('seed', ''))}",
        f"- budgets: {budget_text(data)}",
        f"- {trial_counts(data, front)}",
        "",
        "## Recommendation",
        "",
        f"{'Ship ' if rec.trial is not None else ''}{rec.reason}.",
        "",
    ]
    if files:
        lines += [f"- {_md(k)}: {_md(v)}" for k, v in files.items()] + [""]
    rows = recommendation_rows(data)
    if rows:
        lines += _md_table(rows)
    winners = winner_rows(data)
    if winners:
        lines += ["## Winners (fine-tuned)", "", *_md_table(winners)]
    path.write_text("\n".join(lines), encoding="utf-8")
