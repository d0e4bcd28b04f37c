"""Data settings as text: augmentation and normalisation choices (stdlib only).

``automc.config`` validates ``data.augment`` and ``data.normalize`` with these parsers
without importing torch; the loaders apply the parsed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

AUGMENTS = ("none", "crop", "flip", "crop+flip")
"""Training augmentations: ``crop`` = random shifts of up to 4 pixels (border replicated),
``flip`` = random horizontal flips (only where a mirrored image keeps its label)."""

NORMALIZE_FORMS = ("none", "imagenet", "train", "MEAN/STD")
"""``none``: pixels in [0, 1]; ``imagenet``: ImageNet mean/std; ``train``: statistics of
the train split (in-memory datasets); ``MEAN/STD``: one value or one per channel,
comma-separated, e.g. ``0.5/0.25`` or ``0.49,0.48,0.45/0.25,0.24,0.26``."""


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """How a built-in dataset is converted for the model; ``None`` = the dataset's default.

    Attributes:
        in_channels: image channels given to the model (1 = grey, 3 = RGB; grey images
            are replicated to 3 channels, RGB images turned grey by luminance).
        input_size: side of the square images given to the model.
        normalize: one of :data:`NORMALIZE_FORMS`.
        train_subset: train on a seeded random subset of this many train images (val and
            test unchanged).
    """

    in_channels: int | None = None
    input_size: int | None = None
    normalize: str | None = None
    train_subset: int | None = None

    def given(self) -> dict[str, object]:
        """The options that are set, by field name."""
        return {k: v for k, v in vars(self).items() if v is not None}


def canonical_augment(text: str) -> str:
    """``text`` as one of :data:`AUGMENTS` (``flip+crop`` -> ``crop+flip``).

    Raises:
        ValueError: not a known augmentation (the message lists them).
    """
    parts = {p.strip() for p in str(text).split("+")}
    if parts == {"none"}:
        return "none"
    if parts and parts <= {"crop", "flip"}:
        return "+".join(p for p in ("crop", "flip") if p in parts)
    raise ValueError(f"unknown augmentation {text!r} (known: {', '.join(AUGMENTS)})")


def parse_normalize(text: str) -> str | tuple[tuple[float, ...], tuple[float, ...]]:
    """``none``/``imagenet``/``train`` as is, or ``MEAN/STD`` as ``(means, stds)``.

    Raises:
        ValueError: anything else, or a non-positive or non-finite std.
    """
    if text in ("none", "imagenet", "train"):
        return text
    mean_text, sep, std_text = str(text).partition("/")
    try:
        means = tuple(float(v) for v in mean_text.split(","))
        stds = tuple(float(v) for v in std_text.split(","))
    except ValueError:
        means, stds = (), ()
    if not sep or not means or len(means) != len(stds) or not all(map(math.isfinite, means + stds)):
        raise ValueError(
            f"normalisation {text!r} is none of {', '.join(NORMALIZE_FORMS)} "
            "(MEAN/STD: one number or one per channel each, e.g. 0.5/0.25)"
        )
    if min(stds) <= 0:
        raise ValueError(f"normalisation {text!r}: std must be > 0")
    return means, stds
