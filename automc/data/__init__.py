"""Datasets: ``load(name) -> Splits`` with train / val / test, and deterministic loaders.

Example::

    from automc import data
    splits = data.load("digits")
    batches = data.loader(splits.val, batch_size=128, shuffle=False)
"""

from __future__ import annotations

from automc.data._datasets import (
    IMAGEFOLDER_PREFIX,
    PREFIX_FORMS,
    REGISTRY,
    SPLIT_SEED,
    Splits,
    describe,
    load,
    loader,
    names,
    stratified_split,
)

__all__ = [
    "IMAGEFOLDER_PREFIX",
    "PREFIX_FORMS",
    "REGISTRY",
    "SPLIT_SEED",
    "Splits",
    "describe",
    "load",
    "loader",
    "names",
    "stratified_split",
]
