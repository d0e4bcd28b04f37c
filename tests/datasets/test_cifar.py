"""CIFAR-10 from its python batches: read as torchvision would, without running a pickle's code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from automc import data
from automc.data._datasets import CIFAR10_MEAN, CIFAR10_STD
from automc.data.cifar import TEST_BATCH, TRAIN_BATCHES, read_batch
from automc.errors import AutomcError


def _batch(rng: np.random.Generator, n: int) -> dict[str, object]:
    """A batch as the CIFAR-10 python version stores it (its keys and types)."""
    return {
        "batch_label": "synthetic",
        "labels": [int(i % 10) for i in range(n)],
        "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }


def _write(path: Path, obj: object, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate((*TRAIN_BATCHES, TEST_BATCH)):
        _write(folder / name, _batch(rng, 20), protocol=2 if i % 2 else 4)
    return tmp_path


def test_cifar10_batches_load_into_train_val_and_test(cifar_root: Path) -> None:
    splits = data.load("cifar10", cifar_root)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 10, 20)
    x, y = splits.test[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and int(y) == 3
    # pixel (row 0, col 1) of image 3 is its bytes 1 (red), 1025 (green), 2049 (blue), as torchvision reads it
    raw = pickle.loads((cifar_root / "cifar-10-batches-py" / TEST_BATCH).read_bytes())["data"][3]
    images, _ = read_batch(cifar_root / "cifar-10-batches-py" / TEST_BATCH)
    assert images[3, :, 0, 1].tolist() == [raw[1], raw[1025], raw[2049]]
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    pixels = (x[:, 0, 1] * std + mean) * 255  # normalised with CIFAR-10's statistics
    assert torch.allclose(
        pixels, torch.tensor([raw[1], raw[1025], raw[2049]], dtype=torch.float32), atol=1e-3
    )
    assert sorted({int(splits.val[i][1]) for i in range(len(splits.val))}) == list(range(10))  # stratified


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_batch_that_would_run_code_is_refused_and_runs_nothing(cifar_root: Path, monkeypatch) -> None:
    monkeypatch.chdir(cifar_root)
    batch = _batch(np.random.default_rng(1), 20)
    batch["batch_label"] = _RunsCode()
    _write(cifar_root / "cifar-10-batches-py" / "data_batch_3", batch)
    with pytest.raises(
        AutomcError, match=r"data_batch_3: not a CIFAR-10 python batch \(refused global posix\.system"
    ):
        data.load("cifar10", cifar_root)
    assert not (cifar_root / "pwned").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"data": np.zeros((20, 100), dtype=np.uint8)}, "'data' must be uint8 rows of 3072 pixels"),
        ({"data": np.zeros((20, 3072), dtype=np.float32)}, "'data' must be uint8 rows of 3072 pixels"),
        ({"labels": [0] * 19}, "'labels' must hold one class 0-9 per row of 'data' \\(20\\)"),
        ({"labels": [12] * 20}, "'labels' must hold one class 0-9"),
    ],
)
def test_a_bad_field_is_named_with_its_file(cifar_root: Path, change: dict[str, object], field: str) -> None:
    batch = {**_batch(np.random.default_rng(2), 20), **change}
    _write(cifar_root / "cifar-10-batches-py" / TEST_BATCH, batch)
    with pytest.raises(AutomcError, match=f"test_batch: field {field}"):
        data.load("cifar10", cifar_root)


def test_a_truncated_or_missing_batch_is_one_error(cifar_root: Path) -> None:
    path = cifar_root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(AutomcError, match="data_batch_2: not a CIFAR-10 python batch"):
        data.load("cifar10", cifar_root)
    path.unlink()
    with pytest.raises(AutomcError, match="cifar10: cannot read .*: data_batch_2 missing"):
        data.load("cifar10", cifar_root)
