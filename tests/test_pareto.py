import itertools
import random

import numpy as np
import pytest

from automc.pareto import fronts, hypervolume, non_dominated, normalise, select_spread

DIRS = ["maximize", "minimize"]


def brute_front(points, dirs):
    sign = [(-1 if d == "maximize" else 1) for d in dirs]
    p = [[v * s for v, s in zip(pt, sign)] for pt in points]
    out = []
    for i, a in enumerate(p):
        if not any(all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a)) for b in p):
            out.append(i)
    return out


def test_front_matches_brute_force():
    rng = random.Random(0)
    for _ in range(20):
        pts = [[rng.random(), rng.random()] for _ in range(30)]
        assert non_dominated(pts, DIRS) == brute_front(pts, DIRS)


def test_nan_points_never_on_front():
    pts = [[float("nan"), 1.0], [0.5, 0.5], [float("inf"), 0.0]]
    assert non_dominated(pts, DIRS) == [1]


def test_fronts_partition_all_points():
    pts = [[0.9, 10], [0.8, 5], [0.85, 12], [0.7, 2], [0.9, 9]]
    fs = fronts(pts, DIRS)
    assert sorted(itertools.chain(*fs)) == list(range(len(pts)))
    assert fs[0] == [1, 3, 4]


def test_hypervolume_closed_forms():
    assert hypervolume(np.array([[0.5, 0.5]]), [1, 1]) == pytest.approx(0.25)
    assert hypervolume(np.array([[0.2, 0.6], [0.6, 0.2]]), [1, 1]) == pytest.approx(0.32 + 0.32 - 0.16)
    # two boxes in 3-D with overlap 0.5*0.1*0.1
    assert hypervolume(np.array([[0.5, 0.5, 0.5], [0.2, 0.9, 0.9]]), [1, 1, 1]) == pytest.approx(0.128)
    assert hypervolume(np.array([[1.5, 0.1]]), [1, 1]) == 0.0


def test_hypervolume_monte_carlo_3d():
    rng = np.random.default_rng(1)
    pts = rng.random((12, 3))
    samples = rng.random((200_000, 3))
    dominated = np.zeros(len(samples), dtype=bool)
    for p in pts:
        dominated |= np.all(samples >= p, axis=1)
    assert hypervolume(pts, [1, 1, 1]) == pytest.approx(dominated.mean(), abs=0.01)


def test_normalise_best_zero_worst_one():
    z = normalise([[1.0, 0.0], [0.0, 100.0]], DIRS, [(1.0, 0.0), (0.0, 100.0)])
    assert z.tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_select_spread_skips_near_duplicates_and_spreads():
    pts = [[0.9, 100.0], [0.9, 100.01], [0.5, 10.0], [0.7, 50.0]]
    chosen = select_spread(pts, DIRS, 3)
    assert chosen[0] == 0
    assert 1 not in chosen and set(chosen) == {0, 2, 3}
