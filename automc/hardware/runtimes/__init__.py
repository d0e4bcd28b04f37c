"""Deployment runtimes (``automc list runtimes``): export, load and the precisions they execute.

* ``torch``: PyTorch eager, fp32 (:mod:`~automc.hardware.runtimes.torch_eager`).
* ``onnxruntime``: ONNX Runtime, fp32 and int8 QDQ on the CPU execution provider; CUDA and
  TensorRT providers where installed (:mod:`~automc.hardware.runtimes.ort`).
* ``openvino``: OpenVINO on the CPU, the same ONNX artifacts (optional extra ``openvino``;
  :mod:`~automc.hardware.runtimes.openvino`).

A runtime implements :class:`Runtime`; :func:`get` returns an installed one. Importing this
package imports neither torch nor onnxruntime. Example::

    from automc.hardware import runtimes
    from automc.hardware.timing import measure_artifacts_ms

    rt = runtimes.get("onnxruntime")
    path = rt.export(model, example, Path("m.onnx"), int8_layers={"conv1"}, calib=batches)
    fn = rt.session(path, threads=2)                 # numpy batch -> numpy logits
    [ms] = measure_artifacts_ms(rt, [path], example.numpy(), threads=2)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from automc.errors import AutomcError
from automc.hardware.runtimes.base import Runtime, Session, accuracy, int8_layers
from automc.registry import Registry

if TYPE_CHECKING:
    from automc.hardware.runtimes.winner import Export

__all__ = ["REGISTRY", "Runtime", "Session", "accuracy", "export_winner", "get", "int8_layers"]

REGISTRY: Registry[type] = Registry(kind="runtime")
REGISTRY.add("torch", "automc.hardware.runtimes.torch_eager:TorchEager", "PyTorch eager, fp32 (cpu, cuda)")
REGISTRY.add(
    "onnxruntime",
    "automc.hardware.runtimes.ort:OnnxRuntime",
    "ONNX Runtime: fp32 and int8 QDQ on CPU; CUDA/TensorRT providers where installed",
)
REGISTRY.add(
    "openvino",
    "automc.hardware.runtimes.openvino:OpenVino",
    "OpenVINO: fp32 and int8 QDQ ONNX on CPU (extra)",
)

_INSTALL = {
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu for cuda/tensorrt)",
    "torch": "pip install torch",
    "openvino": "pip install 'automc[openvino]'",
}


def get(name: str, *, device: str = "cpu") -> Runtime:
    """The installed runtime ``name`` on ``device``.

    Raises:
        AutomcError: unknown runtime or device, or the runtime (or the execution provider
            of ``device``) is not installed.
    """
    runtime: Runtime = REGISTRY.get(name)(device=device)
    if not runtime.available():
        raise AutomcError(
            f"runtime {name!r} on {device} is not installed here ({_INSTALL.get(name, 'install it')})"
        )
    return runtime


def export_winner(run_dir: Path, trial: int, runtime: str, out: Path, *, device: str = "cpu") -> Export:
    """Re-export the winner of ``trial`` recorded in the run folder ``run_dir`` for ``runtime`` to
    ``out``, and measure its test accuracy there (:func:`automc.hardware.runtimes.winner.export_winner`)."""
    from automc.hardware.runtimes.winner import export_winner as _export

    return _export(Path(run_dir), int(trial), runtime, Path(out), device=device)
