"""``index.html``: one self-contained page (plotly.js inlined, no network request; torch-free).

Every user-provided string (study, model, dataset and layer names, failure reasons) is
escaped: HTML text through ``html.escape``, figure data as JSON with ``<``, ``>`` and
``&`` written as unicode escapes so nothing can close the ``<script>`` element.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from automc.report.data import ReportData, recommend
from automc.report.figures import Panel, energy_figure, fidelity, latency_panel, layer_figures, pareto_panels
from automc.report.tables import budget_text, fmt, recommendation_rows, trial_counts, winner_rows


def _fig_json(fig: Any) -> str:
    text = fig.to_json()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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
            f"{e(fmt('latency_ms', data.base.get('latency_ms')))}, measured "
            f"{e(fmt('latency_ms', data.base.get('latency_ms_measured')))} on this machine ({err:+.0%}): "
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


def page(data: ReportData, front: set[int], out: Path) -> str:
    from plotly.offline import get_plotlyjs

    e = html.escape
    meta = data.meta
    rec = recommend(data.winners).trial
    panels = pareto_panels(data, front, rec)
    measured = latency_panel(data, rec)
    figs: list[tuple[str, Any]] = [(p.fid, p.figure) for p in panels]
    layer_figs = layer_figures(data, meta.get("layer_order") or [])
    energy = energy_figure(data)
    proxy_fig, lat_fig, stats = fidelity(data)
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
        f"budgets {e(budget_text(data))}; "
        f"objectives {e(', '.join(f'{n} ({d})' for n, d in data.objectives))}.<br>"
        f"{e(trial_counts(data, front))}.</p>",
        *_recommendation_html(data, out),
        "<h2>Pareto fronts</h2>",
        *[_panel(p) for p in panels],
    ]
    if measured is not None:
        figs.append((measured.fid, measured.figure))
        parts.append(_panel(measured))
    rows = winner_rows(data)
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
        f"{stats.get('proxy_n', 0)} winners = <b>{fmt('tau', tau) if tau is not None else 'n/a (needs ≥ 3 winners)'}</b>."
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
