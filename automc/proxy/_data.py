"""``ProxyData``: calibration and evaluation batches prepared once per search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from automc.errors import AutomcError


def _gather(dataset: Dataset[Any], indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of ``dataset`` at ``indices`` as two stacked tensors."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][indices], dataset.tensors[1][indices]
    items = [dataset[int(i)] for i in indices]
    xs = torch.stack([torch.as_tensor(item[0]) for item in items])
    ys = torch.as_tensor([int(item[1]) for item in items], dtype=torch.long)
    return xs, ys


@dataclass(frozen=True, kw_only=True)
class ProxyBatches:
    """How many batches of which size :meth:`ProxyData.build` prepares.

    Attributes:
        calib_batches: number ``K`` of BatchNorm recalibration batches (0 allowed for
            proxies that do not recalibrate).
        calib_batch_size: samples per calibration batch.
        val_batch_size: samples per evaluation batch.
        val_limit: use only a seeded random subset of this many val samples.
        train_batches: labelled training batches to prepare (for ``short_train``), drawn
            like the calibration batches but with their labels (0: none).
        train_batch_size: samples per training batch.
    """

    calib_batches: int = 8
    calib_batch_size: int = 64
    val_batch_size: int = 1024
    val_limit: int | None = None
    train_batches: int = 0
    train_batch_size: int = 64


@dataclass(frozen=True, eq=False)
class ProxyData:
    """Fixed batches every candidate of a search is scored on.

    Built from the *train* and *val* splits only; the test split is never read, so the
    final report's test accuracy stays unbiased by the search.

    Attributes:
        calib_inputs: ``K`` calibration batches (inputs only) from a seeded random
            subset of the train split, for BatchNorm recalibration.
        val_inputs: the held-out val split (or a seeded subset of it) in a few large batches.
        val_targets: labels matching ``val_inputs``.
        seed: the seed the subsets were drawn with.
        train_inputs: labelled training batches (a seeded random subset of the train
            split) for proxies that train a few steps; empty unless asked for.
        train_targets: labels matching ``train_inputs``.
    """

    calib_inputs: tuple[torch.Tensor, ...]
    val_inputs: tuple[torch.Tensor, ...]
    val_targets: tuple[torch.Tensor, ...]
    seed: int = 0
    train_inputs: tuple[torch.Tensor, ...] = ()
    train_targets: tuple[torch.Tensor, ...] = ()

    def __post_init__(self) -> None:
        if not self.val_inputs or len(self.val_inputs) != len(self.val_targets):
            raise AutomcError("ProxyData needs at least one val batch and one target batch per input batch")
        if len(self.train_inputs) != len(self.train_targets):
            raise AutomcError("ProxyData needs one target batch per training input batch")

    def to(self, device: str | torch.device) -> ProxyData:
        """A copy with every batch on ``device`` (this one is left as it is)."""

        def moved(batches: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return tuple(b.to(device) for b in batches)

        return ProxyData(
            calib_inputs=moved(self.calib_inputs),
            val_inputs=moved(self.val_inputs),
            val_targets=moved(self.val_targets),
            seed=self.seed,
            train_inputs=moved(self.train_inputs),
            train_targets=moved(self.train_targets),
        )

    @property
    def device(self) -> torch.device:
        """Where the batches live."""
        return self.val_inputs[0].device

    @property
    def n_val(self) -> int:
        return sum(int(y.shape[0]) for y in self.val_targets)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch dimension."""
        return tuple(int(s) for s in self.val_inputs[0].shape[1:])

    @classmethod
    def build(
        cls,
        *,
        train: Dataset[Any],
        val: Dataset[Any],
        batches: ProxyBatches = ProxyBatches(),
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> ProxyData:
        """Draw the calibration subset and batch the val split.

        Args:
            train: training split; ``calib_batches * calib_batch_size`` samples are drawn
                from it without replacement (the permutation repeats if the split is smaller).
            val: held-out split the metrics are computed on.
            batches: how many batches of which size to prepare (:class:`ProxyBatches`).
            seed: seed for both subsets; the same seed gives the same batches.
            device: where the batches live (the candidate must be on the same device).
        """
        calib_batches, calib_batch_size = batches.calib_batches, batches.calib_batch_size
        val_batch_size, val_limit = batches.val_batch_size, batches.val_limit
        train_batches, train_batch_size = batches.train_batches, batches.train_batch_size
        if calib_batches < 0 or calib_batch_size < 1 or val_batch_size < 1:
            raise AutomcError(
                "calib_batches must be >= 0 and calib_batch_size, val_batch_size >= 1 "
                f"(got {calib_batches}, {calib_batch_size}, {val_batch_size})"
            )
        if train_batches < 0 or train_batch_size < 1:
            raise AutomcError(
                f"train_batches must be >= 0 and train_batch_size >= 1 (got {train_batches}, {train_batch_size})"
            )
        gen = torch.Generator().manual_seed(seed)
        n_train, n_val = len(train), len(val)  # type: ignore[arg-type]
        if n_val == 0:
            raise AutomcError("the val split is empty; the proxy needs held-out data")
        if (calib_batches or train_batches) and n_train == 0:
            raise AutomcError("the train split is empty; BatchNorm recalibration needs training data")

        def draw(batches: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
            need = batches * size
            reps = -(-need // n_train)
            order = torch.cat([torch.randperm(n_train, generator=gen) for _ in range(reps)])[:need]
            return _gather(train, order)

        def batched(t: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
            return tuple(b.to(device).contiguous() for b in t.split(size))

        calib: tuple[torch.Tensor, ...] = ()
        if calib_batches:
            calib = batched(draw(calib_batches, calib_batch_size)[0], calib_batch_size)
        if val_limit is not None and val_limit < n_val:
            val_idx = torch.randperm(n_val, generator=gen)[:val_limit].sort().values
        else:
            val_idx = torch.arange(n_val)
        vx, vy = _gather(val, val_idx)
        train_x: tuple[torch.Tensor, ...] = ()
        train_y: tuple[torch.Tensor, ...] = ()
        if train_batches:
            tx, ty = draw(train_batches, train_batch_size)
            train_x, train_y = batched(tx, train_batch_size), batched(ty.long(), train_batch_size)
        return cls(
            calib_inputs=calib,
            val_inputs=batched(vx, val_batch_size),
            val_targets=batched(vy.long(), val_batch_size),
            seed=seed,
            train_inputs=train_x,
            train_targets=train_y,
        )

    @classmethod
    def from_splits(
        cls,
        splits: Any,
        batches: ProxyBatches = ProxyBatches(),
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> ProxyData:
        """``build`` from an ``automc.data.Splits``; reads only ``splits.train`` and ``splits.val``."""
        return cls.build(train=splits.train, val=splits.val, batches=batches, seed=seed, device=device)
