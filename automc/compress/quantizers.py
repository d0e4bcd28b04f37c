"""Weight-quantizer registry: ``uniform`` and ``binary`` built in, the seed quantizers added lazily.

A quantizer is a callable ``quantizer(weight, bits) -> Tensor`` returning the
*dequantized* weight (same shape and dtype: the values the quantized layer computes
with) and a method ``storage_bits(shape, bits) -> int`` giving the bits needed to store a
weight of ``shape`` (formulas from :mod:`automc.cost.storage`, so the cost model agrees).
Dim 0 of the weight is the output channel.

Register with ``register(name, description)(quantizer)``. ``automc.compress.quantizers_seeds``
(asymmetric, per-tensor, k-means, PQ, RQ) registers itself when first needed.

Bits 16 and 32 are handled by the layer wrapper (half rounding / untouched), not by the
quantizers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

from automc.cost.storage import binary_storage_bits, uniform_storage_bits
from automc.errors import AutomcError
from automc.registry import Registry

__all__ = ["Binary", "Quantizer", "Uniform", "describe", "get", "names", "register"]

_SEEDS_MODULE = "automc.compress.quantizers_seeds"


class Quantizer(Protocol):
    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        """The dequantized weight at ``bits`` bits."""
        ...

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        """Bits to store a weight of ``shape`` quantized at ``bits``."""
        ...


Q = TypeVar("Q", bound=Quantizer)

_REGISTRY: Registry[Quantizer] = Registry(kind="weight quantizer", plugins=(_SEEDS_MODULE,))
register = _REGISTRY.register
names = _REGISTRY.names
describe = _REGISTRY.describe
get = _REGISTRY.get


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


@dataclass(frozen=True)
class Binary:
    """BinaryConnect / XNOR-Net weights: ``sign(w) * alpha``, ``alpha = mean |w|`` per output channel.

    ``bits`` is ignored (always one bit per weight plus one float scale per channel);
    zero weights map to ``+alpha``.
    """

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        rows = weight.reshape(weight.shape[0], -1)
        alpha = rows.abs().mean(dim=1, keepdim=True)
        signs = torch.where(rows >= 0, torch.ones_like(rows), -torch.ones_like(rows))
        return (signs * alpha).reshape(weight.shape)

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        return binary_storage_bits(_numel(shape), n_groups=int(shape[0]))


@dataclass(frozen=True)
class Uniform:
    """Per-output-channel symmetric uniform quantization with torch's fake-quantize op.

    ``2**(bits-1) - 1`` levels each side of zero, scale ``max|w| / levels`` per channel
    (``torch.fake_quantize_per_channel_affine``, which also gives a straight-through
    gradient). ``bits == 1`` falls back to :class:`Binary` (a 1-bit symmetric grid has
    no non-zero level).
    """

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        if bits == 1:
            return Binary()(weight, bits)
        if not 2 <= bits <= 8:
            raise AutomcError(f"uniform quantizer: bits must be 1..8, got {bits!r}")
        levels = 2 ** (bits - 1) - 1
        rows = weight.detach().reshape(weight.shape[0], -1)
        scale = (rows.abs().amax(dim=1) / levels).clamp_min(1e-12).float()
        if torch.onnx.is_in_onnx_export():
            # ONNX QuantizeLinear has no symmetric (-L, L) grid: export the same rounding as plain ops.
            shape = (-1,) + (1,) * (weight.dim() - 1)
            s = scale.reshape(shape).to(weight.dtype)
            return torch.clamp(torch.round(weight / s), -levels, levels) * s
        zero = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
        return torch.fake_quantize_per_channel_affine(weight.float(), scale, zero, 0, -levels, levels).to(
            weight.dtype
        )

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        if bits == 1:
            return Binary().storage_bits(shape, bits)
        return uniform_storage_bits(_numel(shape), bits, n_groups=int(shape[0]))


register("uniform", "per-output-channel symmetric uniform quantizer (torch fake-quantize)")(Uniform())
register("binary", "1-bit weights sign(w) x mean|w| per output channel (XNOR-Net / BinaryConnect)")(Binary())
