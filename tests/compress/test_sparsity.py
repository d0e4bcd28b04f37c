"""Unstructured magnitude pruning: masks, persistence, storage formula."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from automc.compress.sparsity import (
    apply_sparsity,
    density,
    exact_entries,
    expected_entries,
    restore_masks,
    sparse_storage_bytes,
)
from automc.cost.formats import sparse_entries, sparse_nnz, sparse_storage_bits
from automc.errors import AutomcError

torch.set_num_threads(1)


def test_zeroes_exactly_the_smallest_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3)
    before = conv.weight.detach().clone()
    apply_sparsity(conv, 0.7)
    n = before.numel()
    n_zero = n - sparse_nnz(n, 0.7)
    assert int((conv.weight == 0).sum()) == n_zero
    threshold = before.abs().flatten().sort().values[n_zero - 1]
    assert torch.all(before.abs()[conv.weight == 0] <= threshold)
    assert torch.equal(conv.weight[conv.weight != 0], before[conv.weight != 0])
    assert density(conv) == pytest.approx(1 - n_zero / n)


def test_mask_survives_training_deepcopy_and_state_dict():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    apply_sparsity(model, 0.5)
    zeros = [layer.weight.detach() == 0 for layer in (model[0], model[2])]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 10)).pow(2).sum().backward()
        opt.step()
    model(torch.randn(1, 10))
    for layer, z in zip((model[0], model[2]), zeros):
        assert torch.all(layer.weight[z] == 0)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone[0].weight.add_(1.0)
    clone(torch.randn(1, 10))
    assert torch.all(clone[0].weight[zeros[0]] == 0)
    assert torch.all(model[0].weight[~zeros[0]] != 1.0)  # the copy's hook did not touch the original
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert "0.weight_mask" in state and "2.weight_mask" in state
    fresh = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    restore_masks(fresh, state)
    fresh.load_state_dict(state)
    x = torch.randn(4, 10)
    assert torch.equal(fresh(x), model(x))
    with torch.no_grad():
        fresh[0].weight.add_(1.0)
    fresh(x)
    assert torch.all(fresh[0].weight[zeros[0]] == 0)


def test_sequential_factor_layers_pruned_separately_and_masks_only_grow():
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 6, 1))
    apply_sparsity(seq, 0.5)
    for layer in seq:
        assert int((layer.weight == 0).sum()) == layer.weight.numel() - sparse_nnz(layer.weight.numel(), 0.5)
    first_zeros = seq[0].weight.detach() == 0
    apply_sparsity(seq, 0.75)
    assert torch.all(seq[0].weight[first_zeros] == 0)
    assert int((seq[0].weight == 0).sum()) == seq[0].weight.numel() - sparse_nnz(seq[0].weight.numel(), 0.75)


def test_bad_input():
    for bad in (1.0, -0.1, True, "0.5"):
        with pytest.raises(AutomcError, match="sparsity"):
            apply_sparsity(nn.Linear(2, 2), bad)
    with pytest.raises(AutomcError, match="no conv or linear"):
        apply_sparsity(nn.ReLU(), 0.5)
    layer = nn.Linear(2, 2)
    assert apply_sparsity(layer, 0.0) is layer and not hasattr(layer, "weight_mask")


def test_storage_formula_matches_counted_entries():
    torch.manual_seed(2)
    for sparsity, index_bits in ((0.5, 4), (0.9, 4), (0.95, 3), (0.99, 5)):
        conv = nn.Conv2d(64, 64, 3)
        apply_sparsity(conv, sparsity)
        exact = exact_entries(conv.weight, index_bits=index_bits)
        expected = expected_entries(conv.weight, index_bits=index_bits)
        assert abs(exact - expected) / exact < 0.03
        n = conv.weight.numel()
        assert expected == sparse_entries(n, sparse_nnz(n, sparsity), index_bits=index_bits)
        bits = sparse_storage_bits(n, 1 - sparsity, 8, index_bits=index_bits)
        assert bits == expected * (8 + index_bits)
        assert sparse_storage_bytes(n, 1 - sparsity, 8, index_bits=index_bits) == math.ceil(bits / 8)


def test_storage_edge_cases():
    assert sparse_storage_bits(100, 1.0, 8) == 800  # dense: no indices
    assert sparse_entries(100, 0) == 0
    # one non-zero at the end of 100 weights with 4-bit gaps needs 100 // 16 = 6 fillers
    w = torch.zeros(100)
    w[-1] = 1.0
    assert exact_entries(w, index_bits=4) == 1 + 99 // 16
    with pytest.raises(AutomcError, match="density"):
        sparse_storage_bits(100, 0.0, 8)
