"""Where training runs: ``--device auto|cpu|cuda|cuda:N`` and mixed precision.

:func:`check_name` checks the spelling without importing torch (config validation);
:func:`resolve` turns a name into a ``torch.device`` and refuses ``cuda`` on a machine
without CUDA. :class:`Placement` is the record the training loops, the proxy and the
pipeline receive: the device, whether to autocast and how many DataLoader worker processes
feed it. Latency is never measured here: it is timed as the device profile says
(``automc.hardware``), wherever training ran.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from automc.errors import AutomcError

_NAME = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
CUDA_WORKERS = 4
"""Most DataLoader worker processes a CUDA placement gets by default (fewer with fewer usable cores)."""


def check_name(name: str) -> str | None:
    """``None`` when ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; else the problem."""
    if isinstance(name, str) and _NAME.match(name):
        return None
    return f"must be auto, cpu, cuda or cuda:N, got {name!r}"


def resolve(name: str = "auto") -> Any:
    """The ``torch.device`` of ``name``: ``auto`` is ``cuda`` when CUDA is available, else ``cpu``;
    ``cuda`` is the current CUDA device, with its index.

    Raises:
        AutomcError: a bad spelling, ``cuda`` without CUDA, or a GPU index that does not exist.
    """
    import torch

    problem = check_name(name)
    if problem:
        raise AutomcError(f"--device {problem}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise AutomcError(
            f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)"
        )
    if name in ("auto", "cuda"):
        return torch.device("cuda", torch.cuda.current_device())
    device = torch.device(name)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise AutomcError(f"--device {name}: this machine has {count} CUDA device(s), numbered from 0")
    return device


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where and how a training loop runs.

    Attributes:
        device: the ``torch.device`` (or its name) models and batches are moved to.
        amp: autocast training and fine-tuning forward passes on CUDA (bf16 where the GPU
            supports it, else fp16 with a gradient scaler); ignored on the CPU.
        workers: DataLoader worker processes of automc's training and evaluation loaders
            (0: batches are read in the training process). Batches come out in the same
            order and with the same contents whatever the count (the sampler is seeded in
            the main process); a dataset that draws random numbers itself sees other draws.
    """

    device: Any = "cpu"
    amp: bool = False
    workers: int = 0

    @classmethod
    def of(cls, name: str = "auto", *, amp: bool = True, workers: int | None = None) -> Placement:
        """The placement of a device name (see :func:`resolve`); ``workers`` ``None``: none
        on the CPU (they would compete with torch's threads for the cores), on CUDA
        ``CUDA_WORKERS`` or the usable cores when fewer."""
        device = resolve(name)
        if workers is None:
            workers = 0 if device.type == "cpu" else min(CUDA_WORKERS, len(os.sched_getaffinity(0)))
        return cls(device=device, amp=amp, workers=workers)

    @property
    def torch_device(self) -> Any:
        import torch

        return torch.device(self.device)

    @property
    def is_cuda(self) -> bool:
        return self.torch_device.type == "cuda"

    def loader_options(self) -> dict[str, Any]:
        """Keyword arguments of ``automc.data.loader`` for this placement: its ``workers`` and
        pinned memory on CUDA (the copies to the GPU are asynchronous then)."""
        return {"workers": self.workers, "pin_memory": self.is_cuda}

    def autocast_dtype(self) -> Any:
        """The autocast dtype on CUDA with ``amp`` (bf16 if supported, else fp16); ``None`` otherwise."""
        import torch

        if not (self.amp and self.is_cuda):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


CPU = Placement(device="cpu", amp=False)
"""Training on the CPU in full precision."""
