"""Datasets: ``load(name) -> Splits`` (train / val / test) and deterministic loaders.

Built in:

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (shipped with scikit-learn,
  no download), upsampled to 3x32x32. Real data for every demo and test.
* ``cifar10``: CIFAR-10 from a local folder (``--data-root``); never downloaded.
* ``imagefolder:PATH``: a torchvision ``ImageFolder`` tree with ``train/`` and
  ``val/`` and/or ``test/`` subfolders.
* ``synthetic``: small generated tensors with learnable labels, for tests only.

``val`` is carved from the training data: the proxy evaluator measures candidates on it,
and only the final evaluation touches ``test``. Splits use a fixed split seed, so the
same images land in val/test whatever ``seed`` a run uses (a base model trained with
any seed never saw the val or test images).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from automc.errors import AutomcError
from automc.registry import Registry

SPLIT_SEED = 0
IMAGEFOLDER_PREFIX = "imagefolder:"
CIFAR10_VAL_SIZE = 5000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Splits:
    """A dataset split three ways, plus what a model needs to know about it.

    Attributes:
        train: training samples ``(image, label)``; images are float ``C x H x W``
            tensors, normalised; labels int64.
        val: held-out part of the training data (proxy evaluation, early checks).
        test: the test set, touched only by final evaluation.
        num_classes: number of classes.
        in_channels: image channels.
        input_size: ``(H, W)`` of every image.
        name: dataset name as passed to :func:`load`.
        hflip: whether horizontal flips preserve labels (natural images yes, digits no);
            training uses it for augmentation.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    name: str
    hflip: bool = False

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero tensor of shape ``(batch_size, C, H, W)`` (for tracing)."""
        return torch.zeros(batch_size, self.in_channels, *self.input_size)


Loader = Callable[..., Splits]
"""``loader(name=, root=, seed=) -> Splits`` of one built-in dataset."""

REGISTRY: Registry[Loader] = Registry(kind="dataset")
"""Built-in dataset name -> its loader; add one with ``@REGISTRY.register(name, description)``."""

PREFIX_FORMS: dict[str, str] = {
    f"{IMAGEFOLDER_PREFIX}PATH": "torchvision ImageFolder with train/ and val/ (or test/) subfolders, resized to 32x32"
}
"""Dataset names :func:`load` accepts beyond :data:`REGISTRY` -> one-line description."""


def names() -> list[str]:
    """Built-in dataset names (``imagefolder:PATH`` is not listed)."""
    return REGISTRY.names()


def describe() -> dict[str, str]:
    """Dataset name -> one-line description, including the ``imagefolder:PATH`` form."""
    return {**REGISTRY.describe(), **PREFIX_FORMS}


def load(name: str, root: str | Path | None = None, *, seed: int = 0, input_size: int = 32) -> Splits:
    """Load a dataset by name.

    Args:
        name: ``digits``, ``cifar10``, ``synthetic`` or ``imagefolder:PATH``.
        root: folder holding the data, for ``cifar10`` (the folder that contains
            ``cifar-10-batches-py``). Ignored by the embedded datasets.
        seed: seeds the generated ``synthetic`` data; real datasets use a fixed split
            seed so val/test never change between runs.
        input_size: side of the square images ``imagefolder`` resizes to.

    Raises:
        AutomcError: unknown name or missing/empty data folder (the message says how to
            get the data).
    """
    if name.startswith(IMAGEFOLDER_PREFIX):
        return _imagefolder(name, Path(name[len(IMAGEFOLDER_PREFIX) :]), input_size=input_size)
    if name not in REGISTRY:
        raise AutomcError(
            f"unknown dataset {name!r} (known: {', '.join(names())}; or {IMAGEFOLDER_PREFIX}PATH)"
        )
    return REGISTRY.get(name)(name=name, root=root, seed=seed)


def loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A deterministic single-process ``DataLoader`` (same seed, same batch order)."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=0, generator=generator)


def stratified_split(labels: np.ndarray, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..len(labels)-1`` into ``(rest, held_out)`` with ``fraction`` held out per class.

    Sorted index arrays; deterministic for a given ``seed``.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, held = train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(rest), np.sort(held)


@REGISTRY.register(
    "digits", "scikit-learn handwritten digits (1,797 8x8 images, embedded), upsampled to 3x32x32"
)
def _digits(*, name: str, root: str | Path | None, seed: int) -> Splits:
    """Test 20%, val 15% of all (from train), train the remaining 65%; stratified."""
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_split(labels, 0.20, seed=SPLIT_SEED)
    fit_rel, val_rel = stratified_split(labels[train_idx], 0.15 / 0.80, seed=SPLIT_SEED)
    fit_idx, val_idx = train_idx[fit_rel], train_idx[val_rel]
    mean = images[fit_idx].mean()
    std = images[fit_idx].std()
    images = (images - mean) / std
    y = torch.from_numpy(labels)

    def part(idx: np.ndarray) -> TensorDataset:
        t = torch.from_numpy(idx)
        return TensorDataset(images[t].contiguous(), y[t].contiguous())

    return Splits(
        train=part(fit_idx),
        val=part(val_idx),
        test=part(test_idx),
        num_classes=10,
        in_channels=3,
        input_size=(32, 32),
        name=name,
    )


@REGISTRY.register(
    "synthetic",
    "generated 3x32x32 class colours/patterns + noise (256/64/64 samples, 10 classes); tests only",
)
def _synthetic(*, name: str, root: str | Path | None, seed: int) -> Splits:
    """Each class is a fixed random colour plus a low-frequency pattern; samples add Gaussian noise.

    The colour (a per-channel offset) survives shifts and global pooling, so even the
    tiniest test models learn it in a few epochs.
    """
    import torch.nn.functional as F

    num_classes = 10
    base = torch.Generator().manual_seed(1234)
    colours = torch.randn(num_classes, 3, 1, 1, generator=base)
    patterns = F.interpolate(
        torch.randn(num_classes, 3, 4, 4, generator=base), size=(32, 32), mode="bilinear"
    )
    templates = colours + 0.5 * patterns
    gen = torch.Generator().manual_seed(int(seed))

    def part(n: int) -> TensorDataset:
        y = torch.arange(n, dtype=torch.int64) % num_classes
        y = y[torch.randperm(n, generator=gen)]
        x = templates[y] + 1.0 * torch.randn(n, 3, 32, 32, generator=gen)
        return TensorDataset(x, y)

    return Splits(
        train=part(256),
        val=part(64),
        test=part(64),
        num_classes=num_classes,
        in_channels=3,
        input_size=(32, 32),
        name=name,
    )


@REGISTRY.register(
    "cifar10", "CIFAR-10 from a local folder (--data-root; never downloaded); val = 5,000 train images"
)
def _cifar10(*, name: str, root: str | Path | None, seed: int) -> Splits:
    from torchvision import datasets, transforms

    how = (
        "download the CIFAR-10 python version (cifar-10-python.tar.gz) from "
        "https://www.cs.toronto.edu/~kriz/cifar.html, extract it and pass the folder that contains "
        "cifar-10-batches-py with --data-root"
    )
    if root is None:
        raise AutomcError(f"cifar10 needs a data folder: {how}")
    folder = Path(root)
    if not (folder / "cifar-10-batches-py").is_dir():
        raise AutomcError(f"cifar10: {folder / 'cifar-10-batches-py'} not found; {how}")
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    try:
        full_train = datasets.CIFAR10(str(folder), train=True, download=False, transform=tf)
        test = datasets.CIFAR10(str(folder), train=False, download=False, transform=tf)
    except (RuntimeError, OSError, ValueError) as e:
        raise AutomcError(f"cifar10: cannot read {folder}: {' '.join(str(e).split())}; {how}") from None
    labels = np.asarray(full_train.targets, dtype=np.int64)
    fit_idx, val_idx = stratified_split(labels, CIFAR10_VAL_SIZE / len(labels), seed=SPLIT_SEED)
    return Splits(
        train=Subset(full_train, fit_idx.tolist()),
        val=Subset(full_train, val_idx.tolist()),
        test=test,
        num_classes=10,
        in_channels=3,
        input_size=(32, 32),
        name=name,
        hflip=True,
    )


def _imagefolder(name: str, path: Path, *, input_size: int) -> Splits:
    """ImageFolder tree: ``train/`` plus ``val/`` and/or ``test/``.

    With both val/ and test/, each is used as named. With only one of them it becomes
    the test set and val is carved from train (10%, stratified, fixed seed).
    """
    from torchvision import datasets, transforms

    if not path.is_dir():
        raise AutomcError(f"{IMAGEFOLDER_PREFIX}{path}: no such folder")
    train_dir = path / "train"
    val_dir, test_dir = path / "val", path / "test"
    if not train_dir.is_dir() or not (val_dir.is_dir() or test_dir.is_dir()):
        raise AutomcError(
            f"{IMAGEFOLDER_PREFIX}{path}: expected subfolders train/ and val/ (or test/), "
            "each with one folder of images per class"
        )
    tf = transforms.Compose(
        [
            transforms.Resize((input_size, input_size)),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )

    def folder(d: Path) -> datasets.ImageFolder:
        try:
            return datasets.ImageFolder(str(d), transform=tf)
        except (FileNotFoundError, RuntimeError) as e:
            raise AutomcError(f"{IMAGEFOLDER_PREFIX}{path}: {d.name}/: {' '.join(str(e).split())}") from None

    train_full = folder(train_dir)
    held = [folder(d) for d in (val_dir, test_dir) if d.is_dir()]
    for ds, d in zip(held, [d for d in (val_dir, test_dir) if d.is_dir()]):
        if ds.classes != train_full.classes:
            raise AutomcError(
                f"{IMAGEFOLDER_PREFIX}{path}: class folders of {d.name}/ ({', '.join(ds.classes)}) "
                f"differ from train/ ({', '.join(train_full.classes)})"
            )
    if len(held) == 2:
        train: Dataset = train_full
        val, test = held
    else:
        test = held[0]
        labels = np.asarray(train_full.targets, dtype=np.int64)
        if np.bincount(labels).min() < 2:
            raise AutomcError(f"{IMAGEFOLDER_PREFIX}{path}: every class in train/ needs at least 2 images")
        n_val = max(len(train_full.classes), int(round(0.1 * len(labels))))
        fit_idx, val_idx = stratified_split(labels, n_val / len(labels), seed=SPLIT_SEED)
        train, val = Subset(train_full, fit_idx.tolist()), Subset(train_full, val_idx.tolist())
    return Splits(
        train=train,
        val=val,
        test=test,
        num_classes=len(train_full.classes),
        in_channels=3,
        input_size=(input_size, input_size),
        name=name,
        hflip=True,
    )
