"""scripts/bench_proxy.py: the ground truth's own agreement, between two seeds and between halves of the seeds."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_proxy")


def _rows(seeds: int, noise: float) -> list[dict[str, float]]:
    rng = random.Random(0)
    rows = []
    for i in range(40):
        row = {}
        for s in range(seeds):
            acc = i / 40 + rng.gauss(0, noise)
            row[f"ft_acc_{s}"], row[f"ft_loss_{s}"] = acc, 1 - acc
        rows.append(row)
    return rows


def test_split_half_agreement_averages_out_seed_noise(bench) -> None:
    assert bench.seed_agreement(_rows(1, 0.1), 1) is None
    two = bench.seed_agreement(_rows(2, 0.1), 2)
    assert "split_half" not in two and 0 < two["kendall"] < 1
    four = bench.seed_agreement(_rows(4, 0.1), 4)
    assert four["split_half"]["kendall"] > four["kendall"]
    exact = bench.seed_agreement(_rows(4, 0.0), 4)
    assert exact["split_half"]["kendall"] == pytest.approx(1.0) and exact["split_half"][
        "spearman_loss"
    ] == pytest.approx(1.0)


def test_a_stored_candidate_is_the_same_plan_up_to_a_near_tie_of_its_vanilla_accuracy(bench) -> None:
    stored = [{"macs_ratio": 0.15, "vanilla_acc": 0.2636, "ft_acc": 0.8}]
    assert bench.stored_row(stored, 0, {"macs_ratio": 0.15, "vanilla_acc": 0.2634}, 5000)["ft_acc"] == 0.8
    with pytest.raises(SystemExit, match="candidate 1 is not the same plan"):
        bench.stored_row(stored, 0, {"macs_ratio": 0.15, "vanilla_acc": 0.2630}, 5000)
    with pytest.raises(SystemExit, match="candidate 1 is not the same plan"):
        bench.stored_row(stored, 0, {"macs_ratio": 0.16, "vanilla_acc": 0.2636}, 5000)
