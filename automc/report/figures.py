"""The report's plotly figures of the search: accuracy against each cost, accuracy against
measured latency (torch-free).

Titles are written by the page as HTML headings above each figure, not inside the plot, and
legends sit below the axes, so plotly's toolbar (top right of the plot) never covers them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from automc.budget import format_amount
from automc.report.data import COST_LABELS, ReportData, kendall_tau, plan_summary
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


def trace_groups(
    data: ReportData, front: Sequence[int] | set[int], cost: str
) -> list[tuple[str, list[TrialRecord], bool, str, float]]:
    """The scored candidates of both plots, grouped: ``(label, rows, cross marker, colour, opacity)``.

    Feasible, infeasible (faded) and the Pareto front sorted by ``cost``; the over-budget
    candidates that were never scored are drawn separately (no accuracy to plot them at).
    """
    scored = [t for t in data.trials if t.complete]
    return [
        (
            "feasible (proxy)",
            [t for t in scored if t.feasible and t.number not in front],
            False,
            "#8fa8c8",
            1.0,
        ),
        ("infeasible (proxy)", [t for t in scored if not t.feasible], True, "#c0a0a0", 0.4),
        (
            "Pareto front (proxy)",
            sorted((t for t in scored if t.number in front), key=lambda t: t.metric(cost)),
            False,
            "#d62728",
            1.0,
        ),
    ]


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
    """The base model's cost (dashed) and the budget (solid) as vertical lines named in the
    legend (legend entries cannot collide with the points or with each other, annotations can)."""
    import plotly.graph_objects as go

    lines = []
    if base_line and data.base.get(cost) is not None:
        value = float(data.base[cost])
        lines.append(
            (f"base model {format_amount(cost, value)}", value, {"dash": "dash", "color": "grey", "width": 1})
        )
    limit = (data.meta.get("limits") or {}).get(cost)
    if limit is not None:
        lines.append(
            (f"budget {format_amount(cost, float(limit))}", float(limit), {"color": "#2ca02c", "width": 2})
        )
    for name, x, line in lines:
        fig.add_trace(
            go.Scatter(x=[x, x], y=[0, 1], yaxis="y2", mode="lines", name=name, line=line, hoverinfo="name")
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
        for label, rows, is_x, color, opacity in trace_groups(data, front, cost):
            if rows:
                symbol = "x" if is_x else "circle"
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
            name="base model and fine-tuned winners (measured)",
            hovertemplate="%{text}: %{x:.3f} ms, test acc %{y:.4f}<extra></extra>",
        )
    )
    _cost_lines(fig, data, "latency_ms", base_line=False)
    _layout(fig, "measured latency (ms; bar: inter-quartile range)", "test acc after fine-tune")
    return Panel(
        fid="latency-measured",
        title="test accuracy vs measured latency on this machine",
        note="Timed with the profile's protocol (threads, warm-up, repeats, statistic); the bar is the "
        "spread (IQR) of the samples.",
        figure=fig,
    )


def layer_figures(data: ReportData, layer_order: Sequence[str]) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    figs = []
    for w in data.winners:
        layers = (w.get("plan") or {}).get("layers") or {}
        names = list(layer_order) or sorted(layers)
        keep = [float(layers.get(n, {}).get("keep_ratio", 1.0)) for n in names]
        wb = [int(layers.get(n, {}).get("w_bits", 32)) for n in names]
        ab = [int(layers.get(n, {}).get("a_bits", 32)) for n in names]
        ranks = [layers.get(n, {}).get("rank") for n in names]
        esc = [html.escape(n) for n in names]
        fig = go.Figure()
        fig.add_trace(go.Bar(x=esc, y=keep, name="keep ratio", yaxis="y"))
        for field, bits in (("w_bits", wb), ("a_bits", ab)):
            fig.add_trace(
                go.Bar(
                    x=esc,
                    y=[min(b, 16) / 16 for b in bits],
                    name=f"{field} / 16",
                    text=[str(b) for b in bits],
                    hovertemplate=f"%{{x}}: {field} %{{text}}<extra></extra>",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=esc,
                y=[1.0 if r is None else 0.5 for r in ranks],
                mode="markers",
                name="low rank (0.5 = factorised)",
                text=["none" if r is None else str(r) for r in ranks],
                hovertemplate="%{x}: rank %{text}<extra></extra>",
            )
        )
        fig.update_layout(
            barmode="group",
            height=360,
            legend={"x": 1.02, "y": 0.5, "yanchor": "middle"},
            margin={"l": 50, "r": 20, "t": 30, "b": 120},
            yaxis={"range": [0, 1.05]},
        )
        figs.append((f"trial {w.get('trial')}", fig))
    return figs


def energy_figure(data: ReportData) -> Any:
    import plotly.graph_objects as go

    entries = []
    if data.base:
        entries.append(("base model", data.base))
    entries += [(f"trial {w.get('trial')}", w) for w in data.winners]
    entries = [(n, e) for n, e in entries if e.get("energy_compute_mj") is not None]
    if not entries:
        return None
    fig = go.Figure()
    fig.add_trace(
        go.Bar(x=[n for n, _ in entries], y=[e["energy_compute_mj"] for _, e in entries], name="compute")
    )
    fig.add_trace(
        go.Bar(x=[n for n, _ in entries], y=[e["energy_memory_mj"] for _, e in entries], name="memory")
    )
    fig.update_layout(
        barmode="stack",
        legend={"x": 1.02, "y": 0.5, "yanchor": "middle"},
        height=340,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
    )
    return fig


def fidelity(data: ReportData) -> tuple[Any, Any, dict[str, Any]]:
    import plotly.graph_objects as go

    stats: dict[str, Any] = {}
    w = [x for x in data.winners if x.get("proxy_acc") is not None and x.get("test_acc") is not None]
    stats["proxy_kendall"] = kendall_tau([x["proxy_acc"] for x in w], [x["test_acc"] for x in w])
    stats["proxy_n"] = len(w)
    proxy_fig = go.Figure(
        go.Scatter(
            x=[x["proxy_acc"] for x in w],
            y=[x["test_acc"] for x in w],
            mode="markers+text",
            text=[f"trial {x.get('trial')}" for x in w],
            textposition="top center",
        )
    )
    proxy_fig.update_layout(
        xaxis_title="proxy acc",
        yaxis_title="test acc after fine-tune",
        height=340,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
    )
    raw = [
        (n, e.get("latency_ms"), e.get("latency_ms_measured"))
        for n, e in ([("base model", data.base)] if data.base else [])
        + [(f"trial {x.get('trial')}", x) for x in data.winners]
    ]
    pts: list[tuple[str, float, float]] = [
        (n, float(p), float(m)) for n, p, m in raw if p is not None and m is not None
    ]
    if pts:
        errs = [abs(p - m) / m for _, p, m in pts if m > 0]
        stats["latency_n"] = len(pts)
        stats["latency_within_10pct"] = sum(e <= 0.10 for e in errs) / len(errs) if errs else None
        stats["latency_mape"] = sum(errs) / len(errs) if errs else None
    lat_fig = go.Figure(
        go.Scatter(
            x=[m for _, _, m in pts],
            y=[p for _, p, _ in pts],
            mode="markers+text",
            text=[n for n, _, _ in pts],
            textposition="top center",
            name="models",
        )
    )
    if pts:
        hi = max(max(p, m) for _, p, m in pts) * 1.1
        lat_fig.add_trace(
            go.Scatter(
                x=[0, hi],
                y=[0, hi],
                mode="lines",
                name="predicted = measured",
                line={"dash": "dash", "color": "grey"},
            )
        )
    lat_fig.update_layout(
        xaxis_title="measured (ms)",
        yaxis_title="predicted (ms)",
        height=340,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
    )
    return proxy_fig, lat_fig, stats
