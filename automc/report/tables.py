"""The report's tables as (header, text) rows, every figure in human units (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automc.budget import format_amount
from automc.cost.latency import LATENCY_TOLERANCE, NETWORK_FLAG_KEY, PRECISION_FLAG_KEY
from automc.report.data import ReportData, recommend


def fmt(metric: str, value: Any) -> str:
    """A figure in human units (:func:`automc.budget.format_amount`); text passes through."""
    if value is None or isinstance(value, str | bool):
        return "—" if value is None else str(value)
    return format_amount(metric, float(value))


def budget_text(data: ReportData) -> str:
    limits = data.meta.get("limits") or {}
    return ", ".join(f"{m} <= {format_amount(m, float(v))}" for m, v in sorted(limits.items())) or "none"


def trial_counts(data: ReportData, front: set[int]) -> str:
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
            ("val acc", fmt("acc", r["val_acc"])),
            ("test acc", fmt("acc", r["test_acc"])),
            ("MACs (measured)", fmt("macs", r["macs_measured"])),
            ("latency (measured)", _latency_spread(r)),
            ("meets budget (measured)", "yes" if r["meets_budget_measured"] else "NO"),
            ("verdict", str(r["verdict"])),
        ]
        for r in recommend(data.winners).rows
    ]


def _latency_spread(entry: Mapping[str, Any]) -> str:
    text = fmt("latency_ms", entry.get("latency_ms_measured"))
    iqr = entry.get("latency_ms_measured_iqr")
    return f"{text} (IQR {fmt('latency_ms', iqr)})" if iqr is not None and text != "—" else text


def winner_rows(data: ReportData) -> list[list[tuple[str, str]]]:
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
                ("proxy acc", fmt("acc", e.get("proxy_acc"))),
                ("val acc after FT", fmt("acc", e.get("val_acc"))),
                ("test acc before FT", fmt("acc", e.get("test_acc_before"))),
                ("test acc after FT", fmt("acc", e.get("test_acc"))),
                ("test acc on runtime", fmt("acc", e.get("test_acc_runtime"))),
                ("MACs", fmt("macs", e.get("macs_measured", e.get("macs")))),
                ("params", fmt("params", e.get("params"))),
                ("size", fmt("size_bytes", e.get("size_bytes"))),
                ("energy", fmt("energy_mj", e.get("energy_mj"))),
                ("latency pred", _latency_pred(e)),
                ("latency meas", _latency_on_runtime(e)),
                ("speed-up", f"{speedup:.2f}x" if speedup else "—"),
                ("latency check", _latency_check(e)),
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


def _latency_check(entry: Mapping[str, Any]) -> str:
    """Within :data:`~automc.cost.latency.LATENCY_TOLERANCE` of the measurement, the flag with
    its reasons, or ``—`` (nothing to compare)."""
    if entry.get("latency_check"):
        return str(entry["latency_check"])
    err = entry.get("latency_error", entry.get("profile_error"))
    if err is None:
        return "—"
    if abs(float(err)) <= LATENCY_TOLERANCE:
        return f"within {LATENCY_TOLERANCE:.0%} ({float(err):+.0%})"
    return f"predicted {float(err):+.0%} off"


def _latency_pred(entry: Mapping[str, Any]) -> str:
    """Predicted latency, marked when the network or some layers were priced off the profile's table."""
    flags = dict(entry.get("latency_flags") or {})
    text = fmt("latency_ms", entry.get("latency_ms"))
    notes = []
    simulated = flags.pop(PRECISION_FLAG_KEY, None)
    if simulated:
        notes.append(str(simulated).removeprefix("latency: "))
    if flags.pop(NETWORK_FLAG_KEY, None):
        notes.append("network not in the profile")
    if flags:
        notes.append(f"roofline for {len(flags)} layer{'s' if len(flags) != 1 else ''}")
    return f"{text} ({'; '.join(notes)})" if notes else text
