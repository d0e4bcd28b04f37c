"""Datasets: ``load(name) -> Splits`` with train / val / test, and deterministic loaders.

Example::

    from automc import data
    splits = data.load("fashion-mnist", options=data.DataOptions(train_subset=5000))
    batches = data.loader(splits.val, batch_size=128, shuffle=False)
    mine = data.Splits(train=train_loader, val=val_set, test=test_set)  # the user's own data

Names are imported on first use, so ``automc.data.options`` (read by the torch-free
config) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automc.data._datasets import (
        IMAGEFOLDER_PREFIX,
        PREFIX_FORMS,
        REGISTRY,
        SPLIT_SEED,
        describe,
        load,
        loader,
        names,
        stratified_split,
    )
    from automc.data.options import AUGMENTS, DataOptions
    from automc.data.splits import Splits

_HOMES = {
    "IMAGEFOLDER_PREFIX": "_datasets",
    "PREFIX_FORMS": "_datasets",
    "REGISTRY": "_datasets",
    "SPLIT_SEED": "_datasets",
    "describe": "_datasets",
    "load": "_datasets",
    "loader": "_datasets",
    "names": "_datasets",
    "stratified_split": "_datasets",
    "AUGMENTS": "options",
    "DataOptions": "options",
    "Splits": "splits",
}

__all__ = [
    "AUGMENTS",
    "IMAGEFOLDER_PREFIX",
    "PREFIX_FORMS",
    "REGISTRY",
    "SPLIT_SEED",
    "DataOptions",
    "Splits",
    "describe",
    "load",
    "loader",
    "names",
    "stratified_split",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'automc.data' has no attribute {name!r}")
    return getattr(import_module(f"automc.data.{_HOMES[name]}"), name)
