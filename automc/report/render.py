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
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automc.budget import format_amount
from automc.cost.latency import NETWORK_FLAG_KEY, PRECISION_FLAG_KEY
from automc.errors import AutomcError
from automc.report.data import COST_LABELS, ReportData, kendall_tau, recommend
from automc.report.figures import MEASURED, RUG_Y, Panel, cost_axes, latency_panel, pareto_panels, primary

FILES = ("index.html", "pareto.png", "trials.csv", "pareto.json", "summary.md")


def render(data: ReportData, out_dir: str | Path) -> dict[str, Path]:
    """Write every report file into ``out_dir``; returns name -> path.

    Atomic: each file is first written as ``.partial-<name>`` next to its place and all of
    them are renamed over the old report only when every one was written, so a full disk
    or a crash leaves the previous report whole.

    Raises:
        AutomcError: a file cannot be written (full disk, read-only folder); the previous
            report is left as it was.
    """
    out = Path(out_dir)
    paths = {name: out / name for name in FILES}
    partial = {name: out / f".partial-{name}" for name in FILES}
    try:
        out.mkdir(parents=True, exist_ok=True)
        front = set(data.pareto_numbers())
        _write_csv(data, front, partial["trials.csv"])
        _write_pareto_json(data, front, partial["pareto.json"])
        _write_png(data, front, partial["pareto.png"])
        _write_summary(data, front, partial["summary.md"])
        partial["index.html"].write_text(_html(data, front, out), encoding="utf-8")
        for name in FILES:
            os.replace(partial[name], paths[name])
    except OSError as e:
        for path in partial.values():
            path.unlink(missing_ok=True)
        raise AutomcError(
            f"cannot write the report into {out}: {e.strerror or e}; the previous report is unchanged"
        ) from None
    return paths


def _fmt(metric: str, value: Any) -> str:
    """A figure in human units (:func:`automc.budget.format_amount`); text passes through."""
    if value is None or isinstance(value, str | bool):
        return "—" if value is None else str(value)
    return format_amount(metric, float(value))


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
    scored = [t for t in data.trials if t.complete]
    for ax, cost in zip(axes[0], axes_names):
        groups = [
            (
                "feasible (proxy)",
                [t for t in scored if t.feasible and t.number not in front],
                "o",
                "#8fa8c8",
                1.0,
            ),
            ("infeasible (proxy)", [t for t in scored if not t.feasible], "x", "#c0a0a0", 0.4),
            (
                "Pareto front (proxy)",
                sorted((t for t in scored if t.number in front), key=lambda t: t.metric(cost)),
                "o",
                "#d62728",
                1.0,
            ),
        ]
        for label, rows, marker, color, alpha in groups:
            if rows:
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


def _budget_text(data: ReportData) -> str:
    limits = data.meta.get("limits") or {}
    return ", ".join(f"{m} <= {format_amount(m, float(v))}" for m, v in sorted(limits.items())) or "none"


def _trial_counts(data: ReportData, front: set[int]) -> str:
    done = [t for t in data.trials if t.complete]
    return (
        f"{len(data.trials)} trials: {sum(t.feasible for t in done)} feasible and scored, "
        f"{sum(t.priced and not t.complete for t in data.trials)} over budget (priced, not scored), "
        f"{sum(t.state == 'FAIL' for t in data.trials)} failed; {len(front)} on the Pareto front"
    )


def recommendation_rows(data: ReportData) -> list[list[tuple[str, str]]]:
    """Rows (header, text) of the recommendation table: every winner, the recommended one first."""
    return [
        [
            ("trial", str(r["trial"])),
            ("val acc", _fmt("acc", r["val_acc"])),
            ("test acc", _fmt("acc", r["test_acc"])),
            ("MACs (measured)", _fmt("macs", r["macs_measured"])),
            ("latency (measured)", _latency_spread(r)),
            ("meets budget (measured)", "yes" if r["meets_budget_measured"] else "NO"),
            ("verdict", str(r["verdict"])),
        ]
        for r in recommend(data.winners).rows
    ]


def _latency_spread(entry: Mapping[str, Any]) -> str:
    text = _fmt("latency_ms", entry.get("latency_ms_measured"))
    iqr = entry.get("latency_ms_measured_iqr")
    return f"{text} (IQR {_fmt('latency_ms', iqr)})" if iqr is not None and text != "—" else text


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
        f"- budgets: {_budget_text(data)}",
        f"- {_trial_counts(data, front)}",
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
    winners = _winner_rows(data)
    if winners:
        lines += ["## Winners (fine-tuned)", "", *_md_table(winners)]
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
        speedup = e.get("speedup_measured") or ((float(base_lat) / float(lat)) if base_lat and lat else None)
        rows.append(
            [
                ("model", str(e["name"])),
                ("proxy acc", _fmt("acc", e.get("proxy_acc"))),
                ("val acc after FT", _fmt("acc", e.get("val_acc"))),
                ("test acc before FT", _fmt("acc", e.get("test_acc_before"))),
                ("test acc after FT", _fmt("acc", e.get("test_acc"))),
                ("test acc on runtime", _fmt("acc", e.get("test_acc_runtime"))),
                ("MACs", _fmt("macs", e.get("macs_measured", e.get("macs")))),
                ("params", _fmt("params", e.get("params"))),
                ("size", _fmt("size_bytes", e.get("size_bytes"))),
                ("energy", _fmt("energy_mj", e.get("energy_mj"))),
                ("latency pred", _latency_pred(e)),
                ("latency meas", _latency_on_runtime(e)),
                ("speed-up", f"{speedup:.2f}x" if speedup else "—"),
            ]
        )
    return rows


def _latency_on_runtime(entry: Mapping[str, Any]) -> str:
    """Measured latency and the runtime it was measured on (its int8 layers, or why the model
    could not be shipped there)."""
    text = _latency_spread(entry)
    runtime = entry.get("runtime")
    if entry.get("runtime_error"):
        return f"{text} (not shipped on {runtime}: {entry['runtime_error']})"
    if not runtime:
        return text
    int8 = entry.get("runtime_int8_layers")
    return f"{text} on {runtime}" + (f", {int8} int8 layers" if int8 else "")


def _latency_pred(entry: Mapping[str, Any]) -> str:
    """Predicted latency, marked when the network or some layers were priced off the profile's table."""
    flags = dict(entry.get("latency_flags") or {})
    text = _fmt("latency_ms", entry.get("latency_ms"))
    notes = []
    simulated = flags.pop(PRECISION_FLAG_KEY, None)
    if simulated:
        notes.append(str(simulated).removeprefix("latency: "))
    if flags.pop(NETWORK_FLAG_KEY, None):
        notes.append("network not in the profile")
    if flags:
        notes.append(f"roofline for {len(flags)} layer{'s' if len(flags) != 1 else ''}")
    return f"{text} ({'; '.join(notes)})" if notes else text


def _fig_json(fig: Any) -> str:
    text = fig.to_json()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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
            legend={"x": 1.02, "y": 0.5, "yanchor": "middle"},
            margin={"l": 50, "r": 20, "t": 30, "b": 120},
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
        legend={"x": 1.02, "y": 0.5, "yanchor": "middle"},
        height=340,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
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


def _link(path: str, out: Path) -> str:
    """``<a>`` to a winner file, relative to the report folder when it lies below it."""
    target = Path(path)
    try:
        href = target.resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        href = target.resolve().as_uri()
    return f"<a href='{html.escape(href, quote=True)}'>{html.escape(target.name)}</a>"


def _banners(data: ReportData, front: set[int]) -> list[str]:
    """Warnings at the top of the page: a profile far off this machine, nothing feasible."""
    e = html.escape
    out = []
    fix = data.base.get("profile_fix")
    if fix:
        err = float(data.base.get("profile_error") or 0.0)
        out.append(
            "<div class='banner'>The device profile predicts the base model at "
            f"{e(_fmt('latency_ms', data.base.get('latency_ms')))}, measured "
            f"{e(_fmt('latency_ms', data.base.get('latency_ms_measured')))} on this machine ({err:+.0%}): "
            f"latency budgets were judged for another machine. Re-profile here: <code>{e(str(fix))}</code></div>"
        )
    if data.trials and not any(t.complete and t.feasible for t in data.trials):
        out.append(
            "<div class='banner'>No candidate met the budget: loosen the budget, run more trials or use a "
            "space with lower keep ratios.</div>"
        )
    return out


def _recommendation_html(data: ReportData, out: Path) -> list[str]:
    e = html.escape
    rec = recommend(data.winners)
    parts = [
        "<h2 id='recommended'>Recommended</h2>",
        f"<p>{'Ship ' if rec.trial is not None else ''}{e(rec.reason)}.</p>",
    ]
    winner = next((w for w in data.winners if w.get("trial") == rec.trial), None)
    if winner is not None:
        links = ", ".join(_link(str(p), out) for p in (winner.get("files") or {}).values())
        parts.append(
            f"<p class='note'>Files: {links}. Load it: <code>automc.load_winner({e(repr(str(out)))}, "
            f"{int(rec.trial or 0)})</code></p>"
        )
    rows = recommendation_rows(data)
    if rows:
        parts.append(_html_table(rows))
    return parts


def _html_table(rows: list[list[tuple[str, str]]]) -> str:
    e = html.escape
    head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h, _ in rows[0]) + "</tr>"
    return (
        "<table>"
        + head
        + "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for _, v in r) + "</tr>" for r in rows)
        + "</table>"
    )


def _panel(p: Panel) -> str:
    e = html.escape
    return (
        f"<section class='panel'><h3 class='panel-title'>{e(p.title)}</h3>"
        f"<p class='note'>{e(p.note)}</p><div class='plot' id='{p.fid}'></div></section>"
    )


def _html(data: ReportData, front: set[int], out: Path) -> str:
    from plotly.offline import get_plotlyjs

    e = html.escape
    meta = data.meta
    rec = recommend(data.winners).trial
    panels = pareto_panels(data, front, rec)
    measured = latency_panel(data, rec)
    figs: list[tuple[str, Any]] = [(p.fid, p.figure) for p in panels]
    layer_figs = _layer_figures(data, meta.get("layer_order") or [])
    energy = _energy_figure(data)
    proxy_fig, lat_fig, stats = _fidelity(data)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' "
        "'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:\">",
        f"<title>automc report: {e(data.study_name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th{background:#f3f3f3}td:first-child{text-align:left}.panel{margin:18px 0}.note{color:#555;font-size:13px}"
        ".panel-title{margin:4px 0}.banner{background:#fff3cd;border:1px solid #e0c060;padding:8px 12px;margin:8px 0}"
        ".grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}</style>",
        f"<script>{get_plotlyjs()}</script></head><body>",
        f"<h1>automc report: {e(data.study_name)}</h1>",
        *_banners(data, front),
        "<p class='note'>"
        f"model <b>{e(str(meta.get('model', '')))}</b> on <b>{e(str(meta.get('dataset', '')))}</b>; "
        f"controller {e(str(meta.get('controller', '')))}; proxy {e(str(meta.get('proxy', 'adaptive_bn')))}; "
        f"space {e(str(meta.get('space', '')))}; profile {e(str(meta.get('profile', '')))}; "
        f"budgets {e(_budget_text(data))}; "
        f"objectives {e(', '.join(f'{n} ({d})' for n, d in data.objectives))}.<br>"
        f"{e(_trial_counts(data, front))}.</p>",
        *_recommendation_html(data, out),
        "<h2>Pareto fronts</h2>",
        *[_panel(p) for p in panels],
    ]
    if measured is not None:
        figs.append((measured.fid, measured.figure))
        parts.append(_panel(measured))
    rows = _winner_rows(data)
    if rows:
        parts += ["<h2>Winners</h2>", _html_table(rows)]
        if any(w.get("files") for w in data.winners):
            parts.append(
                "<p class='note'>Exported: "
                + "; ".join(
                    f"trial {e(str(w.get('trial')))}: "
                    + ", ".join(_link(str(p), out) for p in (w.get("files") or {}).values())
                    for w in data.winners
                )
                + "</p>"
            )
    if layer_figs:
        parts.append("<h2>Per-layer choices of each winner</h2>")
        for i, (_, fig) in enumerate(layer_figs):
            figs.append((f"layers-{i}", fig))
            parts.append(
                f"<section class='panel'><h3 class='panel-title'>trial {e(str(data.winners[i].get('trial')))}: "
                f"per-layer choices</h3><div class='plot' id='layers-{i}'></div></section>"
            )
    if energy is not None:
        figs.append(("energy", energy))
        parts.append(
            "<h2>Energy split</h2><section class='panel'><h3 class='panel-title'>energy per inference: "
            "compute vs memory</h3><div class='plot' id='energy'></div></section>"
        )
    tau = stats.get("proxy_kendall")
    parts.append("<h2>Honesty panels</h2><div class='grid'><div>")
    parts.append(
        f"<p class='note'>Proxy fidelity: Kendall τ between proxy accuracy and fine-tuned test accuracy over "
        f"{stats.get('proxy_n', 0)} winners = <b>{_fmt('tau', tau) if tau is not None else 'n/a (needs ≥ 3 winners)'}</b>."
        "</p><h3 class='panel-title'>proxy accuracy vs fine-tuned test accuracy</h3>"
        "<div class='plot' id='proxy-fid'></div></div><div>"
    )
    lat = stats.get("latency_within_10pct")
    parts.append(
        "<p class='note'>Cost-model fidelity: predicted vs measured latency on this machine; "
        f"within ±10%: <b>{'—' if lat is None else f'{lat:.0%}'}</b> of "
        f"{stats.get('latency_n', 0)} models, mean abs. error {(stats.get('latency_mape') or 0):.0%}."
        "</p><h3 class='panel-title'>cost-model fidelity: predicted vs measured latency</h3>"
        "<div class='plot' id='lat-fid'></div></div></div>"
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
