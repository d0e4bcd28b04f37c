"""What a runtime is: the protocol every deployment runtime implements (torch-free).

A runtime turns a compressed ``nn.Module`` into the artifact that ships (:meth:`Runtime.export`),
loads that artifact as a callable running one batch (:meth:`Runtime.session`), and says which
precisions it executes natively (:attr:`Runtime.precisions`). Latencies are measured by the
one timing protocol (:func:`automc.hardware.timing.measure_artifacts_ms`), never by a
runtime's own timer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from automc.plan import CompressionPlan

__all__ = ["Runtime", "Session", "accuracy", "int8_layers"]

Session = Callable[["np.ndarray"], "np.ndarray"]
"""One loaded artifact: float32 NCHW input batch → float32 logits (numpy in, numpy out)."""


@runtime_checkable
class Runtime(Protocol):
    """A deployment runtime (``automc list runtimes``).

    Attributes:
        name: registry name (``torch``, ``onnxruntime``); a profile's ``runtime.framework``.
        device: ``cpu`` or ``cuda``.
        precisions: what it executes natively, e.g. ``frozenset({"fp32", "int8"})``.
        suffix: file suffix of its artifacts (``.onnx``, ``.pt2``).
    """

    name: str
    device: str
    precisions: frozenset[str]
    suffix: str

    def available(self) -> bool:
        """Whether the runtime (and the execution provider of :attr:`device`) is installed."""
        ...

    @property
    def version(self) -> str:
        """The installed runtime's version string."""
        ...

    @property
    def provider(self) -> str:
        """Execution provider, e.g. ``CPUExecutionProvider`` (``eager`` for torch)."""
        ...

    @property
    def graph_optimization(self) -> str:
        """Graph-optimisation level its sessions use (``ORT_ENABLE_ALL``; ``none`` for torch)."""
        ...

    @property
    def channel_block(self) -> int:
        """Channels per block of its blocked float conv layout on this machine (0: none);
        see :func:`automc.cost.latency.off_block_layout`."""
        ...

    def export(
        self,
        model: Any,
        example: Any,
        out: Path,
        *,
        int8_layers: Collection[str] = (),
        calib: Sequence[Any] = (),
    ) -> Path:
        """Write the deployable artifact of ``model`` (a compressed or float ``nn.Module``) to ``out``.

        Fake-quantized layers are exported as float layers holding the weights they compute
        with; BatchNorm is folded. Layers named in ``int8_layers`` run as int8 kernels
        (static quantization calibrated on ``calib``, input batches from the train split).

        Raises:
            AutomcError: ``int8_layers`` on a runtime without ``int8``, a name that is no
                conv/linear of ``model``, or int8 without calibration batches.
        """
        ...

    def session(self, artifact: Path, *, threads: int) -> Session:
        """Load ``artifact`` as a callable running one batch with ``threads`` intra-op threads."""
        ...


def int8_layers(plan: CompressionPlan) -> frozenset[str]:
    """The layers of ``plan`` that a runtime with ``int8`` kernels executes at int8.

    A layer runs at int8 when both its weights and its input activations are at most
    8 bits (bits below 8 are then simulated: the int8 kernel runs on values of a coarser grid).
    """
    return frozenset(n for n, c in plan.layers.items() if c.w_bits <= 8 and c.a_bits <= 8)


def accuracy(session: Session, batches: Iterable[tuple[Any, Any]]) -> float:
    """Top-1 accuracy of ``session`` over ``(inputs, labels)`` batches (tensors or arrays).

    Tensors are converted with ``.numpy()``, so this needs no torch import of its own.
    """
    import numpy as np

    correct = total = 0
    for x, y in batches:
        xs = np.ascontiguousarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32)
        ys = np.asarray(y.numpy() if hasattr(y, "numpy") else y)
        pred = np.asarray(session(xs)).argmax(axis=1)
        correct += int((pred == ys).sum())
        total += int(ys.shape[0])
    return correct / total if total else float("nan")
