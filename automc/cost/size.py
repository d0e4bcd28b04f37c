"""Storage of a compressed layer in bits, from the formulas of ``automc.cost.storage``.

The quantizers in ``automc.compress`` report their storage with the same formulas, so the
predicted and the real compressed sizes agree. Per weight tensor (one per low-rank factor):

    * ``w_bits >= 16``: plain floats, ``n * w_bits`` (any quantizer name; no scales).
    * ``uniform`` (per-channel symmetric): ``n * w_bits`` + one 32-bit scale per output
      channel; ``w_bits == 1`` is binary (sign + per-channel scale), the same count.
    * ``asymmetric``: as uniform plus one ``w_bits`` zero point per output channel.
    * ``uniform_per_tensor``: ``n * w_bits`` + one 32-bit scale.
    * ``binary``: ``n`` sign bits + one 32-bit scale per output channel.
    * ``kmeans``: ``n * w_bits`` index bits + a codebook of ``2**w_bits`` floats.
    * ``pq``: the ``rows x cols`` matrix in column blocks of ``PQ_DIM``; one ``w_bits``
      index per row and block + ``2**w_bits`` codewords per block.
    * ``rq``: ``RQ_STAGES`` stages over vectors of ``RQ_DIM`` weights, ``w_bits`` index
      bits per vector and stage + one codebook of ``2**w_bits`` vectors per stage.
    * unstructured sparsity (``sparsity > 0``): the relative-index format of
      ``storage.sparse_storage_bits`` (default index width) with the quantizer's code as the
      stored value, plus the quantizer's scales/codebook; not modelled for ``pq``/``rq``.

Biases are stored as 32-bit floats. BatchNorm is folded into the preceding conv and is not
counted. File-format overheads are not counted.
"""

from __future__ import annotations

from automc.cost import storage
from automc.errors import UnsupportedLayerError
from automc.plan import LayerChoice

BIAS_BITS = 32
SCALE_BITS = storage.FLOAT_BITS
PQ_DIM = 4
RQ_DIM = 4
RQ_STAGES = 2
CODEBOOK_QUANTIZERS = frozenset({"kmeans", "pq", "rq"})
QUANTIZERS = frozenset({"uniform", "asymmetric", "uniform_per_tensor", "binary"}) | CODEBOOK_QUANTIZERS


def weight_storage_bits(n_weights: int, rows: int, choice: LayerChoice, *, density: float = 0.0) -> int:
    """Bits to store one weight tensor of ``n_weights`` weights and ``rows`` output channels.

    ``density`` (when > 0) overrides ``1 - choice.sparsity``: the ``sparse_lowrank`` residual
    keeps a fixed fraction of its weights.

    Raises:
        UnsupportedLayerError: unknown quantizer, or sparsity combined with ``pq``/``rq``.
    """
    bits = choice.w_bits
    quantizer = choice.quantizer
    if quantizer not in QUANTIZERS:
        raise UnsupportedLayerError(f"quantizer {quantizer!r} has no storage model")
    density = density or 1.0 - float(choice.sparsity)
    if bits >= 16:
        return storage.sparse_storage_bits(n_weights, density, bits) if density < 1.0 else n_weights * bits
    if quantizer in ("pq", "rq"):
        if density < 1.0:
            raise UnsupportedLayerError(f"sparsity combined with the {quantizer!r} quantizer is not modelled")
        if quantizer == "pq":
            cols = max(1, n_weights // max(1, rows))
            return storage.pq_storage_bits(rows, cols, -(-cols // PQ_DIM), 2**bits)
        return storage.rq_storage_bits(-(-n_weights // RQ_DIM), RQ_DIM, 2**bits, RQ_STAGES)
    if density >= 1.0:
        if quantizer == "kmeans":
            return storage.kmeans_storage_bits(n_weights, 2**bits)
        if quantizer == "binary":
            return storage.binary_storage_bits(n_weights, n_groups=rows)
        groups = 1 if quantizer == "uniform_per_tensor" else rows
        return storage.uniform_storage_bits(
            n_weights, bits, n_groups=groups, zero_point=quantizer == "asymmetric"
        )
    if quantizer == "kmeans":
        code, overhead = storage.index_bits_for(2**bits), 2**bits * SCALE_BITS
    else:
        code = 1 if quantizer == "binary" else bits
        groups = 1 if quantizer == "uniform_per_tensor" else rows
        overhead = groups * (SCALE_BITS + (bits if quantizer == "asymmetric" else 0))
    return storage.sparse_storage_bits(n_weights, density, code) + overhead
