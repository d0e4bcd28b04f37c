"""Pareto fronts, hypervolume and winner selection (torch-free, numpy only).

Directions are ``"maximize"`` / ``"minimize"`` per objective. Internally every point is
turned into a minimisation problem (maximised objectives are negated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _as_min(points: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    arr = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return arr * signs


def non_dominated(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points on the first (non-dominated) front; non-finite points never are."""
    if not len(points):
        return []
    p = _as_min(points, directions)
    finite = np.all(np.isfinite(p), axis=1)
    out = []
    for i in range(len(p)):
        if not finite[i]:
            continue
        others = p[finite]
        dominated = np.any(np.all(others <= p[i], axis=1) & np.any(others < p[i], axis=1))
        if not dominated:
            out.append(i)
    return out


def fronts(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[list[int]]:
    """Non-dominated sorting: a list of fronts (lists of indices), best first."""
    remaining = list(range(len(points)))
    result: list[list[int]] = []
    while remaining:
        sub = [points[i] for i in remaining]
        first = [remaining[j] for j in non_dominated(sub, directions)]
        if not first:
            break
        result.append(first)
        taken = set(first)
        remaining = [i for i in remaining if i not in taken]
    return result


def normalise(
    points: Sequence[Sequence[float]], directions: Sequence[str], bounds: Sequence[tuple[float, float]]
) -> np.ndarray:
    """Map points into a minimisation unit box: 0 = best bound, 1 = worst bound.

    ``bounds`` gives ``(best, worst)`` per objective in the objective's own units
    (e.g. accuracy ``(1.0, 0.0)``, MACs ``(0, base_macs)``).
    """
    arr = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    out = np.empty_like(arr)
    for j, (best, worst) in enumerate(bounds):
        span = worst - best
        out[:, j] = (arr[:, j] - best) / span if span else 0.0
    return out


def hypervolume(points_min: np.ndarray, ref: Sequence[float]) -> float:
    """Hypervolume dominated by minimisation points w.r.t. ``ref`` (points beyond ref ignored).

    Exact: a sweep in 2-D, recursive slicing (HSO) in higher dimensions; fine for the
    few hundred points of a search.
    """
    ref_arr = np.asarray(ref, dtype=float)
    pts = np.asarray(points_min, dtype=float).reshape(-1, len(ref_arr))
    pts = pts[np.all(np.isfinite(pts), axis=1) & np.all(pts < ref_arr, axis=1)]
    if not len(pts):
        return 0.0
    return float(_hv(pts, ref_arr))


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    if pts.shape[1] == 2:
        order = np.argsort(pts[:, 0])
        volume, best_y = 0.0, ref[1]
        for x, y in pts[order]:
            if y < best_y:
                volume += (ref[0] - x) * (best_y - y)
                best_y = y
        return volume
    order = np.argsort(pts[:, -1])
    pts = pts[order]
    volume = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = upper - pts[i, -1]
        if depth > 0:
            slab = pts[: i + 1, :-1]
            keep = non_dominated(slab.tolist(), ["minimize"] * slab.shape[1])
            volume += depth * _hv(slab[keep], ref[:-1])
    return volume


def select_spread(
    points: Sequence[Sequence[float]], directions: Sequence[str], k: int, *, min_distance: float = 0.02
) -> list[int]:
    """Pick up to ``k`` indices spread along the given (front) points.

    Greedy farthest-point selection in the min-max normalised objective space, starting
    from the point best in the first objective; points closer than ``min_distance``
    (normalised) to an already chosen one are near-duplicates and never picked.
    """
    n = len(points)
    if n == 0 or k <= 0:
        return []
    p = _as_min(points, directions)
    lo, hi = p.min(axis=0), p.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    z = (p - lo) / span
    chosen = [int(np.argmin(z[:, 0]))]
    while len(chosen) < min(k, n):
        dist = np.min(np.linalg.norm(z[:, None, :] - z[None, chosen, :], axis=2), axis=1)
        dist[chosen] = -math.inf
        nxt = int(np.argmax(dist))
        if dist[nxt] < min_distance:
            break
        chosen.append(nxt)
    return chosen
