"""Fashion-MNIST / MNIST from IDX files: the real Debian files, conversion, missing and corrupt files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from automc import data
from automc.cli import main
from automc.data import idx
from automc.errors import AutomcError

DEBIAN = idx.DEBIAN_FASHION_MNIST


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(folder: Path, *, n_train: int = 5200, n_test: int = 50, gz: bool = True) -> Path:
    """Four small IDX files: images whose mean brightness encodes the label."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 20, (n, 28, 28)) + 20 * labels[:, None, None]
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            body = _idx_bytes(array)
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(body, compresslevel=1))
            else:
                (folder / stem).write_bytes(body)
    return folder


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("idx"))


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_loads_the_debian_files() -> None:
    s = data.load("fashion-mnist")
    assert (len(s.train), len(s.val), len(s.test)) == (55000, 5000, 10000)
    assert (s.num_classes, s.in_channels, s.input_size, s.augment) == (10, 1, (32, 32), "crop+flip")
    train_x, train_y = s.train.tensors
    assert train_x.shape == (55000, 1, 32, 32)
    assert abs(float(train_x.mean())) < 1e-3 and abs(float(train_x.std()) - 1.0) < 1e-3
    assert torch.bincount(s.val.tensors[1]).tolist() == [500] * 10
    assert torch.bincount(s.test.tensors[1]).tolist() == [1000] * 10
    background = float(s.test.tensors[0][:, :, :2].max())
    assert background == float(s.test.tensors[0][:, :, :2].min())  # the 2-pixel zero padding
    assert "zero-padded to 32x32" in s.summary() and "t10k" in s.summary()
    assert len(s.identity) == 64


def test_small_files_split_convert_and_normalise(small: Path) -> None:
    s = data.load("fashion-mnist", small)
    assert (len(s.train), len(s.val), len(s.test)) == (200, 5000, 50)
    assert s.train.tensors[0].shape == (200, 1, 32, 32)
    assert torch.bincount(s.val.tensors[1]).tolist() == [500] * 10
    train_rows = {x.numpy().tobytes() for x in s.train.tensors[0]}
    assert not train_rows & {x.numpy().tobytes() for x in s.val.tensors[0]}

    rgb = data.load(
        "fashion-mnist", small, options=data.DataOptions(in_channels=3, input_size=28, normalize="none")
    )
    x = rgb.test.tensors[0]
    assert x.shape == (50, 3, 28, 28) and rgb.in_channels == 3
    assert torch.equal(x[:, 0], x[:, 2]) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert rgb.identity != s.identity
    resized = data.load("mnist", small, options=data.DataOptions(input_size=33, normalize="0.5/0.25"))
    assert resized.input_size == (33, 33) and "resized bilinearly" in resized.conversion
    assert resized.augment == "crop"


def test_torchvision_raw_folder_and_plain_files(tmp_path: Path) -> None:
    _write(tmp_path / "FashionMNIST" / "raw", gz=False)
    _write(tmp_path / "MNIST" / "raw")
    assert len(data.load("fashion-mnist", tmp_path).test) == 50
    assert len(data.load("mnist", tmp_path).test) == 50


def test_train_subset_is_seeded_and_keyed(small: Path) -> None:
    full = data.load("fashion-mnist", small)
    a = data.load("fashion-mnist", small, options=data.DataOptions(train_subset=50))
    b = data.load("fashion-mnist", small, options=data.DataOptions(train_subset=50))
    assert len(a.train) == 50 and len(a.val) == len(full.val)
    assert a.train.indices == b.train.indices and a.identity == b.identity != full.identity
    assert "seeded random 50" in a.summary()


def test_missing_files_name_them_and_the_debian_package(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(AutomcError) as err:
        data.load("fashion-mnist", tmp_path)
    msg = str(err.value)
    for name in idx.IDX_FILES:
        assert f"{name}.gz" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "\n" not in msg
    monkeypatch.setattr(idx, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(AutomcError, match=f"in {tmp_path / 'absent'}; apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist")
    with pytest.raises(AutomcError, match="mnist: expected train-images-idx3-ubyte.gz.*--data-root"):
        data.load("mnist")


def test_cli_missing_files_is_one_line_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path))
    argv = ["train", "--model", "test_tiny", "--dataset", "fashion-mnist", "--data-root", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install dataset-fashion-mnist" in err


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda b: b"\x00\x00\x09\x03" + b[4:], "bad IDX magic number 00000903"),
        (lambda b: b[:-10], "truncated or corrupt"),
        (lambda b: b[:2], "bad IDX magic number 0000 "),
    ],
)
def test_corrupt_file_is_one_line_naming_it(tmp_path: Path, damage, match) -> None:
    folder = _write(tmp_path, gz=False)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(AutomcError, match=match) as err:
        data.load("fashion-mnist", folder)
    assert str(err.value).startswith(str(target)) and "\n" not in str(err.value)


def test_not_gzip_and_label_count_mismatch(tmp_path: Path) -> None:
    folder = _write(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(AutomcError, match="t10k-labels-idx1-ubyte.gz: not a readable IDX file"):
        data.load("fashion-mnist", folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(7))))
    with pytest.raises(AutomcError, match="7 labels for 50 images"):
        data.load("fashion-mnist", folder)
