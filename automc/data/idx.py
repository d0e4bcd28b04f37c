"""Fashion-MNIST and MNIST from their IDX files (never downloaded).

The four files (``.gz`` or uncompressed): ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``.
They are looked for in ``--data-root``, then in its torchvision-style
``FashionMNIST/raw`` (``MNIST/raw``) folder; without ``--data-root``, Fashion-MNIST is
read from Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).

Splits: val = a seeded stratified 5,000 of the 60,000 train images, train = the other
55,000, test = the 10,000 t10k images. Images are 1x28x28 grey; by default they are
zero-padded to 1x32x32 (the CIFAR-style input of the zoo models; the border is the
images' black background) and normalised with the train split's mean and std.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from automc.data._datasets import (
    SPLIT_SEED,
    convert_images,
    files_digest,
    normalise_tensors,
    stratified_split,
    tensor_splits,
)
from automc.data.options import DataOptions
from automc.data.splits import Splits
from automc.errors import AutomcError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the files."""
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IDX_VAL_SIZE = 5000
IDX_SIDE = 28
UBYTE = 0x08
MAX_IDX_BYTES = 64 * 1024 * 1024
"""Largest decompressed IDX file read (the 60,000-image train file is 47 MB)."""


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions, as a ``uint8`` array.

    Raises:
        AutomcError: unreadable, not gzip where named ``.gz``, a wrong magic number
            (type or dimension count), or a size that does not match its header.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read(MAX_IDX_BYTES + 1)
        else:
            with path.open("rb") as f:
                raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise AutomcError(f"{path}: not a readable IDX file ({' '.join(str(e).split())})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise AutomcError(f"{path}: larger than {MAX_IDX_BYTES // 2**20} MB, not an MNIST-style IDX file")
    header = 4 + 4 * ndim
    if len(raw) < header or raw[0] != 0 or raw[1] != 0 or raw[2] != UBYTE or raw[3] != ndim:
        raise AutomcError(
            f"{path}: bad IDX magic number {raw[:4].hex() or 'none'} (expected 000008{ndim:02x}: "
            f"unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise AutomcError(
            f"{path}: {len(raw) - header:,} data bytes after the header, expected {expected - header:,} "
            f"for shape {'x'.join(map(str, dims))} (truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path) -> list[Path] | None:
    """The four IDX files in ``folder`` (each ``.gz`` or plain), or ``None`` if one is missing."""
    found = []
    for stem in IDX_FILES:
        hit = next((folder / n for n in (f"{stem}.gz", stem) if (folder / n).is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def locate(name: str, root: str | Path | None, *, raw_folder: str, default: Path | None) -> list[Path]:
    """The IDX files of dataset ``name``: in ``root``, ``root/<raw_folder>/raw`` or ``default``.

    Raises:
        AutomcError: one line naming the expected files, the folders looked in and how
            to get them.
    """
    bases = [Path(root), Path(root) / raw_folder / "raw"] if root is not None else []
    if root is None and default is not None:
        bases.append(default)
    for base in bases:
        files = _find(base)
        if files is not None:
            return files
    expected = ", ".join(f"{stem}.gz" for stem in IDX_FILES)
    where = " or ".join(str(b) for b in bases) or "(no folder: pass --data-root)"
    how = (
        "apt-get install dataset-fashion-mnist, or pass the folder holding them with --data-root"
        if name == "fashion-mnist"
        else f"pass the folder holding them (or its {raw_folder}/raw) with --data-root"
    )
    raise AutomcError(f"{name}: expected {expected} in {where}; {how}")


def load_idx(name: str, files: list[Path], *, options: DataOptions, augment: str) -> Splits:
    """Splits of the four IDX ``files`` (order of :data:`IDX_FILES`), converted by ``options``."""
    train_x, train_y, test_x, test_y = (read_idx(p, ndim=3 if i % 2 == 0 else 1) for i, p in enumerate(files))
    for pixels, targets, (img_path, lbl_path) in ((train_x, train_y, files[:2]), (test_x, test_y, files[2:])):
        if pixels.shape[1:] != (IDX_SIDE, IDX_SIDE):
            raise AutomcError(f"{img_path}: images are {pixels.shape[1]}x{pixels.shape[2]}, expected 28x28")
        if len(pixels) != len(targets):
            raise AutomcError(
                f"{lbl_path}: {len(targets):,} labels for {len(pixels):,} images in {img_path.name}"
            )
        if targets.size and targets.max() > 9:
            raise AutomcError(f"{lbl_path}: label {int(targets.max())} outside 0-9")
    if len(train_y) <= IDX_VAL_SIZE or len(np.unique(train_y)) != 10:
        raise AutomcError(f"{files[1]}: needs more than {IDX_VAL_SIZE:,} labels covering the 10 classes")
    raw = torch.from_numpy(np.concatenate([train_x, test_x])).unsqueeze(1).float().div_(255.0)
    labels = np.concatenate([train_y, test_y]).astype(np.int64)
    channels, size = options.in_channels or 1, options.input_size or 32
    images, conversion = convert_images(raw, in_channels=channels, input_size=size, pad=True)
    fit_idx, val_idx = stratified_split(labels[: len(train_y)], IDX_VAL_SIZE / len(train_y), seed=SPLIT_SEED)
    test_idx = np.arange(len(train_y), len(labels))
    normalize = options.normalize or "train"
    images, normalization = normalise_tensors(images, normalize, fit_idx)
    n_train = len(train_y)
    return tensor_splits(
        images,
        labels,
        (fit_idx, val_idx, test_idx),
        num_classes=10,
        in_channels=channels,
        input_size=(size, size),
        name=name,
        augment=augment,
        sources=(
            f"{n_train:,} train images minus val",
            f"seeded stratified {IDX_VAL_SIZE:,} of the train images",
            f"{len(test_y):,} t10k images",
        ),
        conversion=conversion,
        normalization=normalization,
        fingerprint=files_digest(files, conversion, normalization),
    )


def fashion_mnist(*, name: str, root: str | Path | None, seed: int, options: DataOptions) -> Splits:
    """The registered ``fashion-mnist`` loader (augmentation default: crop+flip, clothes mirror)."""
    files = locate(name, root, raw_folder="FashionMNIST", default=DEBIAN_FASHION_MNIST)
    return load_idx(name, files, options=options, augment="crop+flip")


def mnist(*, name: str, root: str | Path | None, seed: int, options: DataOptions) -> Splits:
    """The registered ``mnist`` loader (augmentation default: crop; mirrored digits change meaning)."""
    files = locate(name, root, raw_folder="MNIST", default=None)
    return load_idx(name, files, options=options, augment="crop")
