"""Fake quantization of conv/linear layers (weights and input activations).

:class:`QuantConv2d` and :class:`QuantLinear` are ``nn.Conv2d`` / ``nn.Linear``
subclasses, so a quantized layer keeps its name, its ``weight``/``bias`` state-dict keys
and is still found by :func:`automc.graph.layers`. In ``forward`` they

* quantize the *input* activation per tensor at ``a_bits`` with
  ``torch.fake_quantize_per_tensor_affine`` (unsigned affine grid over the calibrated
  ``[min, max]`` range, which always includes 0); ``a_bits`` 16 = half rounding, 32 = off;
* compute with the weight quantized at ``w_bits`` by the registered quantizer
  (:mod:`automc.compress.quantizers`); 16 = half rounding, 32 = float.

Both use a straight-through estimator: the forward pass sees the quantized values, the
backward pass treats quantization as the identity (activations: zero gradient outside
the calibrated range), so the float ``weight`` stays trainable for fine-tuning.

Caveats: the activation range is calibrated once (min/max over the calibration batches)
and then frozen; the quantized weight is cached while neither training nor computing
gradients and recomputed when the weight changes (its version counter moves).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from automc.compress import quantizers
from automc.errors import AutomcError

__all__ = ["QuantConv2d", "QuantLinear", "QuantMixin", "calibrate", "quantize_module"]


def _half_round(t: torch.Tensor) -> torch.Tensor:
    return t.half().to(t.dtype)


class QuantMixin:
    """Shared state and behaviour of the quantized conv/linear layers."""

    w_bits: int
    a_bits: int
    quantizer: str
    act_scale: torch.Tensor
    act_zero_point: torch.Tensor
    act_min: torch.Tensor
    act_max: torch.Tensor
    training: bool

    def _init_quant(self, *, w_bits: int, a_bits: int, quantizer: str) -> None:
        quantizers.get(quantizer)
        self.w_bits = int(w_bits)
        self.a_bits = int(a_bits)
        self.quantizer = quantizer
        self.observing = False
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None
        device = self._weight().device
        self.register_buffer("act_scale", torch.ones((), device=device))  # type: ignore[attr-defined]
        self.register_buffer("act_zero_point", torch.zeros((), dtype=torch.int32, device=device))  # type: ignore[attr-defined]
        self.register_buffer("act_min", torch.full((), float("inf"), device=device))  # type: ignore[attr-defined]
        self.register_buffer("act_max", torch.full((), float("-inf"), device=device))  # type: ignore[attr-defined]

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, w_bits={self.w_bits}, a_bits={self.a_bits}, quantizer={self.quantizer}"  # type: ignore[misc]
        )

    @property
    def quant_levels(self) -> int:
        return 2**self.a_bits - 1

    def set_act_range(self, lo: float, hi: float) -> None:
        """Fix the activation grid to ``[min(lo, 0), max(hi, 0)]``."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        scale = max((hi - lo) / self.quant_levels, 1e-8)
        zero = int(round(-lo / scale))
        self.act_scale.fill_(scale)
        self.act_zero_point.fill_(max(0, min(self.quant_levels, zero)))

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.a_bits >= 32:
            return x
        if self.observing:
            with torch.no_grad():
                self.act_min.fill_(min(float(self.act_min), float(x.min())))
                self.act_max.fill_(max(float(self.act_max), float(x.max())))
            return x
        if self.a_bits == 16:
            return _half_round(x).detach() + (x - x.detach())
        if torch.onnx.is_in_onnx_export() and self.a_bits != 8:
            # ONNX's QuantizeLinear only has 8-bit grids: export the same rounding as plain ops.
            zero = self.act_zero_point.to(x.dtype)
            q = torch.clamp(torch.round(x / self.act_scale) + zero, 0, self.quant_levels)
            return (q - zero) * self.act_scale
        return torch.fake_quantize_per_tensor_affine(
            x, self.act_scale, self.act_zero_point, 0, self.quant_levels
        )

    def _weight(self) -> torch.Tensor:
        weight = self.weight  # type: ignore[attr-defined]
        assert isinstance(weight, torch.Tensor)
        return weight

    def quantized_weight(self) -> torch.Tensor:
        w = self._weight()
        if self.w_bits >= 32:
            return w
        use_cache = not (self.training or torch.is_grad_enabled())
        key = (w._version, w.data_ptr())
        if use_cache and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        with torch.no_grad():
            q = (
                _half_round(w)
                if self.w_bits == 16
                else quantizers.get(self.quantizer)(w.detach(), self.w_bits)
            )
        out = q + (w - w.detach())  # value exactly q, gradient of the identity to w
        if use_cache:
            self._cache = (key, out)
        return out


class QuantConv2d(QuantMixin, nn.Conv2d):
    """``nn.Conv2d`` computing with fake-quantized input and weight (see module docs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.quantize_input(x), self.quantized_weight(), self.bias)


class QuantLinear(QuantMixin, nn.Linear):
    """``nn.Linear`` computing with fake-quantized input and weight (see module docs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantize_input(x), self.quantized_weight(), self.bias)


def quantize_module(module: nn.Module, *, w_bits: int, a_bits: int, quantizer: str = "uniform") -> nn.Module:
    """A quantized copy-free replacement of a conv/linear (shares its parameters).

    Returns ``module`` unchanged when both bit widths are 32. Parameters, buffers and
    hooks (e.g. a sparsity mask) of ``module`` move over to the returned layer.

    Raises:
        AutomcError: ``module`` is not an ``nn.Conv2d`` / ``nn.Linear``, or unknown quantizer.
    """
    if w_bits >= 32 and a_bits >= 32:
        return module
    if isinstance(module, QuantMixin):
        raise AutomcError(f"{type(module).__name__} is already quantized")
    if type(module) is nn.Conv2d:
        cls: type[nn.Module] = QuantConv2d
    elif type(module) is nn.Linear:
        cls = QuantLinear
    else:
        raise AutomcError(f"cannot quantize a {type(module).__name__}; expected nn.Conv2d or nn.Linear")
    new = cls.__new__(cls)
    new.__dict__.update(module.__dict__)
    for key in ("_parameters", "_buffers", "_modules", "_forward_pre_hooks", "_forward_hooks"):
        setattr(new, key, type(getattr(module, key))(getattr(module, key)))
    assert isinstance(new, QuantMixin)
    new._init_quant(w_bits=w_bits, a_bits=a_bits, quantizer=quantizer)
    return new


def calibrate(model: nn.Module, batches: Iterable[torch.Tensor] | Sequence[torch.Tensor]) -> int:
    """Set every quantized layer's activation range from min/max over ``batches``.

    Runs the model in eval mode without gradients (its mode is restored). Returns the
    number of layers calibrated.
    """
    layers = [m for m in model.modules() if isinstance(m, QuantMixin) and m.a_bits < 16]
    if not layers:
        return 0
    was_training = model.training
    model.eval()
    for m in layers:
        m.act_min.fill_(float("inf"))
        m.act_max.fill_(float("-inf"))
        m.observing = True
    try:
        with torch.no_grad():
            n = 0
            for x in batches:
                model(x)
                n += 1
        if n == 0:
            raise AutomcError("activation calibration needs at least one batch")
    finally:
        for m in layers:
            m.observing = False
        model.train(was_training)
    for m in layers:
        if torch.isfinite(m.act_min) and torch.isfinite(m.act_max):
            m.set_act_range(float(m.act_min), float(m.act_max))
    return len(layers)
