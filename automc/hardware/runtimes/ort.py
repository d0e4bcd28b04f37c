"""ONNX Runtime: fp32 ONNX, and int8 QDQ by ONNX Runtime's own static quantization.

Int8 layers are quantized by ``onnxruntime.quantization.quantize_static``: QDQ format,
per-channel symmetric int8 weights, asymmetric uint8 activations calibrated by min/max
over the calibration batches. ONNX Runtime fuses each ``DequantizeLinear → Conv →
QuantizeLinear`` into an integer kernel (``QLinearConv``) when it optimises the session graph.
On an x86-64 CPU without VNNI those kernels multiply uint8 by int8 with AVX2's
``vpmaddubsw``, whose 16-bit pair sums saturate: the fused model then computes something
other than its own QDQ graph (measured on a 2-core AMD EPYC with AVX2, ORT 1.32: a tiny
conv/MLP whose logits reach 0.61 was off by up to 0.126 fused, 0.032 unfused). There the
weights are quantized to 7 bits (``reduce_range``, ONNX Runtime's own advice for such CPUs;
:func:`int8_saturates`), which keeps every pair sum in range; the CUDA and TensorRT
providers keep 8-bit weights.

In a mixed int8/fp32 network only the int8 layers' conv/linear nodes are quantized, and of
the other nodes (``Relu``, ``Add``, ``Clip``, pooling, ...) only those inside an int8 region
(:func:`int8_region`): a connected set of non-weighted nodes whose conv/linear neighbours
are all int8. Quantizing every non-weighted node instead puts a
``QuantizeLinear``/``DequantizeLinear`` pair around float layers, and ONNX Runtime's
optimiser then runs a float conv that sits between a ``DequantizeLinear`` and a
``QuantizeLinear`` as ``QLinearConv`` with its weights quantized per tensor (measured on
resnet20 with every second layer int8: 21 integer convs for 11 int8 layers), so the layers
the plan keeps at fp32 would not run at fp32. Each int8 layer next to a float region pays a
``QuantizeLinear`` on its input or a ``DequantizeLinear`` on its output (and the layout
reorders around them): the precision boundaries the latency model counts
(:meth:`automc.cost.latency.PrecisionRegions.boundaries`). Inside an int8 region a residual
``Add`` runs as ``QLinearAdd``, where at fp32 it fuses into the conv that writes it
(:meth:`automc.cost.latency.PrecisionRegions.int8_add_elements`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from automc.errors import AutomcError
from automc.hardware.cpu import has_vnni, x86_features
from automc.hardware.runtimes.base import Session
from automc.hardware.runtimes.ort_session import GRAPH_OPTIMIZATION, PROVIDERS, load

__all__ = ["OnnxRuntime", "int8_saturates", "nchwc_block_size"]


def nchwc_block_size() -> int:
    """MLAS's NCHWc block size on this x86-64 CPU (16 with AVX-512F, 8 with AVX or AVX2), 0
    elsewhere."""
    features = x86_features()
    if features is None:
        return 0
    if features.get("AVX512F"):
        return 16
    return 8 if features.get("AVX2") or features.get("AVX") else 0


def int8_saturates() -> bool:
    """Whether ONNX Runtime's CPU int8 kernels can saturate on this CPU: x86-64 without
    VNNI (:func:`automc.hardware.cpu.has_vnni`). False on other architectures."""
    return x86_features() is not None and not has_vnni()


class OnnxRuntime:
    """ONNX Runtime on the CPU (``cpu``), CUDA (``cuda``) or TensorRT (``tensorrt``) execution provider.

    Args:
        device: ``cpu``, ``cuda`` or ``tensorrt``; the last two only where
            ``onnxruntime.get_available_providers()`` lists their provider.
    """

    name = "onnxruntime"
    suffix = ".onnx"

    def __init__(self, *, device: str = "cpu") -> None:
        if device not in PROVIDERS:
            raise AutomcError(f"onnxruntime: unknown device {device!r} (known: {', '.join(PROVIDERS)})")
        self.device = device
        self.precisions = (
            frozenset({"fp32", "int8"}) if device == "cpu" else frozenset({"fp32", "fp16", "int8"})
        )

    @property
    def reduce_range(self) -> bool:
        """Whether int8 exports quantize weights to 7 bits: on the CPU provider where
        :func:`int8_saturates` (see the module docstring)."""
        return self.device == "cpu" and int8_saturates()

    def available(self) -> bool:
        """Whether onnxruntime is installed with this device's execution provider."""
        try:
            import onnxruntime as ort
        except ImportError:
            return False
        return self.provider in ort.get_available_providers()

    @property
    def version(self) -> str:
        """``onnxruntime.__version__``."""
        import onnxruntime as ort

        return str(ort.__version__)

    @property
    def provider(self) -> str:
        """The execution provider of :attr:`device`."""
        return PROVIDERS[self.device]

    @property
    def graph_optimization(self) -> str:
        """``ORT_ENABLE_ALL``."""
        return GRAPH_OPTIMIZATION

    @property
    def channel_block(self) -> int:
        """MLAS's NCHWc block on the CPU provider (the NCHWc layout pass runs at
        ``ORT_ENABLE_ALL``): 16 with AVX-512F, 8 with AVX/AVX2, else 0 (also for CUDA/TensorRT)."""
        if self.device != "cpu" or GRAPH_OPTIMIZATION != "ORT_ENABLE_ALL":
            return 0
        return nchwc_block_size()

    def export(
        self,
        model: Any,
        example: Any,
        out: Path,
        *,
        int8_layers: Collection[str] = (),
        calib: Sequence[Any] = (),
    ) -> Path:
        """fp32 ONNX of the deployable network; with ``int8_layers``, its QDQ int8 quantization
        (see the module docstring). See :meth:`automc.hardware.runtimes.Runtime.export`."""
        import onnx

        from automc.hardware.runtimes.deploy import export_onnx, onnx_layer_nodes

        out = Path(out)
        if not int8_layers:
            return export_onnx(model, example, out)
        if not calib:
            raise AutomcError("int8 export needs calibration batches (inputs from the train split)")
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(model, example, Path(tmp) / "fp32.onnx")
            graph = onnx.load(str(fp32)).graph
            int8_nodes = {n for names in onnx_layer_nodes(graph, int8_layers).values() for n in names}
            nodes = sorted(int8_region(graph, int8_nodes))
            _quantize(fp32, out, nodes=nodes, calib=calib, reduce_range=self.reduce_range)
        return out

    def session(self, artifact: Path, *, threads: int) -> Session:
        """An ``InferenceSession`` (``threads`` intra-op, 1 inter-op, ``ORT_ENABLE_ALL``) as a callable."""
        return load(Path(artifact), threads=threads, provider=self.provider)  # type: ignore[no-any-return]


def int8_region(graph: Any, int8_nodes: Collection[str]) -> set[str]:
    """The nodes of an ONNX ``graph`` to quantize: the conv/linear nodes ``int8_nodes``, and
    every node of each int8 region.

    A region is a connected set of non-weighted nodes (joined by the tensors between them;
    ``Constant`` nodes, initialisers and the graph's inputs and outputs join nothing); it is
    int8 when the conv/linear nodes that read from it or write into it exist and are all in
    ``int8_nodes``. Each region is one dependency group's tensors in automc's layer table
    (a dwconv starts a new one), which is how the latency model counts them.
    """
    from automc.hardware.runtimes.deploy import WEIGHTED_OPS

    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    int8 = set(int8_nodes)
    chosen = set(int8)
    seen: set[str] = set()
    for first in graph.node:
        if first.op_type in WEIGHTED_OPS or first.op_type == "Constant" or first.name in seen:
            continue
        region, weighted, stack = [first.name], set(), [first]
        seen.add(first.name)
        while stack:
            node = stack.pop()
            nxt = [producer[t] for t in node.input if t in producer]
            nxt += [c for t in node.output for c in consumers.get(t, [])]
            for other in nxt:
                if other.op_type in WEIGHTED_OPS:
                    weighted.add(other.name)
                elif other.op_type != "Constant" and other.name not in seen:
                    seen.add(other.name)
                    region.append(other.name)
                    stack.append(other)
        if weighted and weighted <= int8:
            chosen.update(region)
    return chosen


def _quantize(fp32: Path, out: Path, *, nodes: list[str], calib: Sequence[Any], reduce_range: bool) -> None:
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it: Iterator[Any] = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            if batch is None:
                return None
            x = batch.detach().cpu().numpy() if hasattr(batch, "detach") else batch
            return {"input": np.ascontiguousarray(x, dtype=np.float32)}

    out.parent.mkdir(parents=True, exist_ok=True)
    # the quantizer logs advice (shape-inference pre-processing) on the root logger
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        _quantize_static(fp32, out, Reader(), nodes, reduce_range=reduce_range)
    finally:
        root.setLevel(level)
    _drop_unused_constants(out)


def _drop_unused_constants(path: Path) -> None:
    """Remove the ``Constant`` nodes nothing reads: the bounds of the ``Clip`` nodes the
    quantizer folded into a ``QuantizeLinear`` (ONNX Runtime warns about each on loading)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    dead = [n for n in graph.node if n.op_type == "Constant" and not set(n.output) & used]
    if dead:
        for node in dead:
            graph.node.remove(node)
        onnx.save(model, str(path))


def _quantize_static(fp32: Path, out: Path, reader: Any, nodes: list[str], *, reduce_range: bool) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(fp32),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=reduce_range,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_quantize=nodes,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
