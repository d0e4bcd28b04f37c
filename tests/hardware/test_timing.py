"""The timing protocol: BN folding, interleaved timing, thread pinning that leaves the caller's count alone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from automc import models
from automc.hardware import (
    TimingProtocol,
    fold_bn,
    measure_as_profiled,
    measure_model_ms,
    measure_models_ms,
    pinned_threads,
    time_callables,
)
from automc.resources import find_profile
from automc.schema.hw_profile import load_hw_profile

torch.set_num_threads(1)

THREADS_SEEN: list[int] = []


class ThreadProbe(nn.Module):
    """Records the intra-op thread count each forward pass runs with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        THREADS_SEEN.append(torch.get_num_threads())
        return x + 1


def test_fold_bn_keeps_outputs_and_removes_batchnorm() -> None:
    torch.manual_seed(0)
    model = models.create("test_residual").eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics so that folding matters
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 16, 16)
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4)


def test_time_callables_orders_cheap_and_expensive_work() -> None:
    a = torch.randn(192, 192)
    cheap, costly = time_callables(
        [lambda: a.add(1.0), lambda: a @ a @ a], TimingProtocol(warmup=2, repeats=7, sample_ms=0.2)
    )
    assert cheap.count == 7 and costly.count == 7
    assert 0 < cheap.median_ms < costly.median_ms
    assert cheap.spread_ms >= 0


def test_measure_model_ms_is_positive() -> None:
    torch.manual_seed(0)
    model = models.create("test_tiny").eval()
    assert measure_model_ms(model, torch.randn(1, 3, 8, 8), warmup=1, repeats=3) > 0


def test_measure_models_ms_times_each_model_in_one_run() -> None:
    x = torch.randn(1, 8, 16, 16)
    small = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)).eval()
    large = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=1) for _ in range(40)]).eval()
    fast, slow = measure_models_ms([small, large], x, threads=1, warmup=1, repeats=5, statistic="min")
    assert 0 < fast < slow


def test_pinned_threads_restores_the_previous_count_even_after_an_error() -> None:
    before = torch.get_num_threads()
    with pinned_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"), pinned_threads(before + 1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with pinned_threads(None):
        assert torch.get_num_threads() == before


def test_measure_models_ms_times_with_the_given_threads_and_restores_the_count() -> None:
    before = torch.get_num_threads()
    THREADS_SEEN.clear()
    (ms,) = measure_models_ms([ThreadProbe()], torch.randn(1, 4), threads=before + 1, warmup=1, repeats=3)
    assert ms > 0
    assert THREADS_SEEN and set(THREADS_SEEN) == {before + 1}
    assert torch.get_num_threads() == before


def test_measure_as_profiled_uses_the_profiles_threads_and_restores_the_count() -> None:
    shipped = load_hw_profile(find_profile("cpu-x86-2core-torch"))
    before = torch.get_num_threads()
    profile = replace(
        shipped,
        runtime=replace(shipped.runtime, threads=before + 1),
        measurement=replace(shipped.measurement, warmup=1, repeats=3),
    )
    THREADS_SEEN.clear()
    (ms,) = measure_as_profiled(profile, [ThreadProbe()], torch.randn(1, 4))
    assert ms > 0
    assert THREADS_SEEN and set(THREADS_SEEN) == {before + 1}
    assert torch.get_num_threads() == before
