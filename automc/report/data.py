"""``ReportData``: everything a report shows, read back from an Optuna storage.

The search records each trial through :class:`automc.search.storage.Recorder` and the
report reads it back with the same decoder (:func:`automc.search.storage.decode_trial`);
per study the search also stores ``automc`` (run metadata),
``base`` (base-model figures) and ``winners`` (fine-tuned winners with measured
figures). A report is a pure function of these, so ``automc report`` can re-render it
without running anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automc.errors import AutomcError
from automc.pareto import non_dominated
from automc.search.storage import TrialRecord, decode_trial

COST_LABELS = {
    "macs": "MACs",
    "params": "parameters",
    "size_bytes": "size (bytes)",
    "latency_ms": "latency (ms)",
    "energy_mj": "energy (mJ)",
    "kl": "KL to teacher",
}


@dataclass(frozen=True)
class ReportData:
    """Run metadata, trials, the Pareto front and the fine-tuned winners."""

    study_name: str
    meta: Mapping[str, Any]
    objectives: tuple[tuple[str, str], ...]
    trials: tuple[TrialRecord, ...]
    base: Mapping[str, Any] = field(default_factory=dict)
    winners: tuple[Mapping[str, Any], ...] = ()

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]

    def pareto_numbers(self) -> list[int]:
        """Trial numbers on the front of complete, feasible trials with finite values."""
        rows = [t for t in self.trials if t.complete and t.feasible]
        pts = [[t.values.get(n, math.nan) for n, _ in self.objectives] for t in rows]
        return sorted(rows[i].number for i in non_dominated(pts, self.directions))

    @classmethod
    def from_storage(cls, storage: str, study_name: str | None = None) -> ReportData:
        """Load a study written by automc (``None``: the storage's only study); unknown
        study/storage, or several studies and no name -> AutomcError."""
        import optuna

        from automc.search.storage import make_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            store = make_storage(storage)
            if study_name is None:
                names = sorted(
                    s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)
                )
                if len(names) != 1:
                    listed = ", ".join(names) if names else "none"
                    raise AutomcError(
                        f"storage {storage} holds {len(names)} studies ({listed}): name one with --study"
                    )
                study_name = names[0]
            study = optuna.load_study(study_name=study_name, storage=store)
        except KeyError:
            raise AutomcError(f"no study named {study_name!r} in storage {storage}") from None
        except AutomcError:
            raise
        except Exception as e:  # noqa: BLE001 - optuna raises many types for a bad URL/file
            raise AutomcError(f"cannot open storage {storage}: {e.__class__.__name__}: {e}") from None
        return cls.from_study(study)

    @classmethod
    def from_study(cls, study: Any) -> ReportData:
        attrs = study.user_attrs
        meta = dict(attrs.get("automc") or {})
        if not meta:
            raise AutomcError(f"study {study.study_name!r} was not written by automc (no 'automc' metadata)")
        objectives = _objectives(meta, study)
        rows = [decode_trial(t, objectives) for t in study.get_trials(deepcopy=False)]
        return cls(
            study_name=study.study_name,
            meta=meta,
            objectives=tuple(objectives),
            trials=tuple(rows),
            base=dict(attrs.get("base") or {}),
            winners=tuple(attrs.get("winners") or ()),
        )


def existing_storage(storage: str) -> str:
    """Storage URL of an existing store; a path becomes ``sqlite:///path`` (or a journal for ``.log``).

    A missing SQLite/journal file is an AutomcError: reading must never create an empty store.
    """
    text = str(storage)
    if "://" not in text:
        path = Path(text)
        if not path.is_file():
            raise AutomcError(f"storage {text}: file not found")
        return text if path.suffix == ".log" else f"sqlite:///{path}"
    if text.startswith("sqlite:///"):
        path = Path(text[len("sqlite:///") :])
        if not path.is_file():
            raise AutomcError(f"storage {text}: database file {path} not found")
    return text


def _objectives(meta: Mapping[str, Any], study: Any) -> list[tuple[str, str]]:
    objs = meta.get("objectives") or []
    out: list[tuple[str, str]] = []
    for o in objs:
        if isinstance(o, Mapping):
            out.append((str(o["name"]), str(o["direction"])))
        elif isinstance(o, Sequence) and not isinstance(o, str):
            out.append((str(o[0]), str(o[1])))
        else:
            out.append((str(o), "maximize" if str(o) in ("acc",) else "minimize"))
    if not out:
        out = [(f"objective{i}", d.name.lower()) for i, d in enumerate(study.directions)]
    return out


def plan_summary(plan: Mapping[str, Any]) -> dict[str, Any]:
    """A few numbers that describe a plan (for hover text and tables)."""
    layers = plan.get("layers") or {}
    keeps = [float(c.get("keep_ratio", 1.0)) for c in layers.values()]
    wbits = [int(c.get("w_bits", 32)) for c in layers.values()]
    ranks = [c for c in layers.values() if c.get("rank") is not None]
    return {
        "layers_changed": len(layers),
        "mean_keep": sum(keeps) / len(keeps) if keeps else 1.0,
        "min_keep": min(keeps) if keeps else 1.0,
        "w_bits": sorted(set(wbits)) if wbits else [32],
        "low_rank_layers": len(ranks),
        "criterion": plan.get("criterion", "l1"),
    }


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b; ``None`` with fewer than 3 pairs or no variation."""
    if len(x) < 3:
        return None
    from scipy.stats import kendalltau

    tau = kendalltau(list(x), list(y)).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


TIE_ACC = 0.002
"""Val accuracies closer than this are a tie; the cheaper winner (measured latency, then MACs) wins it."""


@dataclass(frozen=True)
class Recommendation:
    """The winner to ship and why.

    Attributes:
        trial: the recommended trial (``None`` when no winner meets every budget by measurement).
        reason: one sentence saying why.
        rows: one row per winner (``trial``, ``val_acc``, ``val_acc_runtime``, ``test_acc``,
            ``test_acc_runtime``, ``runtime_acc_ok``, ``macs_measured``, ``latency_ms_measured``,
            ``meets_budget_measured``, ``verdict``), recommended first; the runtime figures are
            ``None`` for a winner not shipped to a runtime.
    """

    trial: int | None
    reason: str
    rows: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.trial, "reason": self.reason, "table": [dict(r) for r in self.rows]}


def _cost_key(w: Mapping[str, Any]) -> tuple[float, float]:
    lat, macs = w.get("latency_ms_measured"), w.get("macs_measured")
    return (math.inf if lat is None else float(lat), math.inf if macs is None else float(macs))


def _val(w: Mapping[str, Any]) -> float | None:
    """The val accuracy a winner is chosen by: that of its shipped artifact run by the runtime
    (``val_acc_runtime``) where one was measured, else the PyTorch one."""
    acc = w.get("val_acc_runtime", w.get("val_acc"))
    return None if acc is None else float(acc)


def recommend(winners: Sequence[Mapping[str, Any]]) -> Recommendation:
    """The most accurate winner on val among those meeting every budget by *measured* cost.

    The val accuracy is that of the artifact that ships (``val_acc_runtime``, measured
    through the runtime) where the winner was shipped, so a winner whose artifact loses
    accuracy is not chosen for its PyTorch figure; a winner flagged ``runtime_acc_ok``
    false (its artifact's test accuracy far below the PyTorch one) is never chosen. Test
    accuracy is never used to rank (it is the held-out estimate of the choice). Within
    :data:`TIE_ACC` of the best val accuracy the cheaper winner (measured latency, then
    measured MACs) is chosen.
    """
    if not winners:
        return Recommendation(
            trial=None, reason="no winner was fine-tuned (no feasible candidate, or finetune.top = 0)"
        )
    ok = [
        w
        for w in winners
        if w.get("meets_budget_measured") and _val(w) is not None and w.get("runtime_acc_ok") is not False
    ]
    best_val = max((_val(w) or 0.0 for w in ok), default=math.nan)
    tied = sorted((w for w in ok if (_val(w) or 0.0) >= best_val - TIE_ACC), key=_cost_key)
    pick = tied[0] if tied else None

    def verdict(w: Mapping[str, Any]) -> str:
        if w is pick:
            return "recommended"
        if not w.get("meets_budget_measured"):
            over = {m: v for m, v in (w.get("measured_constraints") or {}).items() if v > 1e-9}
            return "over budget by measurement" + (
                " (" + ", ".join(f"{m} +{v:.0%}" for m, v in over.items()) + ")" if over else ""
            )
        if _val(w) is None:
            return "no val accuracy recorded"
        if w.get("runtime_acc_ok") is False:
            return (
                f"its {w.get('runtime')} artifact loses accuracy (test {float(w['test_acc_runtime']):.4f} "
                f"there, {float(w['test_acc']):.4f} in PyTorch)"
            )
        if w in tied:
            return "tied on val, costlier"
        return f"less accurate on val ({(_val(w) or 0.0) - best_val:+.4f})"

    order = ([pick] if pick is not None else []) + [w for w in winners if w is not pick]
    rows = tuple(
        {
            "trial": int(w.get("trial", -1)),
            "val_acc": w.get("val_acc"),
            "val_acc_runtime": w.get("val_acc_runtime"),
            "test_acc": w.get("test_acc"),
            "test_acc_runtime": w.get("test_acc_runtime"),
            "runtime_acc_ok": w.get("runtime_acc_ok"),
            "macs_measured": w.get("macs_measured"),
            "latency_ms_measured": w.get("latency_ms_measured"),
            "latency_ms_measured_iqr": w.get("latency_ms_measured_iqr"),
            "meets_budget_measured": bool(w.get("meets_budget_measured")),
            "verdict": verdict(w),
        }
        for w in order
    )
    broken = sum(1 for w in winners if w.get("runtime_acc_ok") is False)
    if pick is None:
        return Recommendation(
            trial=None,
            reason=f"none of the {len(winners)} fine-tuned winners meets every budget by measured cost"
            + (" with a runtime artifact that keeps its accuracy" if broken else ""),
            rows=rows,
        )
    on = f"val on {pick['runtime']}" if "val_acc_runtime" in pick and pick.get("runtime") else "val"
    why = (
        f"trial {pick.get('trial')}: the most accurate on {on} ({_val(pick) or 0.0:.4f}) of the "
        f"{len(ok)} of {len(winners)} fine-tuned winners that meet every budget by measured cost"
    )
    if broken:
        why += f" and ship an artifact that keeps its accuracy ({broken} do not)"
    if len(tied) > 1:
        why += f"; {len(tied) - 1} other within {TIE_ACC} on val, this one is cheaper by measured latency"
    return Recommendation(trial=int(pick.get("trial", -1)), reason=why, rows=rows)
