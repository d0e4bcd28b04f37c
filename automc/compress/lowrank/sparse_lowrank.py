"""Low-rank method ``sparse_lowrank``: sparse + low-rank decomposition by ADMM (Ma et al. 2018,
"A unified approximation framework for non-linear deep neural networks").

A layer's weight, as an ``m x n`` matrix ``W`` (``n = in * kh * kw`` for a conv), is split
into ``W ~ L + S`` with ``rank(L) <= r`` and ``||S||_0 <= s``. The replacement module computes
``lowrank(x) + sparse(x)``: ``lowrank`` is the same two-layer factor pair as the ``svd``
method (``<name>.lowrank.0``, ``<name>.lowrank.1``, bias on the second), ``sparse`` a
conv/linear of the original geometry, without bias, whose weight is ``S`` under a fixed
sparsity mask (``automc.compress.sparsity``; the mask keeps it sparse while fine-tuning).

Caveats, stated plainly:
    * This is the *weight-space* variant with hard constraints: it minimises
      ``||W - L - S||_F`` (nonconvex ADMM with projections onto the rank-``r`` and
      ``s``-sparse sets), not the paper's data-driven objective through the ReLU with the
      ``l2,1`` / nuclear-norm relaxation. The best iterate is returned; since the first
      iterate is the truncated SVD plus the largest residual entries, the error is never
      above plain SVD's at the same rank.
    * The sparse residual runs as a dense conv/linear: it saves storage with a sparse
      format (``automc.cost.formats.sparse_storage_bits``), not compute, unless the
      target has sparse kernels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from automc.compress.lowrank.svd import max_rank, svd_factorize
from automc.compress.sparsity import set_mask
from automc.cost import formats
from automc.errors import AutomcError


def _project_rank(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


def _project_sparse(matrix: torch.Tensor, nnz: int) -> torch.Tensor:
    out = torch.zeros_like(matrix)
    if nnz > 0:
        flat = matrix.flatten()
        idx = torch.topk(flat.abs(), min(nnz, flat.numel())).indices
        out.view(-1)[idx] = flat[idx]
    return out


def sparse_lowrank_decompose(
    matrix: torch.Tensor,
    rank: int,
    nnz: int,
    *,
    iterations: int = 60,
    rho: float = 1.0,
    rho_growth: float = 1.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, S)`` with ``rank(L) <= rank``, ``||S||_0 <= nnz`` and small ``||matrix - L - S||_F``.

    ADMM on ``min ||W - M||^2  s.t.  M = L + S, L in rank set, S in sparse set``:
    ``M = (2W + Lambda + rho (L + S)) / (2 + rho)``, ``L = P_rank(M - S - Lambda/rho)``,
    ``S = P_sparse(M - L - Lambda/rho)``, ``Lambda += rho (L + S - M)``, ``rho`` growing
    geometrically; then two alternating-projection polishing steps on ``W``. Computed in
    float64; returned in ``matrix``'s dtype.
    """
    if matrix.dim() != 2:
        raise AutomcError(f"expected a matrix, got shape {tuple(matrix.shape)}")
    if not 1 <= rank <= min(matrix.shape):
        raise AutomcError(f"rank {rank} outside 1..{min(matrix.shape)}")
    if not 0 <= nnz <= matrix.numel():
        raise AutomcError(f"sparse budget {nnz} outside 0..{matrix.numel()}")
    w = matrix.detach().double()
    low = _project_rank(w, rank)
    sparse = _project_sparse(w - low, nnz)
    best = (float(torch.linalg.norm(w - low - sparse)), low, sparse)
    dual = torch.zeros_like(w)
    for _ in range(iterations):
        m = (2 * w + dual + rho * (low + sparse)) / (2 + rho)
        low = _project_rank(m - sparse - dual / rho, rank)
        sparse = _project_sparse(m - low - dual / rho, nnz)
        dual = dual + rho * (low + sparse - m)
        rho *= rho_growth
        err = float(torch.linalg.norm(w - low - sparse))
        if err < best[0]:
            best = (err, low, sparse)
    _, low, sparse = best
    for _ in range(2):
        low = _project_rank(w - sparse, rank)
        sparse = _project_sparse(w - low, nnz)
    if float(torch.linalg.norm(w - low - sparse)) > best[0]:
        _, low, sparse = best
    return low.to(matrix.dtype), sparse.to(matrix.dtype)


class SparseLowRank(nn.Module):
    """``lowrank(x) + sparse(x)``: a low-rank factor pair plus a masked sparse residual layer."""

    def __init__(self, *, lowrank: nn.Module, sparse: nn.Module) -> None:
        super().__init__()
        self.lowrank = lowrank
        self.sparse = sparse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowrank(x) + self.sparse(x)


def _sparse_twin(module: nn.Module) -> nn.Module:
    twin = copy.deepcopy(module)
    twin.register_parameter("bias", None)
    for hook_dict in (twin._forward_pre_hooks, twin._forward_hooks):
        hook_dict.clear()
    if "weight_mask" in twin._buffers:
        del twin._buffers["weight_mask"]
    return twin


@dataclass(frozen=True)
class SparseLowRankMethod:
    """Low-rank method ``sparse_lowrank``: ``method(module, rank) -> SparseLowRank``.

    Attributes:
        density: fraction of the layer's weights kept in the sparse residual.
        iterations: ADMM iterations.
    """

    density: float = formats.SPARSE_LOWRANK_DENSITY
    iterations: int = 60

    def nnz(self, n_weights: int) -> int:
        return int(round(self.density * n_weights))

    def __call__(self, module: nn.Module, rank: int) -> nn.Module:
        limit = max_rank(module)
        if not 1 <= rank <= limit:
            raise AutomcError(f"rank {rank} outside 1..{limit} for {type(module).__name__}")
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise AutomcError("grouped and depthwise convolutions cannot be factorised")
        weight = cast(torch.Tensor, module.weight).detach()
        matrix = weight.reshape(weight.shape[0], -1)
        low, sparse = sparse_lowrank_decompose(
            matrix, rank, self.nnz(matrix.numel()), iterations=self.iterations
        )
        carrier = _sparse_twin(module)
        with torch.no_grad():
            cast(torch.Tensor, carrier.weight).copy_(low.reshape(weight.shape))
        carrier.bias = module.bias
        lowrank = svd_factorize(carrier, rank)
        residual = _sparse_twin(module)
        with torch.no_grad():
            cast(torch.Tensor, residual.weight).copy_(sparse.reshape(weight.shape))
        set_mask(residual, (sparse != 0).reshape(weight.shape))
        return SparseLowRank(lowrank=lowrank, sparse=residual)
