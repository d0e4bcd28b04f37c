"""PyTorch eager: the deployable float network run op by op, as automc has always timed it.

The artifact is a ``torch.export`` program (``.pt2``: graph and weights, no pickled code);
its session runs ``ExportedProgram.module()`` under ``torch.inference_mode()``. fp32 only:
fake-quantized layers run as float layers holding their quantized weights.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from automc.errors import AutomcError, one_line
from automc.hardware.runtimes.base import Session

__all__ = ["TorchEager"]


class TorchEager:
    """PyTorch eager execution on ``cpu`` or ``cuda``."""

    name = "torch"
    suffix = ".pt2"
    precisions = frozenset({"fp32"})

    def __init__(self, *, device: str = "cpu") -> None:
        if device not in ("cpu", "cuda"):
            raise AutomcError(f"torch: unknown device {device!r} (known: cpu, cuda)")
        self.device = device

    def available(self) -> bool:
        """Whether torch is installed (and, for ``cuda``, sees a GPU)."""
        try:
            import torch
        except ImportError:
            return False
        return self.device == "cpu" or bool(torch.cuda.is_available())

    @property
    def version(self) -> str:
        """``torch.__version__``."""
        import torch

        return str(torch.__version__)

    @property
    def provider(self) -> str:
        """``eager``."""
        return "eager"

    @property
    def graph_optimization(self) -> str:
        """``none``."""
        return "none"

    @property
    def channel_block(self) -> int:
        """0: eager PyTorch has no layout pass (oneDNN blocks internally, per call)."""
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
        """``torch.export.save`` of the deployable float network (see ``Runtime.export``)."""
        import torch

        from automc.hardware.runtimes.deploy import deployable

        if int8_layers:
            raise AutomcError("the torch runtime executes fp32 only; it has no int8 layers to export")
        net = deployable(model).cpu()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            # traced at batch 2 with a dynamic batch axis (a batch of 1 would be specialised)
            x = example.detach().cpu()[:1].expand(2, *example.shape[1:]).contiguous()
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(net, (x,), dynamic_shapes=({0: batch},))
        except Exception as e:  # noqa: BLE001 - torch.export raises many error types
            raise AutomcError(f"torch.export cannot capture the model: {one_line(e, named=False)}") from e
        torch.export.save(program, str(out))
        return out

    def session(self, artifact: Path, *, threads: int) -> Session:
        """The loaded program as a callable; sets torch's intra-op thread count to ``threads``
        (process-wide; :func:`automc.hardware.timing.measure_artifacts_ms` restores it)."""
        import numpy as np
        import torch

        if not Path(artifact).is_file():
            raise AutomcError(f"torch artifact {artifact} does not exist")
        module = torch.export.load(str(artifact)).module().to(self.device)
        torch.set_num_threads(int(threads))
        device = torch.device(self.device)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                y = module(torch.from_numpy(x).to(device))
            return y.cpu().numpy()  # type: ignore[no-any-return]

        return run
