"""Storage and geometry facts of every quantizer and low-rank method (stdlib only, no torch).

The one place that says how a compressed weight is stored and what a factorised layer
looks like: the cost model (:mod:`automc.cost`) prices plans with these facts and the
torch implementations (:mod:`automc.compress.quantizers`, :mod:`automc.compress.lowrank`)
report their storage and clip their ranks with them, so predicted and real sizes agree.
Biases, BatchNorm parameters and file-format overheads are not counted by the weight
formulas.

Quantizer formats (``value_bits`` is the width of a stored float, 32 by default):

* ``w_bits >= 16`` (any quantizer): plain floats, ``n * w_bits``, no scales.
* ``uniform`` (per-channel symmetric), ``uniform_per_tensor`` (one scale), ``asymmetric``
  (per-channel affine): ``n * w_bits`` codes plus one ``scale_bits`` scale per group and,
  for the affine quantizer, one ``w_bits`` zero point per group. ``uniform`` at
  ``w_bits == 1`` is binary.
* ``binary``: ``n`` sign bits plus one scale per output channel.
* ``kmeans`` (Deep Compression weight sharing): ``n * ceil(log2 k)`` index bits plus a
  codebook of ``k = 2**w_bits`` floats; for ``k = 2**b`` this is ``n log2(k) + k b`` and the
  compression rate is ``r = n b / (n log2(k) + k b)``.
* ``pq`` (product quantization): the ``m x n`` matrix is split into ``s = ceil(n / PQ_DIM)``
  column blocks; each of the ``m * s`` sub-vectors stores a ``ceil(log2 k)``-bit index and
  each block a codebook of ``k`` sub-vectors, i.e. ``k * n`` floats in all.
* ``rq`` (residual quantization): ``t = RQ_STAGES`` stages; each of the
  ``v = ceil(n / RQ_DIM)`` vectors stores one index per stage and each stage a codebook of
  ``k`` vectors: ``t v ceil(log2 k) + t k RQ_DIM`` floats.
* unstructured sparsity (Deep Compression's relative-index format): the flattened weight
  is stored as ``(value, gap)`` entries, ``gap`` being the distance to the previous stored
  entry in ``index_bits`` bits. A gap that does not fit is bridged by a filler entry (a
  stored zero). With the non-zeros at random positions (what magnitude pruning gives to a
  good approximation) the expected number of entries is
  ``nnz / (1 - (1 - d)**(2**index_bits))`` for density ``d``; each entry costs
  ``value_bits + index_bits`` bits. The stored value is the quantizer's code, plus its
  scales/codebook; not modelled for ``pq``/``rq``.

Low-rank methods, for a layer with ``n`` input features, ``m`` output channels and a
``kh x kw`` kernel at rank ``r`` (clipped to :func:`max_rank` ``= min(m, n kh kw)``):

* ``svd``: a ``kh x kw`` conv (or linear) ``n -> r`` without bias, then a ``1 x 1`` conv
  (or linear) ``r -> m`` carrying the bias: ``r (n kh kw + m)`` weights.
* ``sparse_lowrank`` (ADMM sparse + low rank): the two ``svd`` factors plus a sparse
  residual of the layer's full geometry ``m x n x kh x kw`` that keeps
  ``SPARSE_LOWRANK_DENSITY`` of its weights; it runs dense (full MACs) and is stored in
  the sparse format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from automc.errors import AutomcError, UnsupportedLayerError

if TYPE_CHECKING:
    from automc.plan import LayerChoice

__all__ = [
    "BIAS_BITS",
    "CODEBOOK_QUANTIZERS",
    "FLOAT_BITS",
    "LOWRANK_METHODS",
    "PQ_DIM",
    "QUANTIZERS",
    "RQ_DIM",
    "RQ_STAGES",
    "SCALAR_GROUPS",
    "SPARSE_LOWRANK_DENSITY",
    "Factor",
    "binary_storage_bits",
    "index_bits_for",
    "kmeans_storage_bits",
    "lowrank_factors",
    "lowrank_method_names",
    "max_rank",
    "pq_storage_bits",
    "pq_subspaces",
    "quantized_storage_bits",
    "quantizer_names",
    "rq_storage_bits",
    "rq_vectors",
    "sparse_entries",
    "sparse_nnz",
    "sparse_storage_bits",
    "uniform_storage_bits",
    "weight_storage_bits",
]

FLOAT_BITS = 32
"""Width of a stored float (scales, codebook entries)."""
BIAS_BITS = 32
"""Biases are stored as 32-bit floats."""
PQ_DIM = 4
"""Width of a ``pq`` sub-vector (column block)."""
RQ_DIM = 4
"""Length of an ``rq`` vector."""
RQ_STAGES = 2
"""Stages of ``rq``."""
CODEBOOK_QUANTIZERS = frozenset({"kmeans", "pq", "rq"})
"""Quantizers that store a codebook of shared values (no per-channel scales)."""
SCALAR_GROUPS: Mapping[str, str] = MappingProxyType(
    {
        "uniform": "channel",
        "binary": "channel",
        "asymmetric": "channel",
        "uniform_per_tensor": "tensor",
        "kmeans": "tensor",
    }
)
"""Scalar quantizers -> what shares one grid or codebook of at most ``2**w_bits`` values
(``binary``: two): each output ``channel`` or the whole ``tensor``. The vector quantizers
``pq`` and ``rq`` code sub-vectors instead."""
QUANTIZERS = frozenset(SCALAR_GROUPS) | CODEBOOK_QUANTIZERS
"""Every quantizer with a storage format here."""
LOWRANK_METHODS = frozenset({"svd", "sparse_lowrank"})
"""Every low-rank method with a geometry here."""
SPARSE_LOWRANK_DENSITY = 0.05
"""Fraction of the layer's weights kept in the ``sparse_lowrank`` residual."""


def quantizer_names() -> list[str]:
    """The quantizers whose storage is modelled here, sorted."""
    return sorted(QUANTIZERS)


def lowrank_method_names() -> list[str]:
    """The low-rank methods whose geometry is modelled here, sorted."""
    return sorted(LOWRANK_METHODS)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AutomcError(f"{name} must be a positive integer, got {value!r}")
    return value


def index_bits_for(k: int) -> int:
    """Bits needed to index one of ``k`` codewords: ``ceil(log2 k)`` (0 for ``k == 1``)."""
    _positive_int("k", k)
    return (k - 1).bit_length()


def uniform_storage_bits(
    n_weights: int, w_bits: int, *, n_groups: int = 1, zero_point: bool = False, scale_bits: int = FLOAT_BITS
) -> int:
    """Bits of a uniformly quantized weight.

    Args:
        n_weights: number of weights.
        w_bits: code width; 16 and 32 mean plain half/single floats (no scales).
        n_groups: number of scales (output channels for per-channel, 1 for per-tensor).
        zero_point: affine quantizer: one ``w_bits`` zero point per group as well.
        scale_bits: width of one stored scale.
    """
    if w_bits >= 16:
        return n_weights * w_bits
    return n_weights * w_bits + n_groups * (scale_bits + (w_bits if zero_point else 0))


def binary_storage_bits(n_weights: int, *, n_groups: int = 1, scale_bits: int = FLOAT_BITS) -> int:
    """Bits of a binarised weight: one sign bit per weight plus one scale per group."""
    return n_weights + n_groups * scale_bits


def kmeans_storage_bits(n_weights: int, k: int, *, value_bits: int = FLOAT_BITS) -> int:
    """Bits of a k-means weight-shared layer: ``n ceil(log2 k) + k value_bits``."""
    return n_weights * index_bits_for(k) + k * value_bits


def pq_storage_bits(
    n_rows: int, n_cols: int, n_subspaces: int, k: int, *, value_bits: int = FLOAT_BITS
) -> int:
    """Bits of a product-quantized ``n_rows x n_cols`` matrix.

    ``n_rows * n_subspaces`` indices of ``ceil(log2 k)`` bits plus ``n_subspaces``
    codebooks of ``k`` sub-vectors whose widths add up to ``n_cols``.
    """
    return n_rows * n_subspaces * index_bits_for(k) + k * n_cols * value_bits


def rq_storage_bits(n_vectors: int, dim: int, k: int, stages: int, *, value_bits: int = FLOAT_BITS) -> int:
    """Bits of residual quantization: ``stages`` codebooks of ``k`` vectors of ``dim`` floats
    plus one ``ceil(log2 k)``-bit index per vector and stage."""
    return stages * (n_vectors * index_bits_for(k) + k * dim * value_bits)


def pq_subspaces(n_cols: int, dim: int = PQ_DIM) -> int:
    """Column blocks of a ``pq`` matrix with ``n_cols`` columns: ``ceil(n_cols / dim)``."""
    return -(-n_cols // dim)


def rq_vectors(n_weights: int, dim: int = RQ_DIM) -> int:
    """Vectors of ``dim`` weights (the last zero-padded) an ``rq`` weight is cut into."""
    return -(-n_weights // dim)


def sparse_nnz(n_weights: int, sparsity: float) -> int:
    """Non-zeros left after zeroing ``round(n_weights * sparsity)`` weights (half rounds up).

    The rounding rule ``automc.compress.sparsity.apply_sparsity`` uses.
    """
    if not 0.0 <= sparsity < 1.0:
        raise AutomcError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return n_weights - min(n_weights, int(math.floor(n_weights * sparsity + 0.5)))


def sparse_entries(n_weights: int, nnz: int, *, index_bits: int = 4) -> int:
    """Expected stored entries (non-zeros + filler zeros) of the relative-index format.

    Exact when ``nnz`` is 0 or ``n_weights``; otherwise the expectation for non-zeros at
    uniformly random positions, rounded up.
    """
    _positive_int("index_bits", index_bits)
    if nnz <= 0:
        return 0
    if nnz >= n_weights:
        return n_weights
    density = nnz / n_weights
    no_filler = 1.0 - (1.0 - density) ** (2**index_bits)
    return int(math.ceil(nnz / no_filler))


def sparse_storage_bits(
    n_weights: int, density: float, w_bits: int, *, index_bits: int = 4, value_bits: int | None = None
) -> int:
    """Bits of an unstructured-sparse weight in the relative-index format.

    Args:
        n_weights: dense number of weights.
        density: fraction of weights kept (``1 - sparsity``).
        w_bits: width of one stored value (32 = float).
        index_bits: width of the relative index; Deep Compression used 8 for convs and 5
            for fully connected layers.
        value_bits: overrides ``w_bits`` for the stored value (e.g. a k-means index).

    A dense layer (density 1) is stored densely, without indices.
    """
    if not 0.0 < density <= 1.0:
        raise AutomcError(f"density must be in (0, 1], got {density!r}")
    if density >= 1.0:
        return n_weights * w_bits
    nnz = sparse_nnz(n_weights, 1.0 - density)
    entries = sparse_entries(n_weights, nnz, index_bits=index_bits)
    return entries * ((w_bits if value_bits is None else value_bits) + index_bits)


def quantized_storage_bits(
    quantizer: str, n_weights: int, rows: int, w_bits: int, *, density: float = 1.0
) -> int:
    """Bits to store one weight tensor quantized by ``quantizer`` (the formats above).

    Args:
        quantizer: a name of :func:`quantizer_names`.
        n_weights: dense number of weights.
        rows: output channels (dim 0 of the weight).
        w_bits: the plan's weight bits (index width for ``pq``/``rq``).
        density: fraction of weights kept by unstructured sparsity (1.0 = dense).

    Raises:
        UnsupportedLayerError: unknown quantizer, or sparsity combined with ``pq``/``rq``.
    """
    if quantizer not in QUANTIZERS:
        raise UnsupportedLayerError(f"quantizer {quantizer!r} has no storage model")
    if w_bits >= 16:
        return sparse_storage_bits(n_weights, density, w_bits) if density < 1.0 else n_weights * w_bits
    if quantizer in ("pq", "rq"):
        if density < 1.0:
            raise UnsupportedLayerError(f"sparsity combined with the {quantizer!r} quantizer is not modelled")
        if quantizer == "pq":
            cols = max(1, n_weights // max(1, rows))
            return pq_storage_bits(rows, cols, pq_subspaces(cols), 2**w_bits)
        return rq_storage_bits(rq_vectors(n_weights), RQ_DIM, 2**w_bits, RQ_STAGES)
    binary = quantizer == "binary" or (quantizer == "uniform" and w_bits == 1)
    groups = 1 if SCALAR_GROUPS[quantizer] == "tensor" else rows
    if density >= 1.0:
        if quantizer == "kmeans":
            return kmeans_storage_bits(n_weights, 2**w_bits)
        if binary:
            return binary_storage_bits(n_weights, n_groups=rows)
        return uniform_storage_bits(n_weights, w_bits, n_groups=groups, zero_point=quantizer == "asymmetric")
    if quantizer == "kmeans":
        code, overhead = index_bits_for(2**w_bits), 2**w_bits * FLOAT_BITS
    else:
        code = 1 if binary else w_bits
        overhead = groups * (FLOAT_BITS + (w_bits if quantizer == "asymmetric" else 0))
    return sparse_storage_bits(n_weights, density, code) + overhead


def weight_storage_bits(n_weights: int, rows: int, choice: LayerChoice, *, density: float = 0.0) -> int:
    """:func:`quantized_storage_bits` of one weight tensor under a plan's layer choice.

    ``density`` (when > 0) overrides ``1 - choice.sparsity``: the ``sparse_lowrank`` residual
    keeps a fixed fraction of its weights.

    Raises:
        UnsupportedLayerError: unknown quantizer, or sparsity combined with ``pq``/``rq``.
    """
    return quantized_storage_bits(
        choice.quantizer, n_weights, rows, choice.w_bits, density=density or 1.0 - float(choice.sparsity)
    )


class Factor(NamedTuple):
    """One weight tensor of a factorised layer, ``out_features x in_features x kernel_area``.

    Attributes:
        in_features: input channels (features) it reads.
        out_features: output channels it writes.
        kernel_area: ``kh * kw`` (1 for a ``1 x 1`` factor or a linear).
        reads_input: whether it reads the layer's input (else the previous factor's output,
            at the layer's output resolution).
        density: fraction of its weights stored when the method fixes it (the sparse
            residual); 0.0 means the plan's ``sparsity`` applies.
    """

    in_features: int
    out_features: int
    kernel_area: int
    reads_input: bool
    density: float = 0.0

    @property
    def weights(self) -> int:
        """Dense weight count."""
        return self.out_features * self.in_features * self.kernel_area


def max_rank(out_channels: int, in_features: int, kernel_area: int) -> int:
    """The largest useful rank of a layer: ``min(m, n kh kw)``."""
    return min(out_channels, in_features * kernel_area)


def lowrank_factors(
    method: str, *, in_features: int, out_channels: int, kernel_area: int, rank: int
) -> tuple[Factor, ...]:
    """The weight tensors that replace a layer factorised by ``method`` at ``rank``.

    ``rank`` is clipped to ``1 .. max_rank(...)``.

    Raises:
        UnsupportedLayerError: ``method`` is not one of :func:`lowrank_method_names`.
    """
    if method not in LOWRANK_METHODS:
        raise UnsupportedLayerError(f"low-rank method {method!r} has no cost model")
    n, m = in_features, out_channels
    r = max(1, min(rank, max_rank(m, n, kernel_area)))
    factors: tuple[Factor, ...] = (
        Factor(in_features=n, out_features=r, kernel_area=kernel_area, reads_input=True),
        Factor(in_features=r, out_features=m, kernel_area=1, reads_input=False),
    )
    if method == "sparse_lowrank":
        residual = Factor(
            in_features=n,
            out_features=m,
            kernel_area=kernel_area,
            reads_input=True,
            density=SPARSE_LOWRANK_DENSITY,
        )
        factors = (*factors, residual)
    return factors
