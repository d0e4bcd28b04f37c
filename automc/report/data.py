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
    def from_storage(cls, storage: str, study_name: str) -> ReportData:
        """Load a study written by automc; unknown study/storage -> AutomcError."""
        import optuna

        from automc.search.storage import make_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
        except KeyError:
            raise AutomcError(f"no study named {study_name!r} in storage {storage}") from None
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
