"""CIFAR-10's python batches, read without running the code a pickle can carry.

The python version of CIFAR-10 (``cifar-10-batches-py``: ``data_batch_1`` … ``_5`` and
``test_batch``) is a set of pickles, and ``pickle.load`` (what torchvision's ``CIFAR10``
calls) executes whatever a pickle names: a data folder a user is handed would run code.
:func:`read_batch` unpickles with an allow-list of the globals a numpy array needs
(``numpy.ndarray``, ``numpy.dtype``, numpy's ``_reconstruct`` and ``scalar``, and
``_codecs.encode`` for bytes in protocol-2 pickles) and refuses every other one, then checks
the batch's fields (``data``: uint8 rows of 3×32×32 pixels, ``labels``: one class 0–9 per
row), naming the file and the field that is wrong.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from automc.errors import AutomcError, one_line

__all__ = ["TEST_BATCH", "TRAIN_BATCHES", "read_batch", "read_split"]

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
PIXELS = 3 * 32 * 32


_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
"""Where numpy 1 and numpy 2 pickles name ``_reconstruct`` and ``scalar``."""


def _multiarray(name: str) -> Any:
    try:
        module = importlib.import_module("numpy._core.multiarray")
    except ImportError:
        module = importlib.import_module("numpy.core.multiarray")
    return getattr(module, name)


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds plain containers and numpy arrays, and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _MULTIARRAY and name in ("_reconstruct", "scalar"):
            return _multiarray(name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        raise pickle.UnpicklingError(f"refused global {module}.{name} (a CIFAR batch holds only arrays)")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: its images as uint8 ``(N, 3, 32, 32)`` and its labels ``(N,)``.

    Raises:
        AutomcError: the file is missing, not a pickle of a batch, names a global a batch
            does not need, or has a wrong ``data`` or ``labels`` field.
    """
    where = f"cifar10: {path}"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AutomcError(f"{where}: cannot read ({e.strerror or e})") from None
    try:
        batch = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the file's, one line
        raise AutomcError(f"{where}: not a CIFAR-10 python batch ({one_line(e, 200, named=False)})") from None
    if not isinstance(batch, dict):
        raise AutomcError(f"{where}: not a CIFAR-10 python batch (a {type(batch).__name__}, not a dict)")
    fields = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data = fields.get("data")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != PIXELS
    ):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise AutomcError(f"{where}: field 'data' must be uint8 rows of {PIXELS} pixels, got {got}")
    labels = fields.get("labels")
    targets = None
    if isinstance(labels, (list, np.ndarray)) and all(isinstance(t, (int, np.integer)) for t in labels):
        targets = np.asarray(labels, dtype=np.int64)
    if (
        targets is None
        or targets.shape != (len(data),)
        or (targets.size and not 0 <= targets.min() <= targets.max() <= 9)
    ):
        raise AutomcError(f"{where}: field 'labels' must hold one class 0-9 per row of 'data' ({len(data)})")
    return data.reshape(-1, 3, 32, 32), targets


def read_split(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The batches ``names`` of ``folder`` (``cifar-10-batches-py``), concatenated."""
    parts = [read_batch(folder / name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
