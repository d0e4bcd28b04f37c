"""The plain-text summary ``automc search`` prints at the end of a run."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automc.pipeline.run import SearchResult


def summary_table(result: SearchResult) -> str:
    """Plain-text summary printed at the end of ``automc search``."""
    from automc.cost.latency import NETWORK_FLAG_KEY

    lines = [f"{'model':<14}{'test acc':>10}{'MACs':>12}{'lat pred':>10}{'lat meas':>10}{'budget ok':>10}"]
    b = result.base
    lines.append(
        f"{'base':<14}{b.get('test_acc', math.nan):>10.4f}{b.get('macs', 0) / 1e6:>11.2f}M"
        f"{b.get('latency_ms', math.nan):>9.3f}{'*' if b.get('latency_flags') else ' '}"
        f"{b.get('latency_ms_measured', math.nan):>10.3f}{'':>10}"
    )
    for w in result.winners:
        f = w.figures
        rough = "*" if f.get("latency_flags") else " "
        lines.append(
            f"{'trial ' + str(w.trial):<14}{f['test_acc']:>10.4f}{f['macs_measured'] / 1e6:>11.2f}M"
            f"{f.get('latency_ms', math.nan):>9.3f}{rough}{(f.get('latency_ms_measured') or math.nan):>10.3f}"
            f"{'yes' if f['meets_budget_measured'] else 'NO':>10}"
        )
    flagged = [b.get("latency_flags") or {}] + [w.figures.get("latency_flags") or {} for w in result.winners]
    if any(NETWORK_FLAG_KEY in f for f in flagged):
        model = (result.winners[0].plan.model if result.winners else "") or "MODEL"
        lines.append(
            "* latency predicted without a profile of this network (global overhead fit, roofline for "
            f"unprofiled layer shapes): add it with automc profile --model {model} --out NEW.yaml"
        )
    elif any(flagged):
        lines.append(
            "* latency predicted partly off the profile's table (roofline estimate; see pareto.json "
            "latency_flags): re-profile with a finer --fractions grid"
        )
    lines.append(
        f"storage: {result.storage} (study {result.study}); open with: optuna-dashboard {result.storage}"
    )
    if result.report_dir:
        lines.append(f"report: {result.report_dir / 'index.html'}")
        for w in result.winners:
            lines.append(f"winner trial {w.trial}: " + ", ".join(f"{k}={v}" for k, v in w.files.items()))
    return "\n".join(lines)
