"""Render a ``ReportData`` into ``index.html``, ``pareto.png``, ``trials.csv``,
``pareto.json`` and ``summary.md``.

``index.html`` is one self-contained file (plotly.js inlined, no network request). Every
user-provided string (study, model, dataset and layer names, failure reasons) is
escaped: HTML text through ``html.escape``, figure data as JSON with ``<``, ``>`` and
``&`` written as unicode escapes so nothing can close the ``<script>`` element.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automc.cost.latency import NETWORK_FLAG_KEY
from automc.report.data import COST_LABELS, ReportData, kendall_tau, plan_summary
from automc.search.storage import TrialRecord

FILES = ("index.html", "pareto.png", "trials.csv", "pareto.json", "summary.md")


def render(data: ReportData, out_dir: str | Path) -> dict[str, Path]:
    """Write every report file into ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    front = set(data.pareto_numbers())
    paths = {name: out / name for name in FILES}
    _write_csv(data, front, paths["trials.csv"])
    _write_pareto_json(data, front, paths["pareto.json"])
    _write_png(data, front, paths["pareto.png"])
    _write_summary(data, front, paths["summary.md"])
    paths["index.html"].write_text(_html(data, front), encoding="utf-8")
    return paths


def _cost_axes(data: ReportData) -> list[str]:
    """Cost metrics to plot accuracy against: the minimised objectives, then MACs."""
    names = [n for n, d in data.objectives if d == "minimize"]
    if "macs" not in names:
        names.append("macs")
    return names


def _primary(data: ReportData) -> str:
    return next((n for n, d in data.objectives if d == "maximize"), data.objectives[0][0])


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if abs(v) >= 1e6:
            return f"{v / 1e6:.3f}M"
        return f"{v:.{digits}g}"
    return str(v)


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
        "winners": [dict(w) for w in data.winners],
    }
    path.write_text(json.dumps(body, indent=2, sort_keys=True, default=str), encoding="utf-8")


def _write_png(data: ReportData, front: set[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = _primary(data)
    axes_names = _cost_axes(data)
    fig, axes = plt.subplots(1, len(axes_names), figsize=(5.2 * len(axes_names), 4.2), squeeze=False)
    winners = {int(w.get("trial", -1)) for w in data.winners}
    for ax, cost in zip(axes[0], axes_names):
        groups = {
            "infeasible": [t for t in data.trials if t.priced and not t.feasible],
            "feasible": [t for t in data.trials if t.complete and t.feasible and t.number not in front],
            "Pareto front": sorted(
                (t for t in data.trials if t.number in front), key=lambda t: t.metric(cost)
            ),
        }
        style = {
            "infeasible": ("x", "#e0a0a0"),
            "feasible": ("o", "#8fa8c8"),
            "Pareto front": ("o", "#d62728"),
        }
        for label, rows in groups.items():
            if rows:
                marker, color = style[label]
                ax.scatter(
                    [t.metric(cost) for t in rows],
                    [t.metric(acc) for t in rows],
                    s=18,
                    marker=marker,
                    color=color,
                    label=label,
                    zorder=2 if label == "Pareto front" else 1,
                )
        pf = groups["Pareto front"]
        if pf:
            ax.plot([t.metric(cost) for t in pf], [t.metric(acc) for t in pf], color="#d62728", lw=1)
        win_rows = [t for t in data.trials if t.number in winners]
        if win_rows:
            ax.scatter(
                [t.metric(cost) for t in win_rows],
                [t.metric(acc) for t in win_rows],
                s=120,
                marker="*",
                color="#ff9f1c",
                edgecolor="k",
                label="fine-tuned winners",
                zorder=3,
            )
        if data.base.get(cost) is not None:
            ax.axvline(float(data.base[cost]), color="grey", ls="--", lw=0.8, label="base model")
        ax.set_xlabel(COST_LABELS.get(cost, cost))
        ax.set_ylabel(f"proxy {acc}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{data.meta.get('model', '')} on {data.meta.get('dataset', '')}: study {data.study_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write_summary(data: ReportData, front: set[int], path: Path) -> None:
    done = [t for t in data.trials if t.complete]
    lines = [
        f"# automc report: {data.study_name}",
        "",
        f"- model: {data.meta.get('model', '')}, dataset: {data.meta.get('dataset', '')}",
        f"- controller: {data.meta.get('controller', '')}, seed: {data.meta.get('seed', '')}",
        f"- budgets: {json.dumps(data.meta.get('limits', {}), sort_keys=True)}",
        f"- trials: {len(data.trials)} ({sum(t.feasible for t in done)} feasible and scored, "
        f"{sum(t.priced and not t.feasible for t in data.trials)} over budget (priced only), "
        f"{sum(t.state == 'FAIL' for t in data.trials)} failed); Pareto front: {len(front)} points",
        "",
    ]
    rows = _winner_rows(data)
    if rows:
        lines += [
            "## Winners (fine-tuned)",
            "",
            "| " + " | ".join(h for h, _ in rows[0]) + " |",
            "|" + "---|" * len(rows[0]),
        ]
        lines += ["| " + " | ".join(v for _, v in r) + " |" for r in rows]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def _winner_rows(data: ReportData) -> list[list[tuple[str, str]]]:
    """Rows (header, text) of the winners table, base model first."""
    rows = []
    entries: list[Mapping[str, Any]] = []
    if data.base:
        entries.append({"name": "base model", **data.base})
    entries += [{"name": f"trial {w.get('trial')}", **w} for w in data.winners]
    base_lat = data.base.get("latency_ms_measured")
    for e in entries:
        lat = e.get("latency_ms_measured")
        speedup = (float(base_lat) / float(lat)) if base_lat and lat else None
        rows.append(
            [
                ("model", str(e["name"])),
                ("proxy acc", _fmt(e.get("proxy_acc"))),
                ("test acc before FT", _fmt(e.get("test_acc_before"))),
                ("test acc after FT", _fmt(e.get("test_acc"))),
                ("MACs", _fmt(e.get("macs_measured", e.get("macs")))),
                ("params", _fmt(e.get("params"))),
                ("size (bytes)", _fmt(e.get("size_bytes"))),
                ("energy (mJ)", _fmt(e.get("energy_mj"))),
                ("latency pred (ms)", _latency_pred(e)),
                ("latency meas (ms, fp32 arch.)", _fmt(lat)),
                ("speed-up", f"{speedup:.2f}x" if speedup else "—"),
            ]
        )
    return rows


def _latency_pred(entry: Mapping[str, Any]) -> str:
    """Predicted latency, marked when the network or some layers were priced off the profile's table."""
    flags = dict(entry.get("latency_flags") or {})
    text = _fmt(entry.get("latency_ms"))
    notes = []
    if flags.pop(NETWORK_FLAG_KEY, None):
        notes.append("network not in the profile")
    if flags:
        notes.append(f"roofline for {len(flags)} layer{'s' if len(flags) != 1 else ''}")
    return f"{text} ({'; '.join(notes)})" if notes else text


def _fig_json(fig: Any) -> str:
    text = fig.to_json()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _pareto_figures(data: ReportData, front: set[int]) -> list[Any]:
    import plotly.graph_objects as go

    acc = _primary(data)
    winners = {int(w.get("trial", -1)) for w in data.winners}
    figs = []
    for cost in _cost_axes(data):
        fig = go.Figure()
        groups = [
            ("infeasible", [t for t in data.trials if t.priced and not t.feasible], "x", "#e0a0a0"),
            (
                "feasible",
                [t for t in data.trials if t.complete and t.feasible and t.number not in front],
                "circle",
                "#8fa8c8",
            ),
            (
                "Pareto front",
                sorted((t for t in data.trials if t.number in front), key=lambda t: t.metric(cost)),
                "circle",
                "#d62728",
            ),
            ("fine-tuned winners", [t for t in data.trials if t.number in winners], "star", "#ff9f1c"),
        ]
        for label, rows, symbol, color in groups:
            if not rows:
                continue
            hover = [_hover(t) for t in rows]
            fig.add_trace(
                go.Scatter(
                    x=[t.metric(cost) for t in rows],
                    y=[t.metric(acc) for t in rows],
                    mode="lines+markers" if label == "Pareto front" else "markers",
                    name=label,
                    marker={"symbol": symbol, "color": color, "size": 14 if label.startswith("fine") else 8},
                    text=hover,
                    hovertemplate="%{text}<extra></extra>",
                )
            )
        if data.base.get(cost) is not None:
            fig.add_vline(
                x=float(data.base[cost]), line_dash="dash", line_color="grey", annotation_text="base model"
            )
        fig.update_layout(
            title=f"proxy {acc} vs {COST_LABELS.get(cost, cost)}",
            xaxis_title=COST_LABELS.get(cost, cost),
            yaxis_title=f"proxy {acc}",
            height=420,
            margin={"l": 60, "r": 20, "t": 50, "b": 50},
        )
        figs.append(fig)
    return figs


def _hover(t: TrialRecord) -> str:
    s = plan_summary(t.plan)
    vals = ", ".join(f"{html.escape(k)}={_fmt(v)}" for k, v in t.values.items())
    return (
        f"trial {t.number}<br>{vals}<br>mean keep {s['mean_keep']:.2f} (min {s['min_keep']:.2f}), "
        f"w_bits {html.escape(str(s['w_bits']))}, low-rank layers {s['low_rank_layers']}, "
        f"criterion {html.escape(str(s['criterion']))}"
    )


def _layer_figures(data: ReportData, layer_order: Sequence[str]) -> list[tuple[str, Any]]:
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
            title=f"trial {w.get('trial')}: per-layer choices",
            margin={"l": 50, "r": 20, "t": 50, "b": 120},
            yaxis={"range": [0, 1.05]},
        )
        figs.append((f"trial {w.get('trial')}", fig))
    return figs


def _energy_figure(data: ReportData) -> Any:
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
        title="energy per inference (mJ): compute vs memory",
        height=340,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig


def _fidelity(data: ReportData) -> tuple[Any, Any, dict[str, Any]]:
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
        title="proxy accuracy vs fine-tuned test accuracy",
        xaxis_title="proxy acc",
        yaxis_title="test acc after fine-tune",
        height=340,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
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
        title="cost-model fidelity: predicted vs measured latency (ms)",
        xaxis_title="measured",
        yaxis_title="predicted",
        height=340,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return proxy_fig, lat_fig, stats


def _html(data: ReportData, front: set[int]) -> str:
    from plotly.offline import get_plotlyjs

    e = html.escape
    meta = data.meta
    figs: list[tuple[str, Any]] = [(f"pareto-{i}", f) for i, f in enumerate(_pareto_figures(data, front))]
    layer_figs = _layer_figures(data, meta.get("layer_order") or [])
    energy = _energy_figure(data)
    proxy_fig, lat_fig, stats = _fidelity(data)
    done = [t for t in data.trials if t.complete]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' "
        "'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:\">",
        f"<title>automc report: {e(data.study_name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th{background:#f3f3f3}td:first-child{text-align:left}.panel{margin:18px 0}.note{color:#555;font-size:13px}"
        ".grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}</style>",
        f"<script>{get_plotlyjs()}</script></head><body>",
        f"<h1>automc report: {e(data.study_name)}</h1>",
        "<p class='note'>"
        f"model <b>{e(str(meta.get('model', '')))}</b> on <b>{e(str(meta.get('dataset', '')))}</b>; "
        f"controller {e(str(meta.get('controller', '')))}; proxy {e(str(meta.get('proxy', 'adaptive_bn')))}; "
        f"space {e(str(meta.get('space', '')))}; "
        f"profile {e(str(meta.get('profile', '')))}; budgets {e(json.dumps(meta.get('limits', {}), sort_keys=True))}; "
        f"objectives {e(', '.join(f'{n} ({d})' for n, d in data.objectives))}.<br>"
        f"{len(data.trials)} trials: {sum(t.feasible for t in done)} feasible and scored, "
        f"{sum(t.priced and not t.feasible for t in data.trials)} over budget (priced only), "
        f"{sum(t.state == 'FAIL' for t in data.trials)} failed; {len(front)} on the Pareto front.</p>",
        "<h2>Pareto fronts</h2><p class='note'>Proxy accuracy of every evaluated candidate against each cost; "
        "hover a point for its plan. Infeasible candidates were priced by the cost model only.</p>",
    ]
    parts += [f"<div class='panel' id='{fid}'></div>" for fid, _ in figs]
    rows = _winner_rows(data)
    if rows:
        parts.append(
            "<h2>Winners</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h, _ in rows[0]) + "</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{e(v)}</td>" for _, v in r) + "</tr>" for r in rows]
        parts.append("</table>")
        files = [w.get("files") or {} for w in data.winners]
        if any(files):
            parts.append(
                "<p class='note'>Exported: "
                + "; ".join(
                    f"trial {e(str(w.get('trial')))}: "
                    + ", ".join(e(str(p)) for p in (w.get("files") or {}).values())
                    for w in data.winners
                )
                + "</p>"
            )
    if layer_figs:
        parts.append("<h2>Per-layer choices of each winner</h2>")
        for i, (_, fig) in enumerate(layer_figs):
            figs.append((f"layers-{i}", fig))
            parts.append(f"<div class='panel' id='layers-{i}'></div>")
    if energy is not None:
        figs.append(("energy", energy))
        parts.append("<h2>Energy split</h2><div class='panel' id='energy'></div>")
    tau = stats.get("proxy_kendall")
    parts.append("<h2>Honesty panels</h2><div class='grid'><div>")
    parts.append(
        f"<p class='note'>Proxy fidelity: Kendall τ between proxy accuracy and fine-tuned test accuracy over "
        f"{stats.get('proxy_n', 0)} winners = <b>{_fmt(tau) if tau is not None else 'n/a (needs ≥ 3 winners)'}</b>."
        "</p><div id='proxy-fid'></div></div><div>"
    )
    lat = stats.get("latency_within_10pct")
    parts.append(
        "<p class='note'>Cost-model fidelity: predicted vs measured latency on this machine; "
        f"within ±10%: <b>{_fmt(lat * 100 if lat is not None else None)}%</b> of "
        f"{stats.get('latency_n', 0)} models, mean abs. error {_fmt((stats.get('latency_mape') or 0) * 100)}%."
        "</p><div id='lat-fid'></div></div></div>"
    )
    figs += [("proxy-fid", proxy_fig), ("lat-fid", lat_fig)]
    parts.append("<script>")
    for fid, fig in figs:
        parts.append(
            f"(function(){{var f={_fig_json(fig)};Plotly.newPlot('{fid}',f.data,f.layout,"
            "{displaylogo:false,responsive:true});})();"
        )
    parts.append("</script></body></html>")
    return "\n".join(parts)
