"""Warm starts: plans a controller evaluates first, before its own proposals.

* ``uniform`` (the default of ``optuna-tpe``, ``optuna-nsga2`` and ``amc``): what a user
  would try by hand, one keep ratio for every pruned group: the largest ratio on the
  space's grid whose plan meets every budget (priced by the controller's ``cost_fn``),
  every other dimension at identity; then that plan *filled* to the budget: groups raised
  one grid step at a time, in execution order and round after round, while the budgets
  still hold (the grid's step leaves part of a budget unused: on resnet20 the uniform
  keep 0.5 uses 25% of the MACs under a 30% budget). Where the space's bit-width grids
  hold 8, both again with every layer at 8-bit weights and activations (the largest ratio
  that meets the budgets at int8, which a latency, size or energy budget rewards). At most
  four distinct plans, and none without budgets and a ``cost_fn``: the budget places them.
  Random sampling of per-group ratios rarely lands near a tight budget (TPE's first 10
  trials are random), so without these a short search may see no feasible plan at all.
* ``global``: what Torch-Pruning's global pruning (``global_pruning=True``,
  ``MagnitudeImportance(p=1)``) would choose: every channel of every pruned group ranked
  by that importance in the base model (:func:`automc.compress.prune.group_importance`,
  from the pipeline's ``Evaluator``), one threshold for all groups, each group's keep
  ratio the share of its channels above it (the space's nearest grid value), the lowest
  threshold whose plan meets every budget; then filled to the budget as ``uniform``'s,
  and the same at int8 where the space has 8 bits. The per-group ratios a user would get
  from that one-liner, as plans the search scores and can improve on.
* ``ilp``: the ``ilp`` solver's sweep (:func:`automc.search.solver.solver_values`), after
  scoring one sensitivity probe per value of every dimension.

A spec names one or several joined by ``+`` (``uniform+global+ilp``), evaluated in that order,
each distinct plan once; ``none`` turns the warm start off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from automc.errors import AutomcError

if TYPE_CHECKING:
    from automc.plan import CompressionPlan
    from automc.search.base import Controller, Evaluate
    from automc.space import BoundSpace, Param

WARM_STARTS = ("uniform", "global", "ilp")
"""Warm starts a spec can name."""
NONE = "none"


def parse_warm_start(spec: str | None) -> tuple[str, ...]:
    """The warm starts a spec names, in order (``()`` for ``None`` or ``none``).

    Raises:
        AutomcError: an unknown or repeated name, in one line.
    """
    if spec is None or spec == NONE:
        return ()
    parts = tuple(p.strip() for p in str(spec).split("+"))
    bad = [p for p in parts if p not in WARM_STARTS]
    if bad or len(set(parts)) != len(parts):
        raise AutomcError(
            f"unknown warm start {spec!r} (known: {', '.join(WARM_STARTS)}, joined by '+' "
            f"as in uniform+ilp, or {NONE})"
        )
    return parts


def warm_start_values(controller: Controller, evaluate: Evaluate, n: int) -> list[dict[str, Any]]:
    """The first (at most ``n``) points ``controller`` evaluates, from its ``warm_start`` option."""
    out: list[dict[str, Any]] = []
    for kind in parse_warm_start(controller.options.get("warm_start")):
        if kind == "uniform":
            got = uniform_values(controller.space, controller.budgets, controller.cost_fn)
        elif kind == "global":
            importance = getattr(evaluate, "channel_importance", None)
            if importance is None:
                raise AutomcError(
                    f"warm start 'global' of controller {controller.name!r}: needs the channel "
                    "importance of the base model, from an evaluate with channel_importance() "
                    "(the pipeline's Evaluator)"
                )
            got = global_values(controller.space, controller.budgets, controller.cost_fn, importance())
        else:
            from automc.search.solver import solver_values

            got = solver_values(controller, evaluate, n)
        out.extend(v for v in got if v not in out)
    return out[:n]


def _int8_values(space: BoundSpace) -> dict[str, Any]:
    """Every bit-width param whose grid holds 8 (and whose identity is not 8) at 8."""
    identity = space.identity_values()
    return {
        p.name: 8
        for p in space.params
        if p.field in ("w_bits", "a_bits") and any(v == 8 for v in p.grid()) and identity[p.name] != 8
    }


def _meets(
    space: BoundSpace,
    budgets: Mapping[str, float],
    cost_fn: Callable[[CompressionPlan], Mapping[str, float]],
) -> Callable[[Mapping[str, Any]], bool]:
    def meets(values: Mapping[str, Any]) -> bool:
        total = cost_fn(space.to_plan(values))
        return all(float(total[m]) <= limit * (1 + 1e-9) for m, limit in budgets.items())

    return meets


def uniform_values(
    space: BoundSpace,
    budgets: Mapping[str, float],
    cost_fn: Callable[[CompressionPlan], Mapping[str, float]] | None,
) -> list[dict[str, Any]]:
    """The uniform plans (see the module docstring): float, then int8 where the space has 8 bits."""
    if not budgets or cost_fn is None:
        return []
    int8 = _int8_values(space)
    levels = sorted({float(v) for p in space.params if p.field == "keep" for v in p.grid()}, reverse=True)
    meets = _meets(space, budgets, cost_fn)
    keep = [p for p in space.params if p.field == "keep"]
    out: list[dict[str, Any]] = []
    for bits in ({}, int8) if int8 else ({},):
        for level in levels or [1.0]:
            values = {**space.uniform_values(level), **bits}
            if meets(values):
                for plan in (values, _filled(values, keep, meets)):
                    if plan not in out:
                        out.append(plan)
                break
    return out


def global_values(
    space: BoundSpace,
    budgets: Mapping[str, float],
    cost_fn: Callable[[CompressionPlan], Mapping[str, float]] | None,
    importance: Mapping[int, Sequence[float]],
) -> list[dict[str, Any]]:
    """The global-threshold plans (see the module docstring): float, then int8 where the space
    has 8 bits; ``importance``: group id -> per-channel scores (mean 1 per group)."""
    keep = [p for p in space.params if p.field == "keep"]
    if not budgets or cost_fn is None or not keep:
        return []
    specs = {s.name: s for s in space.layers}
    scores = {p.name: importance[specs[p.layers[0]].group] for p in keep}
    thresholds = sorted({v for s in scores.values() for v in s})
    meets = _meets(space, budgets, cost_fn)

    def at(threshold: float, bits: Mapping[str, Any]) -> dict[str, Any]:
        values = {**space.identity_values(), **bits}
        for p in keep:
            s = scores[p.name]
            values[p.name] = p.nearest(sum(v >= threshold for v in s) / len(s))
        return values

    int8 = _int8_values(space)
    out: list[dict[str, Any]] = []
    for bits in ({}, int8) if int8 else ({},):
        # thresholds[i] keeps the channels scoring at least it: the cost falls as i grows
        lo, hi = 0, len(thresholds) - 1
        if not meets(at(thresholds[hi], bits)):
            continue
        while lo < hi:
            mid = (lo + hi) // 2
            if meets(at(thresholds[mid], bits)):
                hi = mid
            else:
                lo = mid + 1
        plan = _filled(at(thresholds[lo], bits), keep, meets)
        if plan not in out:
            out.append(plan)
    return out


def _filled(
    values: Mapping[str, Any], keep: Sequence[Param], meets: Callable[[Mapping[str, Any]], bool]
) -> dict[str, Any]:
    """``values`` with its keep params raised one grid step at a time, in order and round after
    round, while ``meets`` holds."""
    out = dict(values)
    raised = True
    while raised:
        raised = False
        for p in keep:
            grid = p.grid()
            i = grid.index(out[p.name]) if out[p.name] in grid else len(grid) - 1
            if i + 1 < len(grid):
                trial = {**out, p.name: grid[i + 1]}
                if meets(trial):
                    out, raised = trial, True
    return out
