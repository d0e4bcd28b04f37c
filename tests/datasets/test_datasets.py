"""Datasets: digits split/normalisation, synthetic determinism, cifar10/imagefolder errors, loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automc import data
from automc.errors import AutomcError


@pytest.fixture(scope="module")
def digits() -> data.Splits:
    return data.load("digits")


def _rows(ds) -> set[bytes]:
    return {x.numpy().tobytes() for x in ds.tensors[0]}


def test_digits_split_sizes_and_metadata(digits: data.Splits) -> None:
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1167, 270, 360)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert (digits.num_classes, digits.in_channels, digits.input_size, digits.name) == (
        10,
        3,
        (32, 32),
        "digits",
    )
    x, y = digits.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert digits.example_input(2).shape == (2, 3, 32, 32)
    assert digits.augment == "crop"


def test_digits_channels_are_replicated_and_normalised_with_train_statistics(digits: data.Splits) -> None:
    x = digits.train.tensors[0]
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std()) - 1.0) < 1e-3
    assert abs(float(digits.test.tensors[0].mean())) > 1e-4  # test statistics are not used


def test_digits_splits_are_stratified(digits: data.Splits) -> None:
    for part, expected in ((digits.test, 0.20), (digits.val, 0.15), (digits.train, 0.65)):
        counts = torch.bincount(part.tensors[1], minlength=10).numpy()
        fractions = counts / np.bincount(
            np.concatenate([p.tensors[1].numpy() for p in (digits.train, digits.val, digits.test)])
        )
        assert np.all(np.abs(fractions - expected) < 0.03), (expected, fractions)


def test_digits_val_and_test_are_disjoint_from_train(digits: data.Splits) -> None:
    train = _rows(digits.train)
    assert not train & _rows(digits.val)
    assert not train & _rows(digits.test)
    assert not _rows(digits.val) & _rows(digits.test)


def test_digits_split_does_not_depend_on_seed(digits: data.Splits) -> None:
    other = data.load("digits", seed=7)
    assert torch.equal(other.test.tensors[0], digits.test.tensors[0])
    assert torch.equal(other.val.tensors[1], digits.val.tensors[1])


def test_synthetic_is_deterministic_and_seeded() -> None:
    a, b, c = data.load("synthetic", seed=3), data.load("synthetic", seed=3), data.load("synthetic", seed=4)
    assert (len(a.train), len(a.val), len(a.test)) == (256, 64, 64)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    assert torch.bincount(a.train.tensors[1]).tolist() == [26] * 6 + [25] * 4


def test_synthetic_labels_are_learnable_by_nearest_class_mean() -> None:
    s = data.load("synthetic")
    x, y = s.train.tensors
    means = torch.stack([x[y == k].mean(0).flatten() for k in range(10)])
    xt, yt = s.test.tensors
    pred = torch.cdist(xt.flatten(1), means).argmin(1)
    assert float((pred == yt).float().mean()) > 0.9


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(
        AutomcError,
        match=r"unknown dataset 'kmnist' \(known: cifar10, digits, fashion-mnist, mnist, synthetic; or imagefolder:PATH\)",
    ):
        data.load("kmnist")
    assert data.names() == ["cifar10", "digits", "fashion-mnist", "mnist", "synthetic"]
    assert "imagefolder:PATH" in data.describe()


def test_cifar10_missing_folder_says_how_to_get_it(tmp_path) -> None:
    for root in (None, tmp_path):
        with pytest.raises(AutomcError) as err:
            data.load("cifar10", root)
        msg = str(err.value)
        assert "cifar-10-batches-py" in msg and "--data-root" in msg and "cs.toronto.edu" in msg


def test_cifar10_corrupt_folder_is_a_user_error(tmp_path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(AutomcError, match="cifar10: cannot read"):
        data.load("cifar10", tmp_path)


def _write_images(folder, classes, n, size=(12, 10)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, cls in enumerate(classes):
        (folder / cls).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 50, (*size, 3), dtype=np.uint8) + np.uint8(100 * k)
            Image.fromarray(img).save(folder / cls / f"{i}.png")


def test_imagefolder_with_train_and_val(tmp_path) -> None:
    _write_images(tmp_path / "train", ["cat", "dog"], 10)
    _write_images(tmp_path / "val", ["cat", "dog"], 3)
    s = data.load(f"imagefolder:{tmp_path}", options=data.DataOptions(input_size=16))
    assert (len(s.train), len(s.val), len(s.test)) == (18, 2, 6)
    assert (s.num_classes, s.in_channels, s.input_size) == (2, 3, (16, 16))
    x, y = s.train[0]
    assert x.shape == (3, 16, 16) and y in (0, 1)


def test_imagefolder_errors(tmp_path) -> None:
    with pytest.raises(AutomcError, match="no such folder"):
        data.load(f"imagefolder:{tmp_path / 'nope'}")
    with pytest.raises(AutomcError, match="expected subfolders train/ and val/"):
        data.load(f"imagefolder:{tmp_path}")
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    with pytest.raises(AutomcError, match="train/"):
        data.load(f"imagefolder:{tmp_path}")


def test_imagefolder_class_mismatch(tmp_path) -> None:
    _write_images(tmp_path / "train", ["a", "b"], 4)
    _write_images(tmp_path / "test", ["a", "c"], 2)
    with pytest.raises(AutomcError, match=r"class folders of test/ \(a, c\) differ from train/ \(a, b\)"):
        data.load(f"imagefolder:{tmp_path}")


def test_loader_is_deterministic_per_seed() -> None:
    s = data.load("synthetic")

    def order(seed: int) -> list[int]:
        return torch.cat([y for _, y in data.loader(s.train, 32, shuffle=True, seed=seed)]).tolist()

    assert order(5) == order(5)
    assert order(5) != order(6)
    assert sorted(order(5)) == sorted(s.train.tensors[1].tolist())
    plain = torch.cat([y for _, y in data.loader(s.train, 100, shuffle=False)])
    assert torch.equal(plain, s.train.tensors[1])
