"""Loading an ONNX artifact into an OpenVINO compiled model (imports no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automc.errors import AutomcError, one_line

__all__ = ["load"]


def load(artifact: Path, *, threads: int, device: str = "CPU") -> Any:
    """A callable running one float32 batch through ``artifact`` with OpenVINO on ``device``.

    The model is compiled once per input shape (static shapes run OpenVINO's fastest
    kernels), with ``threads`` inference threads, the latency performance hint and fp32 as
    the float precision (so float layers are not lowered to bf16 where the CPU has it).

    Raises:
        AutomcError: the file is missing or not a model OpenVINO can read.
    """
    import openvino as ov

    if not Path(artifact).is_file():
        raise AutomcError(f"ONNX artifact {artifact} does not exist")
    core = ov.Core()
    try:
        model = core.read_model(str(artifact))
    except Exception as e:  # noqa: BLE001 - OpenVINO raises its own untyped errors
        raise AutomcError(f"openvino cannot read {artifact}: {one_line(e, named=False)}") from e
    config = {
        "INFERENCE_NUM_THREADS": int(threads),
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    requests: dict[tuple[int, ...], Any] = {}

    def run(x: np.ndarray) -> np.ndarray:
        request = requests.get(x.shape)
        if request is None:
            shaped = model.clone()
            shaped.reshape(list(x.shape))
            request = requests[x.shape] = core.compile_model(shaped, device, config).create_infer_request()
        request.infer({0: x})
        return np.array(request.get_output_tensor(0).data)

    return run
