"""``imagefolder:PATH``: a torchvision ``ImageFolder`` tree, one folder of images per class.

Layouts (the run states which split is which in its ``automc: data:`` line):

* ``train/``, ``val/`` and ``test/``: each used as named.
* ``train/`` and ``test/``: val is carved from train (10%, stratified, fixed seed).
* ``train/`` and ``val/``: ``val/`` is the held-out *test* set (the final evaluation)
  and val is carved from train as above, so candidates are never chosen on the images
  they are finally measured on.

Images are read as RGB, resized to ``input_size`` x ``input_size`` (default 32),
optionally turned grey (``in_channels=1``) and normalised (default: ImageNet statistics).
Augmentation default: ``crop`` (no flips; pass ``--augment crop+flip`` for natural images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset

from automc.data._datasets import (
    IMAGEFOLDER_PREFIX,
    SPLIT_SEED,
    files_digest,
    pil_transform,
    stratified_split,
)
from automc.data.options import DataOptions
from automc.data.splits import Splits
from automc.errors import AutomcError

VAL_FRACTION = 0.1


def check_images(paths: list[str], where: str) -> None:
    """Open every image's header and check its structure (``PIL.Image.verify``) without decoding it.

    Raises:
        AutomcError: naming the first file that is not a readable image, or whose pixel
            count passes PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``).
    """
    import warnings

    from PIL import Image

    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    img.verify()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise AutomcError(f"{where}: {path}: refused as a decompression bomb ({e})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise AutomcError(
                f"{where}: {path}: not a readable image ({e.__class__.__name__}: {e})"
            ) from None


def load_imagefolder(name: str, path: Path, *, options: DataOptions) -> Splits:
    """Splits of the ImageFolder tree at ``path`` (see the module docstring)."""
    from torchvision import datasets

    where = f"{IMAGEFOLDER_PREFIX}{path}"
    if not path.is_dir():
        raise AutomcError(f"{where}: no such folder")
    train_dir, val_dir, test_dir = path / "train", path / "val", path / "test"
    if not train_dir.is_dir() or not (val_dir.is_dir() or test_dir.is_dir()):
        raise AutomcError(
            f"{where}: expected subfolders train/ and val/ (or test/), each with one folder of images per class"
        )
    channels, size = options.in_channels or 3, options.input_size or 32
    tf, conversion, normalization = pil_transform(
        in_channels=channels, input_size=size, native=None, normalize=options.normalize or "imagenet"
    )

    def folder(d: Path) -> datasets.ImageFolder:
        try:
            return datasets.ImageFolder(str(d), transform=tf)
        except (FileNotFoundError, RuntimeError) as e:
            raise AutomcError(f"{where}: {d.name}/: {' '.join(str(e).split())}") from None

    present = [d for d in (val_dir, test_dir) if d.is_dir()]
    train_full = folder(train_dir)
    if len(train_full.classes) < 2:
        raise AutomcError(
            f"{where}: train/ has {len(train_full.classes)} class folder(s) ({', '.join(train_full.classes)}); "
            "a classifier needs at least two"
        )
    held = [folder(d) for d in present]
    for ds, d in zip(held, present):
        if ds.classes != train_full.classes:
            raise AutomcError(
                f"{where}: class folders of {d.name}/ ({', '.join(ds.classes)}) "
                f"differ from train/ ({', '.join(train_full.classes)})"
            )
    train: Dataset
    if len(held) == 2:
        train, (val, test) = train_full, held
        sources = ("train/", "val/", "test/")
    else:
        test = held[0]
        labels = np.asarray(train_full.targets, dtype=np.int64)
        if np.bincount(labels).min() < 2:
            raise AutomcError(f"{where}: every class in train/ needs at least 2 images")
        n_val = max(len(train_full.classes), int(round(VAL_FRACTION * len(labels))))
        fit_idx, val_idx = stratified_split(labels, n_val / len(labels), seed=SPLIT_SEED)
        train, val = Subset(train_full, fit_idx.tolist()), Subset(train_full, val_idx.tolist())
        held_name = present[0].name
        test_note = f"{held_name}/" + ("" if held_name == "test" else ", used as test: there is no test/")
        sources = ("train/ minus val", f"seeded stratified {n_val:,} of train/", test_note)
    check_images([p for ds in (train_full, *held) for p, _ in ds.samples], where)
    files = sorted(p for d in (train_dir, *present) for p in d.rglob("*") if p.is_file())
    relative = [str(p.relative_to(path)) for p in files]
    return Splits(
        train=train,
        val=val,
        test=test,
        num_classes=len(train_full.classes),
        in_channels=channels,
        input_size=(size, size),
        name=name,
        augment="crop",
        sources=sources,
        conversion=conversion,
        normalization=normalization,
        fingerprint=files_digest(files, *relative, conversion, normalization, "|".join(sources)),
    )
