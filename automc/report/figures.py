"""The report's plotly figures of the search: accuracy against each cost, accuracy against
measured latency (torch-free).

Titles are written by the page as HTML headings above each figure, not inside the plot, and
legends sit below the axes, so plotly's toolbar (top right of the plot) never covers them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automc.budget import format_amount
from automc.report.data import COST_LABELS, ReportData, plan_summary
from automc.search.storage import TrialRecord

MEASURED = {"macs": "macs_measured", "latency_ms": "latency_ms_measured"}
"""Cost metrics measured on the fine-tuned winners -> the figure holding the measurement."""
RUG_Y = 0.03
"""Height (fraction of the plot) of the strip of over-budget candidates that were never scored."""


@dataclass(frozen=True)
class Panel:
    """One figure of the page: its element id, heading, note and plotly figure."""

    fid: str
    title: str
    note: str
    figure: Any


def primary(data: ReportData) -> str:
    """The maximised objective (the accuracy) the figures plot upwards."""
    return next((n for n, d in data.objectives if d == "maximize"), data.objectives[0][0])


def cost_axes(data: ReportData) -> list[str]:
    """Cost metrics to plot accuracy against: the minimised objectives, then MACs."""
    names = [n for n, d in data.objectives if d == "minimize"]
    if "macs" not in names:
        names.append("macs")
    return names


def _hover(t: TrialRecord) -> str:
    s = plan_summary(t.plan)
    vals = ", ".join(f"{html.escape(k)}={format_amount(k, v)}" for k, v in t.values.items())
    costs = ", ".join(
        f"{html.escape(k)}={format_amount(k, v)}" for k, v in t.cost.items() if k in COST_LABELS
    )
    return (
        f"trial {t.number}<br>{vals or 'not scored'}<br>{costs}<br>mean keep {s['mean_keep']:.2f} "
        f"(min {s['min_keep']:.2f}), w_bits {html.escape(str(s['w_bits']))}, low-rank layers "
        f"{s['low_rank_layers']}, criterion {html.escape(str(s['criterion']))}"
    )


def _layout(fig: Any, x_title: str, y_title: str) -> None:
    fig.update_layout(
        xaxis_title=x_title,
        yaxis_title=y_title,
        height=440,
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.18, "yanchor": "top"},
        yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
    )


def _cost_lines(fig: Any, data: ReportData, cost: str, *, base_line: bool = True) -> None:
    """The base model's cost (dashed, labelled at the top) and the budget (solid, labelled at the bottom)."""
    if base_line and data.base.get(cost) is not None:
        fig.add_vline(
            x=float(data.base[cost]),
            line_dash="dash",
            line_color="grey",
            annotation_text="base model",
            annotation_position="top left",
        )
    limit = (data.meta.get("limits") or {}).get(cost)
    if limit is not None:
        fig.add_vline(
            x=float(limit),
            line_color="#2ca02c",
            line_width=2,
            annotation_text=f"budget {format_amount(cost, float(limit))}",
            annotation_position="bottom right",
        )


def pareto_panels(data: ReportData, front: set[int], recommended: int | None) -> list[Panel]:
    """Accuracy against each cost axis: the search's candidates at their proxy accuracy and
    predicted cost, the fine-tuned winners at their test accuracy and measured cost."""
    import plotly.graph_objects as go

    acc = primary(data)
    n_obj = len(data.objectives)
    panels = []
    for i, cost in enumerate(cost_axes(data)):
        fig = go.Figure()
        scored = [t for t in data.trials if t.complete]
        groups = [
            (
                "feasible (proxy)",
                [t for t in scored if t.feasible and t.number not in front],
                "circle",
                "#8fa8c8",
                1.0,
            ),
            ("infeasible (proxy)", [t for t in scored if not t.feasible], "x", "#c0a0a0", 0.4),
            (
                "Pareto front (proxy)",
                sorted((t for t in scored if t.number in front), key=lambda t: t.metric(cost)),
                "circle",
                "#d62728",
                1.0,
            ),
        ]
        for label, rows, symbol, color, opacity in groups:
            if rows:
                fig.add_trace(
                    go.Scatter(
                        x=[t.metric(cost) for t in rows],
                        y=[t.metric(acc) for t in rows],
                        mode="lines+markers" if label.startswith("Pareto") else "markers",
                        name=label,
                        opacity=opacity,
                        marker={"symbol": symbol, "color": color, "size": 8},
                        text=[_hover(t) for t in rows],
                        hovertemplate="%{text}<extra></extra>",
                    )
                )
        unscored = [t for t in data.trials if t.priced and not t.complete and math.isfinite(t.metric(cost))]
        if unscored:
            fig.add_trace(
                go.Scatter(
                    x=[t.metric(cost) for t in unscored],
                    y=[RUG_Y] * len(unscored),
                    yaxis="y2",
                    mode="markers",
                    name="over budget, not scored",
                    opacity=0.5,
                    marker={"symbol": "line-ns-open", "color": "#888", "size": 12, "line": {"width": 2}},
                    text=[_hover(t) for t in unscored],
                    hovertemplate="%{text}<extra></extra>",
                )
            )
        _winner_traces(fig, data, cost, recommended)
        _cost_lines(fig, data, cost)
        label = COST_LABELS.get(cost, cost)
        _layout(fig, label, acc)
        projection = f" (a 2-D projection of the {n_obj}-objective front)" if n_obj > 2 else ""
        panels.append(
            Panel(
                fid=f"pareto-{i}",
                title=f"{acc} vs {label}{projection}",
                note="Candidates at their proxy accuracy and predicted cost; fine-tuned winners at their "
                "test accuracy and measured cost; over-budget candidates were priced, never scored.",
                figure=fig,
            )
        )
    return panels


def _winner_traces(fig: Any, data: ReportData, cost: str, recommended: int | None) -> None:
    import plotly.graph_objects as go

    key = MEASURED.get(cost, cost)
    for label, rows, color, size in (
        (
            "fine-tuned winners (test acc, measured cost)",
            [w for w in data.winners if w.get("trial") != recommended],
            "#ff9f1c",
            16,
        ),
        ("recommended", [w for w in data.winners if w.get("trial") == recommended], "#2ca02c", 20),
    ):
        rows = [w for w in rows if w.get(key) is not None and w.get("test_acc") is not None]
        if not rows:
            continue
        fig.add_trace(
            go.Scatter(
                x=[float(w[key]) for w in rows],
                y=[float(w["test_acc"]) for w in rows],
                mode="markers",
                name=label,
                marker={
                    "symbol": "star",
                    "color": color,
                    "size": size,
                    "line": {"color": "black", "width": 1},
                },
                text=[
                    f"trial {w.get('trial')} fine-tuned: val acc {format_amount('acc', w.get('val_acc'))}, "
                    f"test acc {format_amount('acc', w.get('test_acc'))}, {cost} {format_amount(cost, w.get(key))}"
                    + (" (measured)" if key != cost else " (predicted)")
                    for w in rows
                ],
                hovertemplate="%{text}<extra></extra>",
            )
        )


def latency_panel(data: ReportData, recommended: int | None) -> Panel | None:
    """Test accuracy against *measured* latency (bars: inter-quartile range of the samples)
    of the base model and the fine-tuned winners; ``None`` when nothing was timed."""
    import plotly.graph_objects as go

    entries: list[tuple[str, Mapping[str, Any]]] = [("base model", data.base)] if data.base else []
    entries += [(f"trial {w.get('trial')}", w) for w in data.winners]
    entries = [
        (n, e)
        for n, e in entries
        if e.get("latency_ms_measured") is not None and e.get("test_acc") is not None
    ]
    if not entries:
        return None
    fig = go.Figure(
        go.Scatter(
            x=[float(e["latency_ms_measured"]) for _, e in entries],
            y=[float(e["test_acc"]) for _, e in entries],
            error_x={
                "type": "data",
                "array": [float(e.get("latency_ms_measured_iqr") or 0.0) / 2 for _, e in entries],
                "visible": True,
            },
            mode="markers+text",
            text=[
                n + (" (recommended)" if e.get("trial") == recommended and n != "base model" else "")
                for n, e in entries
            ],
            textposition="top center",
            marker={"size": 11, "color": ["grey" if n == "base model" else "#ff9f1c" for n, _ in entries]},
            name="measured",
            hovertemplate="%{text}: %{x:.3f} ms, test acc %{y:.4f}<extra></extra>",
        )
    )
    _cost_lines(fig, data, "latency_ms", base_line=False)
    fig.update_layout(showlegend=False)
    _layout(fig, "measured latency (ms; bar: inter-quartile range)", "test acc after fine-tune")
    return Panel(
        fid="latency-measured",
        title="test accuracy vs measured latency on this machine",
        note="Timed with the profile's protocol (threads, warm-up, repeats, statistic); the bar is the "
        "spread (IQR) of the samples.",
        figure=fig,
    )
