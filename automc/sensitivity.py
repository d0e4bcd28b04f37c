"""Per-layer sensitivity analysis (Han et al. 2015, Fig. 6 style) and a prior for search spaces.

For each prunable dependency group, one at a time, the model is pruned to each keep ratio
(all other layers untouched) and scored with a proxy; likewise each conv/linear layer is
quantized alone to each weight bit width. Rows are written as CSV with the columns
``layer,kind,param,value,acc``:

* ``layer``: layer name (for a keep-ratio row, every layer of the pruned group gets a row
  with the same accuracy, so that per-layer look-ups need no group table); the base row
  has an empty name;
* ``kind``: the layer kind (``conv2d``, ``linear``, ...), ``base`` for the base row;
* ``param``: ``keep_ratio`` or ``w_bits``; ``value``: its value; ``acc``: proxy accuracy.

:func:`sensitivity_prior` turns such a CSV into per-layer minimum keep ratios that a
search space can use to narrow the range of sensitive layers.

Caveats: the proxy is adaptive-BN accuracy on the val split (no fine-tuning), so the
numbers are pessimistic for aggressive settings; coupled layers (one dependency group)
are pruned together and share one curve.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automc.errors import AutomcError
from automc.plan import CompressionPlan, LayerChoice, LayerSpec, layers_fingerprint
from automc.schema.common import read_text

COLUMNS = ("layer", "kind", "param", "value", "acc")


@dataclass(frozen=True)
class SensitivityRow:
    """One measured point: ``layer`` at ``param = value`` scored ``acc`` (proxy accuracy, 0..1)."""

    layer: str
    kind: str
    param: str
    value: float
    acc: float

    def to_row(self) -> dict[str, str]:
        return {
            "layer": self.layer,
            "kind": self.kind,
            "param": self.param,
            "value": f"{self.value:g}",
            "acc": f"{self.acc:.6f}",
        }


def _groups(layers: Sequence[LayerSpec]) -> dict[int, list[LayerSpec]]:
    out: dict[int, list[LayerSpec]] = {}
    for spec in sorted(layers, key=lambda s: s.index):
        if spec.prunable:
            out.setdefault(spec.group, []).append(spec)
    return out


def analyse(
    layers: Sequence[LayerSpec],
    score: Callable[[CompressionPlan], float],
    *,
    keeps: Sequence[float] = (0.25, 0.5, 0.75),
    bits: Sequence[int] = (2, 4, 8),
    criterion: str = "l1",
    quantizer: str = "uniform",
    progress: Callable[[str], None] | None = None,
) -> list[SensitivityRow]:
    """Score one-group-at-a-time pruning and one-layer-at-a-time quantization plans.

    Args:
        layers: the model's traced layers (``automc.graph.layers``).
        score: ``plan -> accuracy``; typically compresses the base model with the plan
            and returns the proxy's ``acc`` (see :func:`proxy_scorer`).
        keeps: keep ratios to try, each in (0, 1).
        bits: weight bit widths to try, each one of 1..8.
        criterion: pruning criterion of the keep-ratio plans.
        quantizer: weight quantizer of the bit-width plans.
        progress: called with a short description before each evaluation.

    Returns:
        The base row first, then keep-ratio rows per group, then bit-width rows per layer.
    """
    for k in keeps:
        if not 0.0 < float(k) < 1.0:
            raise AutomcError(f"keep ratios must be in (0, 1), got {k!r}")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 8:
            raise AutomcError(f"weight bits must be integers in 1..8, got {b!r}")
    fingerprint = layers_fingerprint(layers)

    def plan_for(choices: Mapping[str, LayerChoice]) -> CompressionPlan:
        return CompressionPlan(layers=dict(choices), criterion=criterion, fingerprint=fingerprint)

    if progress:
        progress("base model")
    rows = [
        SensitivityRow(layer="", kind="base", param="keep_ratio", value=1.0, acc=float(score(plan_for({}))))
    ]
    for gid, members in _groups(layers).items():
        for k in keeps:
            if progress:
                progress(f"group {gid} ({members[0].name}) keep {k:g}")
            acc = float(score(plan_for({s.name: LayerChoice(keep_ratio=float(k)) for s in members})))
            rows.extend(SensitivityRow(s.name, s.kind, "keep_ratio", float(k), acc) for s in members)
    for spec in sorted(layers, key=lambda s: s.index):
        for b in bits:
            if progress:
                progress(f"{spec.name} w_bits {b}")
            acc = float(score(plan_for({spec.name: LayerChoice(w_bits=int(b), quantizer=quantizer)})))
            rows.append(SensitivityRow(spec.name, spec.kind, "w_bits", float(b), acc))
    return rows


def proxy_scorer(
    model: Any,
    example_input: Any,
    proxy: Any,
    *,
    calib_batches: Sequence[Any] = (),
    calib_targets: Sequence[Any] = (),
    seed: int = 0,
) -> Callable[[CompressionPlan], float]:
    """``plan -> proxy acc`` of ``compress.apply(model, plan)`` (the base model is left untouched)."""
    from automc import compress

    def score(plan: CompressionPlan) -> float:
        candidate = compress.apply(
            model,
            plan,
            example_input,
            calib_batches=list(calib_batches),
            calib_targets=list(calib_targets),
            seed=seed,
        )
        return float(proxy.evaluate(candidate, plan)["acc"])

    return score


def write_csv(rows: Sequence[SensitivityRow], path: str | Path) -> Path:
    """Write rows with the header ``layer,kind,param,value,acc``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow(row.to_row())
    return path


def read_csv(path: str | Path) -> list[SensitivityRow]:
    """Read a sensitivity CSV; ``AutomcError`` naming the file and line for anything malformed."""
    path = Path(path)
    text = read_text(path)
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise AutomcError(
            f"{path}: header must be {','.join(COLUMNS)}, got {','.join(reader.fieldnames or ())}"
        )
    rows = []
    for line, raw in enumerate(reader, start=2):
        try:
            value, acc = float(raw["value"]), float(raw["acc"])
        except (TypeError, ValueError):
            raise AutomcError(f"{path}:{line}: value and acc must be numbers") from None
        if raw["param"] not in ("keep_ratio", "w_bits") or not (math.isfinite(value) and math.isfinite(acc)):
            raise AutomcError(f"{path}:{line}: param must be keep_ratio or w_bits with finite value and acc")
        rows.append(SensitivityRow(raw["layer"], raw["kind"], raw["param"], value, acc))
    if not any(r.kind == "base" for r in rows):
        raise AutomcError(f"{path}: no base row (kind 'base'); was it written by automc sensitivity?")
    return rows


def sensitivity_prior(csv_path: str | Path, threshold: float) -> dict[str, float]:
    """Per-layer minimum keep ratio that costs at most ``threshold`` proxy accuracy.

    For each layer with keep-ratio rows, the smallest measured keep ratio ``k`` such that
    *every* measured ratio ``>= k`` scored at least ``base_acc - threshold`` (so a noisy
    non-monotone curve never yields a ratio below a failing one). A layer whose every
    ratio fails gets 1.0 (do not prune it). Layers without keep-ratio rows (not prunable)
    are absent.

    Args:
        csv_path: a CSV written by :func:`write_csv` / ``automc sensitivity``.
        threshold: allowed accuracy drop as a fraction (0.02 = two points).

    Returns:
        layer name -> minimum keep ratio; a search space can raise the lower bound of
        each layer's keep-ratio range to it.
    """
    if not 0.0 <= threshold <= 1.0:
        raise AutomcError(f"threshold must be an accuracy drop in [0, 1], got {threshold!r}")
    rows = read_csv(csv_path)
    base = max(r.acc for r in rows if r.kind == "base")
    curves: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.param == "keep_ratio" and r.kind != "base":
            curves.setdefault(r.layer, []).append((r.value, r.acc))
    prior: dict[str, float] = {}
    for layer, points in curves.items():
        best = 1.0
        for value, acc in sorted(points, reverse=True):
            if acc < base - threshold:
                break
            best = value
        prior[layer] = best
    return prior


def plot(rows: Sequence[SensitivityRow], path: str | Path) -> Path:
    """PNG with two panels (accuracy vs keep ratio per group, vs weight bits per layer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = next((r.acc for r in rows if r.kind == "base"), None)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, param, xlabel in ((axes[0], "keep_ratio", "keep ratio"), (axes[1], "w_bits", "weight bits")):
        curves: dict[str, list[tuple[float, float]]] = {}
        seen: dict[tuple[tuple[float, float], ...], str] = {}
        for r in rows:
            if r.param == param and r.kind != "base":
                curves.setdefault(r.layer, []).append((r.value, r.acc))
        for layer, points in curves.items():
            key = tuple(sorted(points))
            if param == "keep_ratio" and key in seen:
                continue  # the other layers of a coupled group: same curve
            seen[key] = layer
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", linewidth=1, label=layer)
        if base is not None:
            ax.axhline(base, color="black", linestyle="--", linewidth=1, label="base")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("proxy accuracy")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    axes[0].set_title("pruning sensitivity (one group at a time)")
    axes[1].set_title("quantization sensitivity (one layer at a time)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
