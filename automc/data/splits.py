"""``Splits``: train / val / test data plus what a model needs to know about it.

Built-in datasets return one from :func:`automc.data.load`; a user builds one from their
own ``torch.utils.data.Dataset`` or ``DataLoader`` objects::

    splits = automc.data.Splits(train=train_loader, val=val_set, test=test_set)
    automc.search(config, data=splits)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from automc.data.options import canonical_augment
from automc.errors import AutomcError

DIGEST_BATCH = 512
"""Samples per batch when hashing a split's tensors."""


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over the shapes, dtypes and bytes of ``tensors``."""
    h = hashlib.sha256()
    for t in tensors:
        c = t.detach().cpu().contiguous()
        h.update(f"{tuple(c.shape)}{c.dtype}".encode())
        h.update(c.numpy().tobytes())
    return h.hexdigest()


def _as_dataset(part: Any, role: str) -> Dataset:
    """A ``DataLoader``'s dataset, or ``part`` itself when it is a sized, indexable dataset."""
    if isinstance(part, DataLoader):
        part = part.dataset
    if not (hasattr(part, "__getitem__") and hasattr(part, "__len__")):
        raise AutomcError(
            f"Splits.{role}: expected a torch Dataset or DataLoader of (input, target), got {type(part).__name__}"
        )
    if len(part) == 0:
        raise AutomcError(f"Splits.{role}: empty")
    return part  # type: ignore[no-any-return]


def _first_sample(ds: Dataset, role: str) -> tuple[torch.Tensor, Any]:
    sample = ds[0]
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2 and isinstance(sample[0], torch.Tensor)):
        raise AutomcError(
            f"Splits.{role}: each sample must be a pair (input tensor, integer target), got {type(sample).__name__}"
        )
    return sample[0], sample[1]


def _labels(ds: Dataset) -> torch.Tensor:
    """All targets of ``ds``, read cheaply where the dataset keeps them (TensorDataset,
    torchvision ``targets``, ``Subset`` of those), else by reading every sample."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[-1].reshape(-1)
    if isinstance(ds, Subset):
        return _labels(ds.dataset)[torch.as_tensor(list(ds.indices), dtype=torch.long)]
    targets = getattr(ds, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets).reshape(-1)
    return torch.as_tensor([int(ds[i][1]) for i in range(len(ds))])  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class Splits:
    """A dataset split three ways, plus what a model needs to know about it.

    ``train``/``val``/``test`` may be given as ``DataLoader``s: their datasets are kept and
    automc batches and shuffles them itself (seeded), so a loader and its dataset give the
    same run. ``num_classes``, ``in_channels`` and ``input_size`` are inferred from the
    data when not given (0: classes = largest train/val/test target + 1; channels and
    size from the first train input).

    Attributes:
        train: training samples ``(input, target)``; inputs are float tensors
            (``C x H x W`` for images), targets integer class indices.
        val: held-out part of the training data (proxy evaluation, early checks).
        test: the test set, touched only by final evaluation.
        num_classes: number of classes.
        in_channels: input channels (first dimension of an input).
        input_size: ``(H, W)`` of every input (last two dimensions).
        name: dataset name (cache keys, study names).
        augment: training augmentation (``automc.data.options.AUGMENTS``).
        sources: where train, val and test come from, in words.
        conversion: the channel/size conversion applied, in words.
        normalization: the normalisation applied, in words.
        fingerprint: content identity of the data and its conversion; empty = computed
            from the split tensors on first use (:attr:`identity`).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int = 0
    in_channels: int = 0
    input_size: tuple[int, int] = (0, 0)
    name: str = "user-data"
    augment: str = "none"
    sources: tuple[str, str, str] = ("user train", "user val", "user test")
    conversion: str = "as given"
    normalization: str = "as given"
    fingerprint: str = ""

    def __post_init__(self) -> None:
        for role in ("train", "val", "test"):
            object.__setattr__(self, role, _as_dataset(getattr(self, role), role))
        x, _ = _first_sample(self.train, "train")
        if not self.in_channels:
            object.__setattr__(self, "in_channels", int(x.shape[0]) if x.dim() == 3 else 1)
        if self.input_size == (0, 0):
            object.__setattr__(self, "input_size", tuple(int(d) for d in x.shape[-2:]))
        if not self.num_classes:
            top = max(int(_labels(getattr(self, role)).max()) for role in ("train", "val", "test"))
            object.__setattr__(self, "num_classes", top + 1)
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or self.num_classes < 2
        ):
            raise AutomcError(f"Splits.num_classes must be an integer >= 2, got {self.num_classes!r}")
        try:
            object.__setattr__(self, "augment", canonical_augment(self.augment))
        except ValueError as e:
            raise AutomcError(f"Splits.augment: {e}") from None

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero tensor of shape ``(batch_size, C, H, W)`` (for tracing)."""
        return torch.zeros(batch_size, self.in_channels, *self.input_size)

    @cached_property
    def identity(self) -> str:
        """A content hash of the data: :attr:`fingerprint`, or sha256 over every split's
        inputs and targets in order (one pass over the data, done once)."""
        if self.fingerprint:
            return self.fingerprint
        from automc.data._datasets import loader

        h = hashlib.sha256(f"classes={self.num_classes}".encode())
        for role in ("train", "val", "test"):
            h.update(f"|{role}|".encode())
            for x, y in loader(getattr(self, role), DIGEST_BATCH, shuffle=False):
                h.update(tensor_digest(torch.as_tensor(x), torch.as_tensor(y)).encode())
        return h.hexdigest()

    def summary(self) -> str:
        """One line: which split is which, the conversion, normalisation and augmentation."""
        sizes = [len(getattr(self, role)) for role in ("train", "val", "test")]
        parts = ", ".join(
            f"{role} {n:,} ({src})" for role, n, src in zip(("train", "val", "test"), sizes, self.sources)
        )
        return (
            f"{self.name}: {parts}; {self.num_classes} classes; {self.conversion}; "
            f"normalised: {self.normalization}; augment: {self.augment}"
        )

    def facts(self) -> dict[str, Any]:
        """What the run records about its data (the run's meta and base-model info)."""
        return {
            "name": self.name,
            "sizes": {role: len(getattr(self, role)) for role in ("train", "val", "test")},
            "sources": dict(zip(("train", "val", "test"), self.sources)),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_size": list(self.input_size),
            "conversion": self.conversion,
            "normalization": self.normalization,
            "augment": self.augment,
            "identity": self.identity,
        }
