"""The plain-text summary ``automc search`` prints at the end of a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automc.pipeline.run import SearchResult


def summary_table(result: SearchResult) -> str:
    """Plain-text summary printed at the end of ``automc search``."""
    from automc.budget import format_amount as fmt
    from automc.cost.latency import NETWORK_FLAG_KEY, PRECISION_FLAG_KEY

    lines = [
        f"{'model':<14}{'val acc':>9}{'test acc':>10}{'MACs':>10}{'lat pred':>10}{'lat meas':>10}"
        f"{'budget ok':>11}"
    ]
    b = result.base
    lines.append(
        f"{'base':<14}{fmt('acc', b.get('val_acc')):>9}{fmt('acc', b.get('test_acc')):>10}"
        f"{fmt('macs', b.get('macs')):>10}{fmt('latency_ms', b.get('latency_ms')):>9}"
        f"{'*' if b.get('latency_flags') else ' '}{fmt('latency_ms', b.get('latency_ms_measured')):>10}{'':>11}"
    )
    for w in result.winners:
        f = w.figures
        rough = "*" if f.get("latency_flags") else " "
        lines.append(
            f"{'trial ' + str(w.trial):<14}{fmt('acc', f.get('val_acc')):>9}{fmt('acc', f['test_acc']):>10}"
            f"{fmt('macs', f['macs_measured']):>10}{fmt('latency_ms', f.get('latency_ms')):>9}{rough}"
            f"{fmt('latency_ms', f.get('latency_ms_measured')):>10}"
            f"{'yes' if f['meets_budget_measured'] else 'NO':>11}"
        )
    flagged = [
        {k: v for k, v in (f.get("latency_flags") or {}).items() if k != PRECISION_FLAG_KEY}
        for f in [b] + [w.figures for w in result.winners]
    ]
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
    for w in result.winners:
        note = (w.figures.get("latency_flags") or {}).get(PRECISION_FLAG_KEY)
        if note:
            lines.append(f"trial {w.trial}: {note.removeprefix('latency: ')}")
        if w.figures.get("latency_check"):
            lines.append(f"trial {w.trial}: latency {w.figures['latency_check']}")
    lines.append(
        f"storage: {result.storage} (study {result.study}); open with: optuna-dashboard {result.storage}"
    )
    if result.report_dir:
        lines.append(f"report: {result.report_dir / 'index.html'}")
        for w in result.winners:
            lines.append(f"winner trial {w.trial}: " + ", ".join(f"{k}={v}" for k, v in w.files.items()))
    rec = result.recommendation
    if rec is not None:
        lines.append(f"recommended: {rec.reason}")
        if rec.trial is not None and result.report_dir:
            lines.append(f"load it in Python: automc.load_winner({str(result.report_dir)!r}, {rec.trial})")
    return "\n".join(lines)
