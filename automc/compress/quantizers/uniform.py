"""Uniform-grid quantizers: ``uniform``, ``binary``, ``asymmetric`` and ``uniform_per_tensor``.

Storage (bits per weight tensor) is given by :mod:`automc.cost.formats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from automc.compress.quantizers import check_bits, straight_through, weight_rows
from automc.cost import formats
from automc.errors import AutomcError

__all__ = ["Asymmetric", "Binary", "Uniform", "UniformPerTensor", "affine_quantize"]


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
        return formats.quantized_storage_bits("binary", math.prod(shape), int(shape[0]), bits)


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
        return formats.quantized_storage_bits("uniform", math.prod(shape), int(shape[0]), bits)


@dataclass(frozen=True)
class Asymmetric:
    """Per-output-channel affine quantizer with an integer zero point."""

    name: str = "asymmetric"

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        check_bits(self.name, bits)
        return straight_through(weight, affine_quantize(weight_rows(weight), bits))

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        return formats.quantized_storage_bits(self.name, math.prod(shape), int(shape[0]), bits)


@dataclass(frozen=True)
class UniformPerTensor:
    """Symmetric uniform quantizer with one scale for the whole tensor (``2**(b-1) - 1`` levels a side)."""

    name: str = "uniform_per_tensor"

    def __call__(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        check_bits(self.name, bits, low=2)
        w = weight_rows(weight)
        levels = 2 ** (bits - 1) - 1
        max_abs = float(w.abs().max())
        scale = max_abs / levels if max_abs > 0 else 1.0
        q = torch.clamp(torch.round(w / scale), -levels, levels) * scale
        return straight_through(weight, q)

    def storage_bits(self, shape: Sequence[int], bits: int) -> int:
        return formats.quantized_storage_bits(self.name, math.prod(shape), int(shape[0]), bits)
