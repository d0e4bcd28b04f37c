"""Quantizers asymmetric, per-tensor, k-means sharing, PQ, RQ; storage against the formulas of cost.formats."""

from __future__ import annotations

import math

import pytest
import torch

from automc.compress import quantizers
from automc.cost import formats
from automc.errors import AutomcError

torch.set_num_threads(1)
QUANTIZERS = ("asymmetric", "uniform_per_tensor", "kmeans", "pq", "rq")


@pytest.fixture()
def weight() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(32, 8, 3, 3) * torch.linspace(0.1, 1.0, 32).view(-1, 1, 1, 1)


def rel_error(w: torch.Tensor, q: torch.Tensor) -> float:
    return float(((w - q) ** 2).sum() / (w**2).sum())


def test_registered_and_described():
    for name in QUANTIZERS:
        assert name in quantizers.names()
        assert quantizers.describe()[name]
    with pytest.raises(AutomcError, match="unknown weight quantizer"):
        quantizers.get("kmeanz")


@pytest.mark.parametrize("name", QUANTIZERS)
def test_more_bits_lower_error(name, weight):
    q = quantizers.get(name)
    errors = [rel_error(weight, q(weight, bits)) for bits in (2, 3, 4)]
    assert errors[0] > errors[1] > errors[2]
    out = q(weight, 3)
    assert out.shape == weight.shape and out.dtype == weight.dtype


@pytest.mark.parametrize("name", QUANTIZERS)
def test_gradient_passes_straight_through(name, weight):
    w = weight.clone().requires_grad_(True)
    quantizers.get(name)(w, 3).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_kmeans_uses_k_shared_values_and_deep_compression_storage(weight):
    q = quantizers.get("kmeans")
    for bits in (1, 2, 4):
        out = q(weight, bits)
        assert out.unique().numel() <= 2**bits
    n = weight.numel()
    for bits in (2, 4, 8):
        k = 2**bits
        bits_stored = q.storage_bits(weight.shape, bits)
        assert bits_stored == n * math.log2(k) + k * 32
        rate = n * 32 / bits_stored
        assert rate == pytest.approx(
            n * 32 / (n * math.log2(k) + k * 32)
        )  # Deep Compression's r = nb / (n log2 k + kb)


def test_kmeans_beats_uniform_at_same_bits(weight):
    # weight sharing adapts to the value distribution; a per-tensor grid does not
    assert rel_error(weight, quantizers.get("kmeans")(weight, 3)) < rel_error(
        weight, quantizers.get("uniform_per_tensor")(weight, 3)
    )


def test_asymmetric_keeps_zero_and_beats_symmetric_on_skewed_rows():
    torch.manual_seed(1)
    w = torch.rand(8, 50) + 0.5  # all positive: a symmetric grid wastes half its levels
    w[:, 0] = 0.0
    out = quantizers.get("asymmetric")(w, 4)
    assert torch.all(out[:, 0] == 0)
    assert rel_error(w, out) < rel_error(w, quantizers.get("uniform")(w, 4))
    assert quantizers.get("asymmetric").storage_bits((8, 50), 4) == 400 * 4 + 8 * (32 + 4)
    assert quantizers.get("uniform_per_tensor").storage_bits((8, 50), 4) == 400 * 4 + 32


def test_pq_codebooks_and_storage(weight):
    q = quantizers.get("pq")
    out = q(weight, 2).reshape(32, -1)
    for block in torch.split(out, 4, dim=1):
        assert torch.unique(block, dim=0).shape[0] <= 4
    n_cols = 8 * 9
    s = math.ceil(n_cols / 4)
    assert q.storage_bits(weight.shape, 2) == 32 * s * 2 + 4 * n_cols * 32
    with pytest.raises(AutomcError, match="output channels"):
        q(torch.randn(8, 16), 4)  # 16 codewords, 8 rows


def test_rq_stages_and_storage(weight):
    q = quantizers.get("rq")
    one_stage = type(q)(stages=1)
    assert rel_error(weight, q(weight, 3)) < rel_error(weight, one_stage(weight, 3))
    v = math.ceil(weight.numel() / 4)
    assert q.storage_bits(weight.shape, 3) == 2 * (v * 3 + 8 * 4 * 32)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_bad_bits(name, weight):
    q = quantizers.get(name)
    for bits in (0, 9, 2.5, True):
        with pytest.raises(AutomcError, match="bits"):
            q(weight, bits)


def test_too_many_codewords():
    with pytest.raises(AutomcError, match="codewords"):
        quantizers.get("kmeans")(torch.randn(2, 3), 4)
    with pytest.raises(AutomcError, match="codewords"):
        quantizers.get("rq")(torch.randn(2, 8), 3)


def test_storage_formulas():
    assert (
        formats.index_bits_for(1) == 0 and formats.index_bits_for(5) == 3 and formats.index_bits_for(256) == 8
    )
    assert formats.uniform_storage_bits(100, 32) == 3200
    assert formats.binary_storage_bits(100, n_groups=4) == 100 + 128
    assert formats.pq_storage_bits(10, 12, 3, 16) == 10 * 3 * 4 + 16 * 12 * 32
    assert formats.rq_storage_bits(50, 4, 8, 2) == 2 * (50 * 3 + 8 * 4 * 32)
