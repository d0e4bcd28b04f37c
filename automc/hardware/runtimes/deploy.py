"""The deployable float network of a compressed model, and its ONNX graph (torch).

:func:`deployable` turns the fake-quantized, masked model that automc trains into the plain
network a runtime executes: every conv/linear becomes a plain ``nn.Conv2d`` / ``nn.Linear``
holding the weight it computes with (sparsity mask applied, weight quantizer applied), and
BatchNorm is folded. A layer whose input activation is fake-quantized at ≤ 8 bits keeps its
calibrated activation range as a clip of its input (:data:`INPUT_RANGE`): a network
fine-tuned with that clamp computes another function without it (and int8 calibration on
the unclamped network picks other ranges). :func:`onnx_layer_nodes` maps automc layer names
to the ONNX nodes that compute them, through the weight initialisers
(``layer1.0.conv1.weight``), which ``torch.onnx.export`` names after the module path.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automc.compress.quant import QuantMixin
from automc.compress.sparsity import MASK
from automc.errors import AutomcError
from automc.hardware.timing import fold_bn

__all__ = ["INPUT_RANGE", "WEIGHTED_OPS", "deployable", "export_onnx", "onnx_layer_nodes"]

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
"""ONNX ops that compute a conv/linear layer."""

INPUT_RANGE = "automc_input_range"
"""Attribute of a deployable conv/linear: ``(lo, hi)``, the range of the unsigned grid of
≤ 8 bits its input was fake-quantized on; its forward pre-hook clamps the input to it."""


def _clip_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    lo, hi = getattr(module, INPUT_RANGE)
    return (args[0].clamp(lo, hi), *args[1:])


def _input_range(module: nn.Module) -> tuple[float, float] | None:
    if not isinstance(module, QuantMixin) or module.a_bits > 8:
        return None
    scale, zero = float(module.act_scale), int(module.act_zero_point)
    return (-zero * scale, (module.quant_levels - zero) * scale)


def _effective_weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    with torch.no_grad():
        mask = getattr(module, MASK, None)
        if isinstance(mask, torch.Tensor):
            weight.mul_(mask)
        if isinstance(module, QuantMixin):
            return module.quantized_weight().detach().clone()
        return weight.detach().clone()


def _plain(module: nn.Module) -> nn.Module:
    weight = _effective_weight(module)
    bias = module.bias.detach().clone() if isinstance(module.bias, torch.Tensor) else None
    if isinstance(module, nn.Conv2d):
        new: nn.Module = nn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,  # type: ignore[arg-type]
            stride=module.stride,  # type: ignore[arg-type]
            padding=module.padding,  # type: ignore[arg-type]
            dilation=module.dilation,  # type: ignore[arg-type]
            groups=module.groups,
            bias=bias is not None,
            padding_mode=module.padding_mode,
        )
    else:
        assert isinstance(module, nn.Linear)
        new = nn.Linear(module.in_features, module.out_features, bias=bias is not None)
    with torch.no_grad():
        new.weight.copy_(weight)  # type: ignore[operator]
        if bias is not None:
            new.bias.copy_(bias)  # type: ignore[union-attr,operator]
    return new.to(weight.device)


def deployable(model: nn.Module) -> nn.Module:
    """A float eval-mode copy of ``model`` as it deploys: plain layers with the weights they
    compute with (masked, quantized by the layer's weight quantizer), BatchNorm folded.

    A layer whose input is fake-quantized at ≤ 8 bits clamps its input to the calibrated
    range of that grid (:data:`INPUT_RANGE`, a forward pre-hook that ``torch.onnx.export``
    writes as ``Clip``); the rounding onto the grid is left to the runtime (its int8 kernels
    quantize the layer's input, calibrated on this network). Wider activation grids are dropped.
    """
    out = copy.deepcopy(model).eval()
    swaps = [
        (name, m)
        for name, m in out.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and (isinstance(m, QuantMixin) or hasattr(m, MASK))
    ]
    ranges = {name: r for name, m in swaps if (r := _input_range(m)) is not None}
    for name, m in swaps:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, _plain(m))
    out = fold_bn(out)
    for name, r in ranges.items():
        layer = out.get_submodule(name)
        setattr(layer, INPUT_RANGE, r)
        layer.register_forward_pre_hook(_clip_input)
    return out


def torch_onnx_export(model: nn.Module, args: tuple[Any, ...], out: Path, **kwargs: Any) -> None:
    """``torch.onnx.export(model, args, out, opset_version=17, dynamo=False, **kwargs)``, its
    warnings and console output silenced.

    On an op it cannot export, torch's TorchScript exporter prints the whole IR graph on the
    process's standard output (its ONNX log is switched on by every export), then raises; the
    exception names the op, and automc reports it in one line.
    """
    import contextlib
    import io
    import os
    import sys
    import tempfile

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(sink.fileno(), 1)
            with contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(model, args, str(out), opset_version=17, dynamo=False, **kwargs)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def export_onnx(model: nn.Module, example: torch.Tensor, out: Path) -> Path:
    """``torch.onnx.export`` of :func:`deployable` ``(model)``: opset 17, input ``input``, output
    ``logits``, a dynamic batch axis, weights as initialisers named after their modules."""
    net = deployable(model).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch_onnx_export(
        net,
        (example.detach().cpu(),),
        out,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    _inline_shared_initializers(out)
    _name_linear_weights(out, net)
    return out


def _inline_shared_initializers(path: Path) -> None:
    """Give every layer its own initialisers again.

    ``torch.onnx.export`` deduplicates equal tensors (e.g. the zero biases of BatchNorms
    folded at their initial values) into one initialiser read through ``Identity`` nodes;
    ONNX Runtime's quantizer then cannot quantize those layers' biases, nor can
    :func:`onnx_layer_nodes` name the layer of a shared weight.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    aliases = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in inits]
    if not aliases:
        return
    for node in aliases:
        copy_ = onnx.TensorProto()
        copy_.CopyFrom(inits[node.input[0]])
        copy_.name = node.output[0]
        graph.initializer.append(copy_)
        graph.node.remove(node)
    onnx.save(model, str(path))


def _name_linear_weights(path: Path, net: nn.Module) -> None:
    """Name the weight of each linear layer applied to a tensor of more than two dimensions (a
    channels-last MLP, as in ConvNeXt) after its module again.

    ``torch.onnx.export`` writes such a layer as a ``MatMul`` whose weight is the transposed
    ``weight``, constant-folded into an initialiser with a generated name (``onnx::MatMul_42``),
    so :func:`onnx_layer_nodes` could not tell which layer it computes. Each such initialiser
    is matched to the one ``nn.Linear`` whose transposed weight it equals and renamed
    ``<module>.weight``.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    unnamed = {
        n.input[1]
        for n in graph.node
        if n.op_type == "MatMul"
        and len(n.input) > 1
        and n.input[1] in inits
        and not n.input[1].endswith(".weight")
    }
    linears = {
        f"{name}.weight": m.weight.detach().cpu().numpy().T
        for name, m in net.named_modules()
        if isinstance(m, nn.Linear) and f"{name}.weight" not in inits
    }
    renamed: dict[str, str] = {}
    for old in sorted(unnamed):
        data = numpy_helper.to_array(inits[old])
        owners = [n for n, w in linears.items() if w.shape == data.shape and np.array_equal(w, data)]
        if len(owners) == 1 and owners[0] not in renamed.values():
            renamed[old] = owners[0]
    if not renamed:
        return
    for old, new_name in renamed.items():
        inits[old].name = new_name
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    onnx.save(model, str(path))


def onnx_layer_nodes(graph: Any, layers: Collection[str]) -> Mapping[str, list[str]]:
    """Names of the ``Conv``/``Gemm``/``MatMul`` nodes of each automc layer in an ONNX ``graph``.

    A node belongs to layer ``L`` when its weight initialiser is ``L.weight`` or lies under
    ``L`` (``L.0.weight``: the factors of a low-rank layer).

    Raises:
        AutomcError: a layer computes in no node of the graph.
    """
    inits = {i.name for i in graph.initializer}
    owners: dict[str, str] = {}
    for node in graph.node:
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in inits:
            owners[node.name] = node.input[1].removesuffix(".weight")
    found: dict[str, list[str]] = {}
    for layer in layers:
        found[layer] = [n for n, path in owners.items() if path == layer or path.startswith(layer + ".")]
    missing = sorted(k for k, v in found.items() if not v)
    if missing:
        raise AutomcError(f"no conv/linear node of the ONNX graph computes layer(s) {', '.join(missing)}")
    return found
