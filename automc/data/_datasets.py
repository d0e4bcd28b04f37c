"""Datasets: ``load(name) -> Splits`` (train / val / test) and deterministic loaders.

Built in:

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (shipped with scikit-learn,
  no download), upsampled to 3x32x32. Real data for every demo and test.
* ``fashion-mnist`` and ``mnist``: IDX files from a local folder (:mod:`automc.data.idx`).
* ``cifar10``: CIFAR-10 from a local folder (``--data-root``); never downloaded.
* ``imagefolder:PATH``: a torchvision ``ImageFolder`` tree (:mod:`automc.data.imagefolder`).
* ``synthetic``: small generated tensors with learnable labels, for tests only.

``val`` is carved from the training data: the proxy evaluator measures candidates on it,
and only the final evaluation touches ``test``. Splits use a fixed split seed, so the
same images land in val/test whatever ``seed`` a run uses (a base model trained with
any seed never saw the val or test images).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from automc.data.options import DataOptions, parse_normalize
from automc.data.splits import Splits, tensor_digest
from automc.errors import AutomcError
from automc.registry import Registry

SPLIT_SEED = 0
IMAGEFOLDER_PREFIX = "imagefolder:"
CIFAR10_VAL_SIZE = 5000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_GREY: tuple[tuple[float, ...], tuple[float, ...]] = ((0.449,), (0.226,))
"""ImageNet statistics averaged over the channels, for grey images."""
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
LUMINANCE = (0.299, 0.587, 0.114)

Loader = Callable[..., Splits]
"""``loader(name=, root=, seed=, options=) -> Splits`` of one built-in dataset."""

REGISTRY: Registry[Loader] = Registry(kind="dataset")
"""Built-in dataset name -> its loader; add one with ``@REGISTRY.register(name, description)``."""

PREFIX_FORMS: dict[str, str] = {
    f"{IMAGEFOLDER_PREFIX}PATH": "torchvision ImageFolder with train/ and val/ and/or test/ subfolders, "
    "3x32x32 by default (--in-channels, --input-size)"
}
"""Dataset names :func:`load` accepts beyond :data:`REGISTRY` -> one-line description."""


def names() -> list[str]:
    """Built-in dataset names (``imagefolder:PATH`` is not listed)."""
    return REGISTRY.names()


def describe() -> dict[str, str]:
    """Dataset name -> one-line description, including the ``imagefolder:PATH`` form."""
    return {**REGISTRY.describe(), **PREFIX_FORMS}


def load(
    name: str,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    options: DataOptions | None = None,
) -> Splits:
    """Load a dataset by name.

    Args:
        name: a built-in name (``automc list datasets``) or ``imagefolder:PATH`` (a
            relative PATH is taken under ``root`` when one is given).
        root: folder holding the data (``cifar10``, ``fashion-mnist``, ``mnist``; the
            base of a relative ``imagefolder`` path). Ignored by the embedded datasets.
        seed: seeds the generated ``synthetic`` data; real datasets use a fixed split
            seed so val/test never change between runs.
        options: channel, size and normalisation conversion and a train subset;
            ``None`` = the dataset's defaults.

    Raises:
        AutomcError: unknown name, missing/corrupt data (the message says how to get the
            data), or an option the dataset does not support.
    """
    opts = options or DataOptions()
    if opts.normalize is not None:
        try:
            parse_normalize(opts.normalize)
        except ValueError as e:
            raise AutomcError(f"{name}: {e}") from None
    if name.startswith(IMAGEFOLDER_PREFIX):
        from automc.data.imagefolder import load_imagefolder

        path = Path(name[len(IMAGEFOLDER_PREFIX) :])
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        splits = load_imagefolder(name, path, options=opts)
    elif name not in REGISTRY:
        raise AutomcError(
            f"unknown dataset {name!r} (known: {', '.join(names())}; or {IMAGEFOLDER_PREFIX}PATH)"
        )
    else:
        splits = REGISTRY.get(name)(name=name, root=root, seed=seed, options=opts)
    return _subset_train(splits, opts.train_subset) if opts.train_subset is not None else splits


def _subset_train(splits: Splits, n: int) -> Splits:
    """``splits`` training on a seeded random ``n`` of its train samples."""
    total = len(splits.train)  # type: ignore[arg-type]
    if n < 1:
        raise AutomcError(f"{splits.name}: train subset must be >= 1, got {n}")
    if n >= total:
        return splits
    idx = np.sort(np.random.default_rng(SPLIT_SEED).choice(total, size=n, replace=False))
    digest = hashlib.sha256(f"{splits.fingerprint}|train_subset={n}".encode()).hexdigest()
    return replace(
        splits,
        train=Subset(splits.train, idx.tolist()),
        sources=(f"seeded random {n:,} of {splits.sources[0]}", *splits.sources[1:]),
        fingerprint=digest if splits.fingerprint else "",
    )


def loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A deterministic ``DataLoader``: same seed, same batches, whatever the ``workers``.

    The batch order is drawn in this process from a generator seeded with ``seed``;
    ``workers`` processes (0: none) only read and collate the samples, so a dataset
    without randomness of its own gives the same batches with any worker count.
    ``pin_memory``: page-locked batches for asynchronous copies to a GPU. Workers are not
    kept between passes (``persistent_workers``): each epoch's loader is seeded afresh.
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=generator,
    )


def stratified_split(labels: np.ndarray, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..len(labels)-1`` into ``(rest, held_out)`` with ``fraction`` held out per class.

    Sorted index arrays; deterministic for a given ``seed``.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, held = train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(rest), np.sort(held)


def refuse_options(name: str, options: DataOptions, *supported: str) -> None:
    """Raise when ``options`` sets anything but ``supported`` (field names) for dataset ``name``."""
    flags = {"in_channels": "--in-channels", "input_size": "--input-size", "normalize": "--normalize"}
    bad = [flags.get(k, k) for k in options.given() if k not in supported and k != "train_subset"]
    if bad:
        raise AutomcError(f"{name}: {', '.join(bad)} not supported for this dataset")


def convert_images(
    images: torch.Tensor, *, in_channels: int, input_size: int, pad: bool
) -> tuple[torch.Tensor, str]:
    """``N x C x H x W`` images as ``N x in_channels x input_size x input_size``, and what was done.

    Square images smaller by an even number of pixels are zero-padded when ``pad``
    (exact pixels, black border); other sizes are resized bilinearly. Grey images are
    replicated to 3 channels; RGB images become grey by luminance (ITU-R BT.601).
    """
    import torch.nn.functional as F

    _, c, h, w = images.shape
    if in_channels not in (1, 3):
        raise AutomcError(f"in_channels must be 1 or 3, got {in_channels}")
    steps = []
    if (h, w) != (input_size, input_size):
        margin = input_size - h
        if pad and h == w and margin > 0 and margin % 2 == 0:
            images = F.pad(images, (margin // 2,) * 4)
            steps.append(f"zero-padded to {input_size}x{input_size}")
        else:
            images = F.interpolate(
                images, size=(input_size, input_size), mode="bilinear", align_corners=False
            )
            steps.append(f"resized bilinearly to {input_size}x{input_size}")
    if c != in_channels:
        if c == 1:
            images = images.repeat(1, in_channels, 1, 1)
            steps.append(f"grey replicated to {in_channels} channels")
        else:
            weights = torch.tensor(LUMINANCE, dtype=images.dtype).view(1, 3, 1, 1)
            images = (images * weights).sum(1, keepdim=True)
            steps.append("RGB to grey (luminance)")
    done = ", ".join(steps) if steps else "as stored"
    return images.contiguous(), f"{c}x{h}x{w} {done} -> {in_channels}x{input_size}x{input_size}"


def normalise_tensors(images: torch.Tensor, spec: str, fit_idx: np.ndarray) -> tuple[torch.Tensor, str]:
    """Normalise in-memory images by ``spec`` (:data:`~automc.data.options.NORMALIZE_FORMS`).

    ``train`` uses the mean and std over all pixels of the ``fit_idx`` images (the train
    split, never val or test).
    """
    parsed = parse_normalize(spec)
    channels = images.shape[1]
    if parsed == "none":
        return images, "none (pixels in [0, 1])"
    if parsed == "train":
        fit = images[torch.from_numpy(fit_idx)]
        mean, std = float(fit.mean()), float(fit.std())
        return (images - mean) / std, f"train statistics (mean {mean:.4f}, std {std:.4f})"
    means, stds = _constants(parsed, channels)
    return _scale(images, means, stds, spec), f"{spec} (mean {_fmt(means)}, std {_fmt(stds)})"


def _constants(
    parsed: str | tuple[tuple[float, ...], tuple[float, ...]], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std of a parsed ``imagenet`` or ``MEAN/STD`` normalisation."""
    if isinstance(parsed, tuple):
        return parsed
    return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else IMAGENET_GREY


def _scale(
    images: torch.Tensor, means: tuple[float, ...], stds: tuple[float, ...], spec: str
) -> torch.Tensor:
    channels = images.shape[1]
    if len(means) not in (1, channels):
        raise AutomcError(f"normalisation {spec!r} gives {len(means)} values for {channels}-channel images")
    m = torch.tensor(means, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(stds, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s


def _fmt(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def files_digest(paths: list[Path], *extra: str) -> str:
    """sha256 over the files' names and bytes, plus ``extra`` strings (the conversion settings)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    for text in extra:
        h.update(b"\0" + text.encode())
    return h.hexdigest()


def tensor_splits(
    images: torch.Tensor,
    labels: np.ndarray,
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    **fields: object,
) -> Splits:
    """:class:`Splits` of in-memory ``images`` whose train/val/test are the index arrays ``parts``."""
    y = torch.from_numpy(labels.astype(np.int64))

    def part(idx: np.ndarray) -> TensorDataset:
        t = torch.from_numpy(idx)
        return TensorDataset(images[t].contiguous(), y[t].contiguous())

    train, val, test = (part(idx) for idx in parts)
    return Splits(train=train, val=val, test=test, **fields)  # type: ignore[arg-type]


@REGISTRY.register(
    "digits", "scikit-learn handwritten digits (1,797 8x8 images, embedded), upsampled to 3x32x32"
)
def _digits(*, name: str, root: str | Path | None, seed: int, options: DataOptions) -> Splits:
    """Test 20%, val 15% of all (from train), train the remaining 65%; stratified."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    channels, size = options.in_channels or 3, options.input_size or 32
    images, conversion = convert_images(raw, in_channels=channels, input_size=size, pad=False)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_split(labels, 0.20, seed=SPLIT_SEED)
    fit_rel, val_rel = stratified_split(labels[train_idx], 0.15 / 0.80, seed=SPLIT_SEED)
    fit_idx, val_idx = train_idx[fit_rel], train_idx[val_rel]
    images, normalization = normalise_tensors(images, options.normalize or "train", fit_idx)
    return tensor_splits(
        images,
        labels,
        (fit_idx, val_idx, test_idx),
        num_classes=10,
        in_channels=channels,
        input_size=(size, size),
        name=name,
        augment="crop",
        sources=("65% of digits", "15% of digits (stratified)", "20% of digits (stratified)"),
        conversion=conversion,
        normalization=normalization,
        fingerprint=tensor_digest(images, torch.from_numpy(labels)),
    )


@REGISTRY.register(
    "synthetic",
    "generated 3x32x32 class colours/patterns + noise (256/64/64 samples, 10 classes); tests only",
)
def _synthetic(*, name: str, root: str | Path | None, seed: int, options: DataOptions) -> Splits:
    """Each class is a fixed random colour plus a low-frequency pattern; samples add Gaussian noise.

    The colour (a per-channel offset) survives shifts and global pooling, so even the
    tiniest test models learn it in a few epochs.
    """
    import torch.nn.functional as F

    refuse_options(name, options)
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

    train, val, test = part(256), part(64), part(64)
    return Splits(
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        in_channels=3,
        input_size=(32, 32),
        name=name,
        augment="crop",
        sources=("generated", "generated", "generated"),
        conversion="generated 3x32x32",
        normalization="none (generated, zero-mean noise)",
        fingerprint=tensor_digest(*train.tensors, *val.tensors, *test.tensors),
    )


def pil_transform(
    *, in_channels: int, input_size: int, native: tuple[int, int] | None, normalize: str
) -> tuple[Callable[..., torch.Tensor], str, str]:
    """A torchvision transform for PIL images, the conversion it does and its normalisation.

    Raises:
        AutomcError: ``normalize=train`` (needs the whole train split in memory).
    """
    from torchvision import transforms

    if in_channels not in (1, 3):
        raise AutomcError(f"in_channels must be 1 or 3, got {in_channels}")
    steps: list[Callable[..., object]] = []
    notes = []
    if native != (input_size, input_size):
        steps.append(transforms.Resize((input_size, input_size)))
        notes.append(f"resized to {input_size}x{input_size}")
    if in_channels == 1:
        steps.append(transforms.Grayscale(num_output_channels=1))
        notes.append("RGB to grey")
    steps.append(transforms.ToTensor())
    parsed = parse_normalize(normalize)
    if parsed == "train":
        raise AutomcError("--normalize train needs an in-memory dataset; use imagenet, none or MEAN/STD")
    if parsed == "none":
        label = "none (pixels in [0, 1])"
    else:
        means, stds = _constants(parsed, in_channels)
        if len(means) not in (1, in_channels):
            raise AutomcError(
                f"normalisation {normalize!r} gives {len(means)} values for {in_channels}-channel images"
            )
        steps.append(transforms.Normalize(means, stds))
        label = f"{normalize} (mean {_fmt(means)}, std {_fmt(stds)})"
    done = ", ".join(notes) if notes else "as stored"
    return transforms.Compose(steps), f"images {done} -> {in_channels}x{input_size}x{input_size}", label


@REGISTRY.register(
    "cifar10",
    "CIFAR-10 python batches from a local folder (--data-root; never downloaded, unpickled without code); "
    "val = 5,000 train images",
)
def _cifar10(*, name: str, root: str | Path | None, seed: int, options: DataOptions) -> Splits:
    from automc.data.cifar import TEST_BATCH, TRAIN_BATCHES, read_split

    how = (
        "download the CIFAR-10 python version (cifar-10-python.tar.gz) from "
        "https://www.cs.toronto.edu/~kriz/cifar.html, extract it and pass the folder that contains "
        "cifar-10-batches-py with --data-root"
    )
    if root is None:
        raise AutomcError(f"cifar10 needs a data folder: {how}")
    folder = Path(root) / "cifar-10-batches-py"
    if not folder.is_dir():
        raise AutomcError(f"cifar10: {folder} not found; {how}")
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / n).is_file()]
    if missing:
        raise AutomcError(f"cifar10: cannot read {folder}: {', '.join(missing)} missing; {how}")
    train_x, train_y = read_split(folder, TRAIN_BATCHES)
    test_x, test_y = read_split(folder, (TEST_BATCH,))
    raw = torch.from_numpy(np.concatenate([train_x, test_x])).float().div_(255.0)
    labels = np.concatenate([train_y, test_y])
    channels, size = options.in_channels or 3, options.input_size or 32
    images, conversion = convert_images(raw, in_channels=channels, input_size=size, pad=False)
    n_val = min(CIFAR10_VAL_SIZE, len(train_y) // 10)
    fit_idx, val_idx = stratified_split(train_y, n_val / len(train_y), seed=SPLIT_SEED)
    normalize = options.normalize or (
        f"{_fmt(CIFAR10_MEAN)}/{_fmt(CIFAR10_STD)}" if channels == 3 else "train"
    )
    images, normalization = normalise_tensors(images, normalize, fit_idx)
    return tensor_splits(
        images,
        labels,
        (fit_idx, val_idx, np.arange(len(train_y), len(labels))),
        num_classes=10,
        in_channels=channels,
        input_size=(size, size),
        name=name,
        augment="crop+flip",
        sources=(
            "data_batch_1-5 minus val",
            f"seeded stratified {len(val_idx):,} of data_batch_1-5",
            "test_batch",
        ),
        conversion=conversion,
        normalization=normalization,
        fingerprint=files_digest(
            [folder / n for n in (*TRAIN_BATCHES, TEST_BATCH)], conversion, normalization
        ),
    )


REGISTRY.add(
    "fashion-mnist",
    "automc.data.idx:fashion_mnist",
    "Fashion-MNIST IDX files (--data-root, its FashionMNIST/raw, or Debian's dataset-fashion-mnist; "
    "never downloaded); 1x28x28 zero-padded to 1x32x32; val = 5,000 train images",
)
REGISTRY.add(
    "mnist",
    "automc.data.idx:mnist",
    "MNIST IDX files from --data-root (or its MNIST/raw; never downloaded); 1x28x28 zero-padded "
    "to 1x32x32; val = 5,000 train images",
)
