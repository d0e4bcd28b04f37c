"""Weight quantizers: the protocol, the registry and the helpers the implementations share.

A quantizer is a callable ``quantizer(weight, bits) -> Tensor`` returning the
*dequantized* weight (same shape and dtype: the values the quantized layer computes
with) and a method ``storage_bits(shape, bits) -> int`` giving the bits needed to store a
weight of ``shape`` (the formulas of :mod:`automc.cost.formats`, so the cost model
agrees). Dim 0 of the weight is the output channel; the other dims are flattened into a
row. Gradients pass straight through (:func:`straight_through`) so that fine-tuning with
fake-quantized weights updates the float weights.

The built-in quantizers, by kind:

* :mod:`~automc.compress.quantizers.uniform`: ``uniform`` (per-channel symmetric),
  ``binary``, ``asymmetric`` (affine, zero point), ``uniform_per_tensor``;
* :mod:`~automc.compress.quantizers.codebook`: ``kmeans`` (Deep Compression weight
  sharing), ``pq`` (product quantization), ``rq`` (residual quantization).

:data:`REGISTRY` holds the quantizer *classes* (a fresh instance per :func:`get`); the
built-in ones are declared lazily. Bits 16 and 32 are handled by the layer wrapper
(half rounding / untouched, :mod:`automc.compress.quant`), not by the quantizers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from automc.errors import AutomcError
from automc.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = [
    "REGISTRY",
    "Quantizer",
    "check_bits",
    "describe",
    "get",
    "names",
    "register",
    "straight_through",
    "weight_rows",
]


class Quantizer(Protocol):
    """A weight quantizer (see the module docstring)."""

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        """The dequantized weight at ``bits`` bits."""
        ...

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        """Bits to store a weight of ``shape`` quantized at ``bits``."""
        ...


REGISTRY: Registry[Callable[[], Quantizer]] = Registry(kind="weight quantizer")
REGISTRY.add(
    "uniform",
    "automc.compress.quantizers.uniform:Uniform",
    "per-output-channel symmetric uniform quantizer (torch fake-quantize)",
)
REGISTRY.add(
    "binary",
    "automc.compress.quantizers.uniform:Binary",
    "1-bit weights sign(w) x mean|w| per output channel (XNOR-Net / BinaryConnect)",
)
REGISTRY.add(
    "asymmetric",
    "automc.compress.quantizers.uniform:Asymmetric",
    "per-output-channel affine (zero point) uniform quantizer",
)
REGISTRY.add(
    "uniform_per_tensor",
    "automc.compress.quantizers.uniform:UniformPerTensor",
    "symmetric uniform quantizer, one scale per tensor",
)
REGISTRY.add(
    "kmeans",
    "automc.compress.quantizers.codebook:KMeans",
    "Deep Compression k-means weight sharing, k = 2**bits values per layer",
)
REGISTRY.add(
    "pq",
    "automc.compress.quantizers.codebook:ProductQuantizer",
    "product quantization: k-means codebook per 4-wide column block, k = 2**bits",
)
REGISTRY.add(
    "rq",
    "automc.compress.quantizers.codebook:ResidualQuantizer",
    "residual quantization: 2 stages of k-means on 4-weight vectors, k = 2**bits",
)
register = REGISTRY.register
names = REGISTRY.names
describe = REGISTRY.describe


def get(name: str) -> Quantizer:
    """A fresh instance of the quantizer registered as ``name``.

    Raises:
        AutomcError: unknown name (the message lists the known ones).
    """
    return REGISTRY.get(name)()


def check_bits(name: str, bits: int, *, low: int = 1, high: int = 8) -> int:
    """``bits`` if it is an integer in ``low..high``; otherwise an ``AutomcError`` naming quantizer ``name``."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= high:
        raise AutomcError(f"quantizer {name!r}: bits must be an integer in {low}..{high}, got {bits!r}")
    return bits


def weight_rows(weight: torch.Tensor) -> torch.Tensor:
    """The weight as a detached float32 ``out_channels x rest`` matrix.

    Raises:
        AutomcError: an empty or scalar weight.
    """
    if weight.dim() == 0 or weight.numel() == 0:
        raise AutomcError(f"cannot quantize an empty or scalar weight of shape {tuple(weight.shape)}")
    return weight.detach().float().reshape(weight.shape[0], -1)


def straight_through(weight: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """``quantized`` in value, identity in gradient (straight-through estimator), in ``weight``'s dtype."""
    quantized = quantized.reshape(weight.shape).to(weight.dtype)
    return quantized + (weight - weight.detach())
