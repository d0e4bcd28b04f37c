"""Storage formulas for compressed weights, in bits (pure Python, no torch).

The cost model prices a layer's weights with these functions and the torch quantizers
in ``automc.compress`` report their storage with the same functions, so predicted and
real sizes agree. Biases, BatchNorm parameters and file-format overheads are not
counted here.

Formats (``value_bits`` is the width of a stored float, 32 by default):

* uniform (per-channel or per-tensor, symmetric or affine): ``n * w_bits`` codes plus one
  ``scale_bits`` scale per group and, for affine quantizers, one ``w_bits`` zero point
  per group. ``w_bits >= 16`` means plain floats: ``n * w_bits``, no scales.
* binary: ``n`` sign bits plus one scale per group.
* k-means weight sharing (Deep Compression): ``n * ceil(log2 k)`` index bits plus a
  codebook of ``k`` floats; for ``k = 2**b`` this is the seed's ``n log2(k) + k b`` and the
  compression rate is ``r = n b / (n log2(k) + k b)``.
* product quantization: the ``m x n`` matrix is split into ``s`` column blocks; each of
  the ``m * s`` sub-vectors stores a ``ceil(log2 k)``-bit index and each block a codebook
  of ``k`` sub-vectors, i.e. ``k * n`` floats in all.
* residual quantization: ``t`` stages; each of the ``v`` vectors of dimension ``d`` stores
  one index per stage and each stage a codebook of ``k`` vectors: ``t v ceil(log2 k) +
  t k d`` floats.
* sparse (Deep Compression's relative-index format): the flattened weight is stored as
  ``(value, gap)`` entries, ``gap`` being the distance to the previous stored entry in
  ``index_bits`` bits. A gap that does not fit is bridged by a filler entry (a stored
  zero). With the non-zeros at random positions (what magnitude pruning gives to a good
  approximation) the expected number of entries is ``nnz / (1 - (1 - d)**(2**index_bits))``
  for density ``d``; each entry costs ``value_bits + index_bits`` bits.
"""

from __future__ import annotations

import math

from automc.errors import AutomcError

FLOAT_BITS = 32


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
