"""Loading an ONNX artifact into an ONNX Runtime session (imports no torch).

Kept apart from the exporter so that timing and evaluating an ``.onnx`` file imports only
``onnxruntime`` and numpy, as a deployment does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automc.errors import AutomcError, one_line

__all__ = ["GRAPH_OPTIMIZATION", "PROVIDERS", "load", "session_options"]

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
"""automc device → ONNX Runtime execution provider."""

GRAPH_OPTIMIZATION = "ORT_ENABLE_ALL"
SPINNING = "session.intra_op.allow_spinning"
"""Session config key of intra-op worker spinning, set to ``"0"`` (off) in every session.

A worker that spins after a run keeps its core busy for a while. Timed in interleaved
rounds, many sessions' spinning workers then compete with the session being timed: on
the 2-core CPU, 25 resnet20 variants timed twice in one run agreed within 10% for 56% of
them with spinning, 96% without (RMSPE 15% against 4%). Off, a session's latency is that
of a request reaching an idle runtime, as a server taking requests one at a time sees it
(measured 0.66 ms against 0.45 ms for back-to-back runs of resnet20 with spinning)."""


def session_options(*, threads: int, optimized_path: Path | None = None) -> Any:
    """``SessionOptions``: ``threads`` intra-op threads that do not spin (:data:`SPINNING`), one
    inter-op thread, ``ORT_ENABLE_ALL``.

    Args:
        threads: intra-op threads.
        optimized_path: where ONNX Runtime saves the graph after its optimisation (for
            inspecting which kernels run), or ``None``.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
    opts.log_severity_level = 3
    opts.add_session_config_entry(SPINNING, "0")
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    return opts


def load(artifact: Path, *, threads: int, provider: str, optimized_path: Path | None = None) -> Any:
    """A callable running one float32 batch through ``artifact`` on ``provider``.

    Raises:
        AutomcError: the file is missing or not a model ONNX Runtime can load.
    """
    import onnxruntime as ort

    if not Path(artifact).is_file():
        raise AutomcError(f"ONNX artifact {artifact} does not exist")
    try:
        sess = ort.InferenceSession(
            str(artifact),
            sess_options=session_options(threads=threads, optimized_path=optimized_path),
            providers=[provider],
        )
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise AutomcError(f"onnxruntime cannot load {artifact}: {one_line(e, named=False)}") from e
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]  # type: ignore[no-any-return]

    return run
