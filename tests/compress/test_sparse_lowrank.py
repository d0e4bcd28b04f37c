"""Sparse + low-rank ADMM decomposition and its ``sparse_lowrank`` low-rank method."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from automc.compress import lowrank
from automc.compress.lowrank.sparse_lowrank import (
    SparseLowRank,
    SparseLowRankMethod,
    sparse_lowrank_decompose,
)
from automc.cost import formats
from automc.errors import AutomcError

torch.set_num_threads(1)


def svd_error(w: torch.Tensor, rank: int) -> float:
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    return float(torch.linalg.norm(w.double() - (u[:, :rank] * s[:rank]) @ vh[:rank]))


def test_beats_svd_at_same_rank():
    torch.manual_seed(0)
    for shape, rank in (((24, 40), 4), ((16, 72), 6), ((10, 10), 1)):
        w = torch.randn(*shape)
        nnz = int(0.1 * w.numel())
        low, sparse = sparse_lowrank_decompose(w, rank, nnz)
        assert int(torch.linalg.matrix_rank(low.double(), rtol=1e-5)) <= rank
        assert int(torch.count_nonzero(sparse)) <= nnz
        assert float(torch.linalg.norm(w.double() - low.double() - sparse.double())) < svd_error(w, rank)


def test_recovers_planted_low_rank_plus_sparse():
    torch.manual_seed(1)
    low_true = torch.randn(30, 3) @ torch.randn(3, 40)
    sparse_true = torch.zeros(30, 40)
    idx = torch.randperm(1200)[:40]
    sparse_true.view(-1)[idx] = 10 * torch.randn(40)
    w = low_true + sparse_true
    low, sparse = sparse_lowrank_decompose(w, 3, 40, iterations=150)
    rel = float(torch.linalg.norm(w - low - sparse) / torch.linalg.norm(w))
    assert rel < 0.05
    assert svd_error(w, 3) / float(torch.linalg.norm(w)) > 5 * rel


def test_bad_arguments():
    w = torch.randn(4, 5)
    with pytest.raises(AutomcError, match="rank"):
        sparse_lowrank_decompose(w, 5, 2)
    with pytest.raises(AutomcError, match="budget"):
        sparse_lowrank_decompose(w, 2, 21)
    with pytest.raises(AutomcError, match="rank"):
        SparseLowRankMethod()(nn.Linear(5, 4), 0)
    with pytest.raises(AutomcError, match="depthwise"):
        SparseLowRankMethod()(nn.Conv2d(4, 4, 3, groups=4), 1)


def _layer(kind: str) -> nn.Module:
    return nn.Conv2d(6, 8, 3, stride=2, padding=1) if kind == "conv" else nn.Linear(20, 12)


def _effective_weight(module: SparseLowRank) -> torch.Tensor:
    """``second @ first + residual`` as an ``m x (n kh kw)`` matrix: the weight ``module`` applies."""
    first, second = module.lowrank[0].weight.detach(), module.lowrank[1].weight.detach()
    low = second.reshape(second.shape[0], -1).double() @ first.reshape(first.shape[0], -1).double()
    return low + module.sparse.weight.detach().reshape(low.shape).double()


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_module_equals_low_rank_plus_sparse_weight(kind):
    torch.manual_seed(2)
    layer = _layer(kind)
    method = lowrank.get("sparse_lowrank")
    assert "sparse_lowrank" in lowrank.names()
    module = method(layer, 3)
    assert isinstance(module, SparseLowRank)
    x = torch.randn(2, 6, 9, 9) if kind == "conv" else torch.randn(5, 20)
    w = layer.weight.detach()
    low, sparse = sparse_lowrank_decompose(w.reshape(w.shape[0], -1), 3, method.nnz(w.numel()))
    merged = copy.deepcopy(layer)
    with torch.no_grad():
        merged.weight.copy_((low + sparse).reshape(w.shape))
    assert torch.allclose(module(x), merged(x), atol=1e-4)
    matrix = w.reshape(w.shape[0], -1)
    assert float(torch.linalg.norm(matrix.double() - _effective_weight(module))) < svd_error(matrix, 3)
    assert int(torch.count_nonzero(module.sparse.weight)) <= method.nnz(w.numel())


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_factor_shapes_are_the_cost_models(kind):
    layer = _layer(kind)
    module = lowrank.get("sparse_lowrank")(layer, 3)
    w = layer.weight
    factors = formats.lowrank_factors(
        "sparse_lowrank",
        in_features=int(w.shape[1]),
        out_channels=int(w.shape[0]),
        kernel_area=int(w[0, 0].numel()),
        rank=3,
    )
    built = [module.lowrank[0].weight, module.lowrank[1].weight, module.sparse.weight]
    assert [f.weights for f in factors] == [t.numel() for t in built]
    assert [f.out_features for f in factors] == [t.shape[0] for t in built]
    assert factors[2].density == SparseLowRankMethod().density


def test_residual_stays_sparse_while_training():
    torch.manual_seed(3)
    module = SparseLowRankMethod(density=0.1)(nn.Linear(16, 8), 2)
    support = module.sparse.weight.detach() != 0
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        module(torch.randn(4, 16)).pow(2).sum().backward()
        opt.step()
    module(torch.randn(1, 16))
    assert torch.equal(module.sparse.weight.detach() != 0, support)
    clone = copy.deepcopy(module)
    assert torch.equal(clone.sparse.weight_mask, module.sparse.weight_mask)
