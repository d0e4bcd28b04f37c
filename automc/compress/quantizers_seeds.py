"""Weight quantizers from the seed notes: affine, per-tensor, k-means sharing, PQ and RQ.

Every quantizer returns the *dequantized* weight (same shape and dtype), i.e. the values
the quantized model computes with, and reports its storage through
:mod:`automc.cost.storage` so that the cost model and the real compressed size agree.
The weight's dim 0 is the output channel; the other dims are flattened into a row.
Gradients pass straight through (``q + (w - w.detach())``: exactly ``q`` in value) so that fine-tuning with
fake-quantized weights updates the float weights.

Registered names (``automc list quantizers``): ``asymmetric``, ``uniform_per_tensor``,
``kmeans``, ``pq``, ``rq``. ``uniform`` (per-channel symmetric) and ``binary`` live in
``automc.compress.quantizers``.

Caveats: the clustering quantizers (``kmeans``, ``pq``, ``rq``) run Lloyd iterations from a
deterministic initialisation (linear in value for k-means, evenly spaced samples for the
vector quantizers); they are post-training quantizers, not Deep Compression's trained
weight sharing. For ``pq`` and ``rq`` the plan's ``w_bits`` is the *index* width per
sub-vector (``k = 2**w_bits`` codewords), so the bits per weight are ``w_bits / dim``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from automc.compress.quantizers import register
from automc.cost.storage import (
    kmeans_storage_bits,
    pq_storage_bits,
    rq_storage_bits,
    uniform_storage_bits,
)
from automc.errors import AutomcError

LLOYD_ITERS = 20


def _check_bits(name: str, bits: int, *, low: int = 1, high: int = 8) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= high:
        raise AutomcError(f"quantizer {name!r}: bits must be an integer in {low}..{high}, got {bits!r}")
    return bits


def _rows(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() == 0 or weight.numel() == 0:
        raise AutomcError(f"cannot quantize an empty or scalar weight of shape {tuple(weight.shape)}")
    return weight.detach().float().reshape(weight.shape[0], -1)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def affine_quantize(rows: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-row affine quantization with an integer zero point (0.0 stays exactly 0.0).

    The range ``[min(w, 0), max(w, 0)]`` of each row is split into ``2**bits - 1`` steps.
    """
    levels = 2**bits - 1
    low = torch.clamp(rows.amin(dim=1, keepdim=True), max=0.0)
    high = torch.clamp(rows.amax(dim=1, keepdim=True), min=0.0)
    scale = (high - low) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.round(-low / scale)
    q = torch.clamp(torch.round(rows / scale) + zero_point, 0, levels)
    return (q - zero_point) * scale


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


def _straight_through(weight: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """``quantized`` in value, identity in gradient (straight-through estimator), in ``weight``'s dtype."""
    quantized = quantized.reshape(weight.shape).to(weight.dtype)
    return quantized + (weight - weight.detach())


def _check_k(name: str, k: int, n_points: int, what: str) -> None:
    if k > n_points:
        raise AutomcError(
            f"quantizer {name!r}: {k} codewords but only {n_points} {what}; use fewer bits for this layer"
        )


@dataclass(frozen=True)
class Asymmetric:
    """Per-output-channel affine quantizer with an integer zero point."""

    name: str = "asymmetric"

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        _check_bits(self.name, bits)
        return _straight_through(weight, affine_quantize(_rows(weight), bits))

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        return uniform_storage_bits(_numel(shape), bits, n_groups=int(shape[0]), zero_point=True)


@dataclass(frozen=True)
class UniformPerTensor:
    """Symmetric uniform quantizer with one scale for the whole tensor (``2**(b-1) - 1`` levels a side)."""

    name: str = "uniform_per_tensor"

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        _check_bits(self.name, bits, low=2)
        w = _rows(weight)
        levels = 2 ** (bits - 1) - 1
        max_abs = float(w.abs().max())
        scale = max_abs / levels if max_abs > 0 else 1.0
        q = torch.clamp(torch.round(w / scale), -levels, levels) * scale
        return _straight_through(weight, q)

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        return uniform_storage_bits(_numel(shape), bits, n_groups=1)


@dataclass(frozen=True)
class KMeans:
    """Deep Compression weight sharing: ``k = 2**bits`` shared values per layer.

    Linear initialisation between min and max (Han et al. found it best), then Lloyd
    iterations on the scalar weights. Storage ``n log2 k + 32 k`` bits (seed 001).
    """

    name: str = "kmeans"
    iters: int = LLOYD_ITERS

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        _check_bits(self.name, bits)
        w = _rows(weight).reshape(-1, 1)
        k = 2**bits
        _check_k(self.name, k, w.shape[0], "weights")
        init = torch.linspace(float(w.min()), float(w.max()), k, dtype=w.dtype).unsqueeze(1)
        centroids, assign = lloyd(w, init, iters=self.iters)
        return _straight_through(weight, centroids[assign])

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        return kmeans_storage_bits(_numel(shape), 2**bits)


@dataclass(frozen=True)
class ProductQuantizer:
    """Product quantization (Gong et al. 2014): each filter row is cut into sub-vectors of
    ``dim`` weights (the last block may be narrower); every column block gets its own
    k-means codebook of ``k = 2**bits`` sub-vectors over the layer's output channels.

    Needs at least ``k`` output channels.
    """

    name: str = "pq"
    dim: int = 4
    iters: int = LLOYD_ITERS

    def n_subspaces(self, n_cols: int) -> int:
        return -(-n_cols // self.dim)

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        _check_bits(self.name, bits)
        rows = _rows(weight)
        k = 2**bits
        _check_k(self.name, k, rows.shape[0], "output channels (sub-vectors per block)")
        blocks = torch.split(rows, self.dim, dim=1)
        out = []
        for block in blocks:
            centroids, assign = lloyd(block, _spread_init(block, k), iters=self.iters)
            out.append(centroids[assign])
        return _straight_through(weight, torch.cat(out, dim=1))

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        m = int(shape[0])
        n = _numel(shape) // m
        return pq_storage_bits(m, n, self.n_subspaces(n), 2**bits)


@dataclass(frozen=True)
class ResidualQuantizer:
    """Residual quantization: ``stages`` rounds of k-means (``k = 2**bits``) on the residual.

    The weight is flattened and cut into vectors of ``dim`` weights (zero-padded at the
    end); one codebook per stage is shared by all vectors, and the reconstruction is the
    sum of the chosen codewords of all stages.
    """

    name: str = "rq"
    dim: int = 4
    stages: int = 2
    iters: int = LLOYD_ITERS

    def n_vectors(self, n_weights: int) -> int:
        return -(-n_weights // self.dim)

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        _check_bits(self.name, bits)
        flat = _rows(weight).reshape(-1)
        n = flat.numel()
        k = 2**bits
        v = self.n_vectors(n)
        _check_k(self.name, k, v, f"vectors of {self.dim} weights")
        vectors = torch.nn.functional.pad(flat, (0, v * self.dim - n)).reshape(v, self.dim)
        approx = torch.zeros_like(vectors)
        for _ in range(self.stages):
            residual = vectors - approx
            centroids, assign = lloyd(residual, _spread_init(residual, k), iters=self.iters)
            approx = approx + centroids[assign]
        return _straight_through(weight, approx.reshape(-1)[:n])

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        return rq_storage_bits(self.n_vectors(_numel(shape)), self.dim, 2**bits, self.stages)


register("asymmetric", "per-output-channel affine (zero point) uniform quantizer")(Asymmetric())
register("uniform_per_tensor", "symmetric uniform quantizer, one scale per tensor")(UniformPerTensor())
register("kmeans", "Deep Compression k-means weight sharing, k = 2**bits values per layer")(KMeans())
register("pq", "product quantization: k-means codebook per 4-wide column block, k = 2**bits")(
    ProductQuantizer()
)
register("rq", "residual quantization: 2 stages of k-means on 4-weight vectors, k = 2**bits")(
    ResidualQuantizer()
)
