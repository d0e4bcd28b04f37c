"""``apply(model, plan)``: a new, really smaller model (pruned, factorised, sparse, fake-quantized).

Steps, in this order, on a deep copy of the model (the original is untouched):

1. structured pruning of each dependency group with ``keep_ratio < 1``
   (:mod:`automc.compress.prune`, channels chosen by the plan's criterion, removed by
   Torch-Pruning); the real channel counts are then checked against the plan's
   prediction (:func:`automc.plan.kept_channels`);
2. low-rank factorisation of layers with a ``rank`` (:mod:`automc.compress.lowrank`:
   ``svd`` or ``sparse_lowrank``; the rank is clipped to the pruned layer's ``min(m, n k k)``);
3. fake quantization of layers with ``w_bits`` or ``a_bits`` below 32
   (:mod:`automc.compress.quant`; factor pairs are quantized factor by factor);
4. unstructured magnitude sparsity (``choice.sparsity``, :mod:`automc.compress.sparsity`),
   applied to the float weights before they are quantized in ``forward``;
5. activation-range calibration of the quantized layers on ``calib_batches`` (or on
   ``example_input`` when none are given).

A compressed model is saved as its ``state_dict`` plus the plan (:func:`save_compressed`)
and rebuilt by re-applying the plan to a fresh model (:func:`load_compressed`).

Importing this package does not import torch: :func:`apply`, :func:`save_compressed`,
:func:`load_compressed` (:mod:`automc.compress.compressor`) and the quantized layers are
loaded on first use, so the registries (``criteria``, ``quantizers``, ``lowrank``) are
listed and plans validated without torch.

Caveats: the result exports to ONNX with the TorchScript exporter
(``torch.onnx.export(..., opset_version=13, dynamo=False)``; weight rounding is exported
as plain ops), not with the dynamo exporter. Grouped (non-depthwise) convolutions are
neither pruned nor factorised.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automc.compress.compressor import apply, load_compressed, save_compressed
    from automc.compress.quant import QuantConv2d, QuantLinear

__all__ = ["QuantConv2d", "QuantLinear", "apply", "load_compressed", "save_compressed"]

_LAZY = {
    "apply": "automc.compress.compressor",
    "load_compressed": "automc.compress.compressor",
    "save_compressed": "automc.compress.compressor",
    "QuantConv2d": "automc.compress.quant",
    "QuantLinear": "automc.compress.quant",
}


def __getattr__(name: str) -> Any:
    """The public names that need torch, imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
