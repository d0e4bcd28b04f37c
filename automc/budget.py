"""Budgets and objectives as the user types them (torch-free).

Budgets: ``flops=0.5`` (a fraction of the base model's cost), ``flops=20M`` (absolute),
``macs=`` (alias of ``flops``: FLOPs here are multiply-accumulates), ``params=1.2M``,
``size=1MB`` (B, KB, MB, GB, KiB, MiB, GiB), ``latency=2ms`` (us, ms, s),
``energy=0.5mJ`` (nJ, uJ, mJ, J). A bare number in (0, 1] or a percentage is a fraction;
several budgets come as a comma list or a repeated flag. Limits are turned into
constraints ``cost / limit - 1`` (feasible iff <= 0, Optuna's rule).

Caveat: ``latency`` and ``energy`` budgets need a hardware profile; this module only
parses them, the engine checks a profile is present.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automc.errors import AutomcError
from automc.search.base import Objective

if TYPE_CHECKING:
    from automc.plan import CompressionPlan
    from automc.space import BoundSpace

METRIC_ALIASES: Mapping[str, str] = {
    "flops": "macs",
    "macs": "macs",
    "params": "params",
    "size": "size_bytes",
    "size_bytes": "size_bytes",
    "latency": "latency_ms",
    "latency_ms": "latency_ms",
    "energy": "energy_mj",
    "energy_mj": "energy_mj",
}
OBJECTIVE_ALIASES: Mapping[str, str] = {"acc": "acc", "accuracy": "acc", "kl": "kl", **METRIC_ALIASES}
_UNITS: Mapping[str, Mapping[str, float]] = {
    "macs": {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12},
    "params": {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9},
    "size_bytes": {
        "b": 1.0,
        "kb": 1e3,
        "mb": 1e6,
        "gb": 1e9,
        "kib": 1024.0,
        "mib": 1024.0**2,
        "gib": 1024.0**3,
    },
    "latency_ms": {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3},
    "energy_mj": {"nj": 1e-6, "uj": 1e-3, "µj": 1e-3, "mj": 1.0, "j": 1e3},
}
_UNIT_HINT: Mapping[str, str] = {
    "macs": "e.g. 0.5 (fraction) or 20M",
    "params": "e.g. 0.5 (fraction) or 1.2M",
    "size_bytes": "e.g. 0.5 (fraction) or 1MB (B, KB, MB, GB, KiB, MiB, GiB)",
    "latency_ms": "e.g. 0.5 (fraction) or 2ms (us, ms, s)",
    "energy_mj": "e.g. 0.5 (fraction) or 0.5mJ (nJ, uJ, mJ, J)",
}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ%]*)\s*$")


@dataclass(frozen=True)
class Budget:
    """One parsed budget.

    Attributes:
        metric: cost key (``macs``, ``params``, ``size_bytes``, ``latency_ms``, ``energy_mj``).
        value: the limit in the metric's unit, or the fraction of the base cost.
        relative: whether ``value`` is a fraction of the base model's cost.
        token: the text it was parsed from (for messages).
    """

    metric: str
    value: float
    relative: bool
    token: str


def _split(specs: str | Sequence[str]) -> list[str]:
    items = [specs] if isinstance(specs, str) else list(specs)
    return [t.strip() for item in items for t in str(item).split(",") if t.strip()]


def parse_budget(token: str) -> Budget:
    """Parse one ``metric=value`` token; ``AutomcError`` naming the token if it is not one."""
    name, sep, text = token.partition("=")
    name = name.strip().lower()
    if not sep or name not in METRIC_ALIASES:
        known = ", ".join(k for k in METRIC_ALIASES if "_" not in k)
        raise AutomcError(f"budget {token!r}: expected METRIC=VALUE with METRIC one of {known}")
    metric = METRIC_ALIASES[name]
    m = _NUMBER.match(text)
    if m is None:
        raise AutomcError(f"budget {token!r}: cannot parse the value {text.strip()!r} ({_UNIT_HINT[metric]})")
    number, unit = float(m.group(1)), m.group(2).lower()
    if not math.isfinite(number) or number <= 0:
        raise AutomcError(f"budget {token!r}: the limit must be a positive number")
    if unit == "%":
        if number > 100:
            raise AutomcError(f"budget {token!r}: a percentage must be at most 100%")
        return Budget(metric=metric, value=number / 100.0, relative=True, token=token)
    if unit == "" and number <= 1.0:
        return Budget(metric=metric, value=number, relative=True, token=token)
    scale = _UNITS[metric].get(unit)
    if scale is None:
        what = "needs a unit" if unit == "" else f"has an unknown unit {m.group(2)!r}"
        raise AutomcError(f"budget {token!r}: the value {what} ({_UNIT_HINT[metric]})")
    return Budget(metric=metric, value=number * scale, relative=False, token=token)


def parse_budgets(specs: str | Sequence[str]) -> list[Budget]:
    """Parse a comma list and/or repeated flags; a metric given twice is an error."""
    out: list[Budget] = []
    seen: dict[str, str] = {}
    for token in _split(specs):
        b = parse_budget(token)
        if b.metric in seen:
            raise AutomcError(f"budget {token!r}: {b.metric} is already limited by {seen[b.metric]!r}")
        seen[b.metric] = token
        out.append(b)
    return out


def resolve(budgets: Sequence[Budget], base_cost: Mapping[str, float]) -> dict[str, float]:
    """Absolute limits: fractions are multiplied by the base model's cost totals.

    Raises:
        AutomcError: a relative budget's metric is not in ``base_cost`` (e.g. latency
            without a hardware profile).
    """
    limits: dict[str, float] = {}
    for b in budgets:
        if not b.relative:
            limits[b.metric] = b.value
            continue
        base = base_cost.get(b.metric)
        if base is None or not math.isfinite(float(base)) or base <= 0:
            raise AutomcError(
                f"budget {b.token!r} is relative but the base model has no {b.metric} cost "
                "(latency and energy budgets need a hardware profile)"
            )
        limits[b.metric] = b.value * float(base)
    return limits


def parse_objectives(specs: str | Sequence[str]) -> list[Objective]:
    """``"acc,latency,energy"`` -> objectives (acc maximised; kl and the cost metrics minimised)."""
    out: list[Objective] = []
    for token in _split(specs):
        name = OBJECTIVE_ALIASES.get(token.lower())
        if name is None:
            known = ", ".join(k for k in OBJECTIVE_ALIASES if "_" not in k and k != "accuracy")
            raise AutomcError(f"objective {token!r}: unknown (known: {known})")
        if any(o.name == name for o in out):
            raise AutomcError(f"objective {token!r} is given twice")
        out.append(Objective.named(name))
    if not out:
        raise AutomcError("at least one objective is needed, e.g. acc,macs")
    return out


def constraints(cost_totals: Mapping[str, float], limits: Mapping[str, float]) -> dict[str, float]:
    """Constraint values ``cost / limit - 1`` per limited metric (feasible iff every value <= 0).

    A metric missing from ``cost_totals`` is reported as an ``AutomcError`` rather than
    treated as free.
    """
    out: dict[str, float] = {}
    for metric, limit in limits.items():
        if metric not in cost_totals:
            raise AutomcError(f"budget on {metric}: the cost model gives no {metric} for this candidate")
        out[metric] = float(cost_totals[metric]) / float(limit) - 1.0
    return out


COUNT_METRICS = ("macs", "macs_measured", "params")
"""Metrics shown as counts with k/M/G prefixes."""


def format_amount(metric: str, value: float | None) -> str:
    """``value`` of ``metric`` in human units: the one formatter of the CLI, summary and report.

    Counts (``macs``, ``params``) as ``40.8M`` / ``59.9k``; ``size_bytes`` as ``1.08MB`` /
    ``512B``; ``latency_ms`` as ``2.88ms`` (milliseconds throughout, the unit budgets are
    given in); ``energy_mj`` as ``0.5mJ``; accuracies (``acc``, ``val_acc``, ...) with 4
    decimals; anything else with 4 significant digits. ``None`` or NaN: ``—``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    value = float(value)
    if metric in (*COUNT_METRICS, "size_bytes"):
        unit = "B" if metric == "size_bytes" else ""
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K" if unit else "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{prefix}{unit}"
        return f"{value:.3g}{unit}"
    if "acc" in metric:
        return f"{value:.4f}"
    if metric.startswith("latency_ms"):
        return f"{value:.3g}ms"
    if metric.startswith("energy"):
        return f"{value:.3g}mJ"
    return f"{value:.4g}"


def fraction_hint(b: Budget) -> str:
    """`` (did you mean flops=0.3?)`` for a unitless absolute budget that reads like a fraction
    (``flops=3`` is 3 MACs), else ``''``."""
    name, _, text = b.token.partition("=")
    m = _NUMBER.match(text)
    if b.relative or m is None or m.group(2) or b.value >= 100:
        return ""
    fraction = b.value / (10.0 if b.value < 10 else 100.0)
    return f" (did you mean {name.strip()}={fraction:g}, a fraction of the base model?)"


def cheapest_corners(space: BoundSpace) -> list[dict[str, Any]]:
    """:meth:`BoundSpace.extreme_values`, and the same point with its bit-widths, its ranks,
    or both at :meth:`BoundSpace.identity_values` (distinct points only)."""
    extreme, identity = space.extreme_values(), space.identity_values()
    fields = {p.name: p.field for p in space.params}
    corners: list[dict[str, Any]] = []
    for kept in ((), ("w_bits", "a_bits"), ("rank",), ("w_bits", "a_bits", "rank")):
        values = {n: identity[n] if fields[n] in kept else v for n, v in extreme.items()}
        if values not in corners:
            corners.append(values)
    return corners


def check_feasible_space(
    space: BoundSpace,
    cost_fn: Callable[[CompressionPlan], Mapping[str, float]],
    limits: Mapping[str, float],
    *,
    budgets: Sequence[Budget] = (),
    base_cost: Mapping[str, float] | None = None,
) -> None:
    """Refuse budgets that even the cheapest plan of the space cannot meet.

    Per metric, the cheapest of :meth:`BoundSpace.extreme_values` (smallest keep, fewest bits,
    smallest rank) and of that point with its bits, its ranks or both left as the base has
    them (:func:`cheapest_corners`): on a deployment runtime an int8 layer between float
    ones, or a factorised layer's second call, can cost more latency than it saves. It needs
    the layer table only, not trained weights, so it runs before the base model is trained.

    Args:
        space: the space bound to the base model's layers.
        cost_fn: cost totals of a plan.
        limits: absolute limits per metric.
        budgets: the parsed budgets (a unitless absolute one gets a "did you mean" hint).
        base_cost: the base model's cost totals (named in the message).

    Raises:
        AutomcError: one line naming every budget that cannot be met.
    """
    costs = [cost_fn(space.to_plan(values)) for values in cheapest_corners(space)]
    cost = {m: min(float(c[m]) for c in costs) for m in costs[0] if all(m in c for c in costs)}
    by_metric = {b.metric: b for b in budgets}
    problems = []
    for metric, limit in limits.items():
        if metric not in cost:
            problems.append(f"budget on {metric} cannot be checked: the cost model gives no {metric}")
        elif float(cost[metric]) > float(limit):
            base = (base_cost or {}).get(metric)
            of_base = f", the base model {format_amount(metric, float(base))}" if base is not None else ""
            hint = fraction_hint(by_metric[metric]) if metric in by_metric else ""
            problems.append(
                f"budget {metric}={format_amount(metric, limit)} cannot be met: the smallest plan in the space "
                f"costs {format_amount(metric, float(cost[metric]))}{of_base}{hint}"
            )
    if problems:
        raise AutomcError("; ".join(problems) + f" (search space {space.source or '<space>'})")
