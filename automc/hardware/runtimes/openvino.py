"""OpenVINO on the CPU: the same fp32 / int8 QDQ ONNX artifacts as ONNX Runtime (optional extra).

OpenVINO reads an ONNX QDQ model and runs its quantized convolutions and matrix products
with int8 kernels (its low-precision transformations fold each ``DequantizeLinear`` pair
into the layer), so the artifact is exported exactly as for ``onnxruntime``
(:class:`automc.hardware.runtimes.ort.OnnxRuntime.export`). Install with
``pip install automc[openvino]``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from automc.errors import AutomcError
from automc.hardware.runtimes.base import Session

__all__ = ["OpenVino"]


class OpenVino:
    """OpenVINO Runtime on the ``cpu`` device."""

    name = "openvino"
    suffix = ".onnx"
    precisions = frozenset({"fp32", "int8"})

    def __init__(self, *, device: str = "cpu") -> None:
        if device != "cpu":
            raise AutomcError(f"openvino: unknown device {device!r} (known: cpu)")
        self.device = device

    def available(self) -> bool:
        """Whether openvino (and onnxruntime, whose quantizer writes the int8 artifacts) is installed."""
        try:
            import onnxruntime  # noqa: F401
            import openvino  # noqa: F401
        except ImportError:
            return False
        return True

    @property
    def version(self) -> str:
        """``openvino.__version__``."""
        import openvino as ov

        return str(ov.__version__)

    @property
    def provider(self) -> str:
        """OpenVINO's device name, ``CPU``."""
        return "CPU"

    @property
    def graph_optimization(self) -> str:
        """OpenVINO's compile-time transformations (always on): ``default``."""
        return "default"

    @property
    def channel_block(self) -> int:
        """0: not modelled for OpenVINO (its CPU plugin picks blocked layouts per node)."""
        return 0

    def export(
        self,
        model: Any,
        example: Any,
        out: Path,
        *,
        int8_layers: Collection[str] = (),
        calib: Sequence[Any] = (),
    ) -> Path:
        """The fp32 or int8 QDQ ONNX artifact (see :meth:`automc.hardware.runtimes.ort.OnnxRuntime.export`)."""
        from automc.hardware.runtimes.ort import OnnxRuntime

        return OnnxRuntime(device="cpu").export(model, example, out, int8_layers=int8_layers, calib=calib)

    def session(self, artifact: Path, *, threads: int) -> Session:
        """A compiled model (``threads`` inference threads, latency hint, fp32 float layers) as a callable."""
        from automc.hardware.runtimes.ov_session import load

        return load(Path(artifact), threads=threads)  # type: ignore[no-any-return]
