"""Codebook quantizers: ``kmeans`` (Deep Compression weight sharing), ``pq`` and ``rq``.

The clustering runs Lloyd iterations from a deterministic initialisation (linear in value
for k-means, evenly spaced samples for the vector quantizers); these are post-training
quantizers, not Deep Compression's trained weight sharing. For ``pq`` and ``rq`` the
plan's ``w_bits`` is the *index* width per sub-vector (``k = 2**w_bits`` codewords), so
the bits per weight are ``w_bits / dim``. Storage is given by :mod:`automc.cost.formats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from automc.compress.quantizers import check_bits, straight_through, weight_rows
from automc.cost import formats
from automc.errors import AutomcError

__all__ = ["LLOYD_ITERS", "KMeans", "ProductQuantizer", "ResidualQuantizer", "lloyd"]

LLOYD_ITERS = 20


def lloyd(
    points: torch.Tensor, centroids: torch.Tensor, *, iters: int = LLOYD_ITERS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on ``points`` (``v x d``) from ``centroids`` (``k x d``).

    Returns ``(centroids, assignment)``. An empty cluster keeps its previous centroid.
    """
    centroids = centroids.clone()
    assign = torch.cdist(points, centroids).argmin(dim=1)
    for _ in range(iters):
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=centroids.shape[0]).to(points.dtype).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        new_assign = torch.cdist(points, centroids).argmin(dim=1)
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    return centroids, assign


def _spread_init(points: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` evenly spaced points of ``points`` sorted by their first principal direction."""
    centred = points - points.mean(dim=0, keepdim=True)
    if points.shape[1] > 1 and float(centred.abs().max()) > 0:
        direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
        key = centred @ direction
    else:
        key = centred[:, 0]
    order = torch.argsort(key, stable=True)
    picks = torch.linspace(0, points.shape[0] - 1, k).round().long()
    return points[order[picks]].clone()


def _check_k(name: str, k: int, n_points: int, what: str) -> None:
    if k > n_points:
        raise AutomcError(
            f"quantizer {name!r}: {k} codewords but only {n_points} {what}; use fewer bits for this layer"
        )


@dataclass(frozen=True)
class KMeans:
    """Deep Compression weight sharing: ``k = 2**bits`` shared values per layer.

    Linear initialisation between min and max (Han et al. found it best), then Lloyd
    iterations on the scalar weights. Storage ``n log2 k + 32 k`` bits (:mod:`automc.cost.formats`).
    """

    name: str = "kmeans"
    iters: int = LLOYD_ITERS

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        check_bits(self.name, bits)
        w = weight_rows(weight).reshape(-1, 1)
        k = 2**bits
        _check_k(self.name, k, w.shape[0], "weights")
        init = torch.linspace(float(w.min()), float(w.max()), k, dtype=w.dtype).unsqueeze(1)
        centroids, assign = lloyd(w, init, iters=self.iters)
        return straight_through(weight, centroids[assign])

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        return formats.quantized_storage_bits(self.name, math.prod(shape), int(shape[0]), bits)


@dataclass(frozen=True)
class ProductQuantizer:
    """Product quantization (Gong et al. 2014): each filter row is cut into sub-vectors of
    ``dim`` weights (the last block may be narrower); every column block gets its own
    k-means codebook of ``k = 2**bits`` sub-vectors over the layer's output channels.

    Needs at least ``k`` output channels.
    """

    name: str = "pq"
    dim: int = formats.PQ_DIM
    iters: int = LLOYD_ITERS

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        check_bits(self.name, bits)
        rows = weight_rows(weight)
        k = 2**bits
        _check_k(self.name, k, rows.shape[0], "output channels (sub-vectors per block)")
        blocks = torch.split(rows, self.dim, dim=1)
        out = []
        for block in blocks:
            centroids, assign = lloyd(block, _spread_init(block, k), iters=self.iters)
            out.append(centroids[assign])
        return straight_through(weight, torch.cat(out, dim=1))

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        m = int(shape[0])
        n = math.prod(shape) // m
        return formats.pq_storage_bits(m, n, formats.pq_subspaces(n, self.dim), 2**bits)


@dataclass(frozen=True)
class ResidualQuantizer:
    """Residual quantization: ``stages`` rounds of k-means (``k = 2**bits``) on the residual.

    The weight is flattened and cut into vectors of ``dim`` weights (zero-padded at the
    end); one codebook per stage is shared by all vectors, and the reconstruction is the
    sum of the chosen codewords of all stages.
    """

    name: str = "rq"
    dim: int = formats.RQ_DIM
    stages: int = formats.RQ_STAGES
    iters: int = LLOYD_ITERS

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        check_bits(self.name, bits)
        flat = weight_rows(weight).reshape(-1)
        n = flat.numel()
        k = 2**bits
        v = formats.rq_vectors(n, self.dim)
        _check_k(self.name, k, v, f"vectors of {self.dim} weights")
        vectors = torch.nn.functional.pad(flat, (0, v * self.dim - n)).reshape(v, self.dim)
        approx = torch.zeros_like(vectors)
        for _ in range(self.stages):
            residual = vectors - approx
            centroids, assign = lloyd(residual, _spread_init(residual, k), iters=self.iters)
            approx = approx + centroids[assign]
        return straight_through(weight, approx.reshape(-1)[:n])

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        return formats.rq_storage_bits(
            formats.rq_vectors(math.prod(shape), self.dim), self.dim, 2**bits, self.stages
        )
