"""User ``Splits`` from Datasets or DataLoaders: inference, content identity, bad input, and a search on them."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import automc
from automc import data
from automc.errors import AutomcError


def _tensors(n: int, seed: int) -> TensorDataset:
    """Learnable grey 1x12x12 images of 3 classes (the class is the brightness)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = y.float().view(-1, 1, 1, 1) + 0.3 * torch.randn(n, 1, 12, 12, generator=gen)
    return TensorDataset(x, y)


class _Pairs(Dataset):
    """A plain map-style dataset (no ``targets`` attribute): classes are read from its samples."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x, int(y)


def test_inferred_shape_and_classes_from_datasets_and_loaders() -> None:
    train, val, test = _tensors(60, 0), _tensors(30, 1), _tensors(30, 2)
    s = data.Splits(train=DataLoader(train, batch_size=7, shuffle=True), val=_Pairs(val), test=test)
    assert s.train is train and (s.num_classes, s.in_channels, s.input_size) == (3, 1, (12, 12))
    assert s.example_input(2).shape == (2, 1, 12, 12)
    assert (s.name, s.augment) == ("user-data", "none")
    assert "train 60 (user train)" in s.summary()
    given = data.Splits(train=train, val=val, test=test, num_classes=5, augment="flip+crop")
    assert (given.num_classes, given.augment) == (5, "crop+flip")


def test_identity_is_the_content_not_the_container() -> None:
    train, val, test = _tensors(60, 0), _tensors(30, 1), _tensors(30, 2)
    as_sets = data.Splits(train=train, val=val, test=test)
    as_loaders = data.Splits(
        train=DataLoader(train, batch_size=16, shuffle=True), val=DataLoader(val), test=_Pairs(test)
    )
    assert as_sets.identity == as_loaders.identity
    changed = _tensors(60, 0)
    changed.tensors[0][5, 0, 3, 3] += 1.0
    assert data.Splits(train=changed, val=val, test=test).identity != as_sets.identity
    swapped = data.Splits(train=train, val=test, test=val)
    assert swapped.identity != as_sets.identity
    assert as_sets.facts()["identity"] == as_sets.identity


def test_bad_user_data_is_one_line() -> None:
    good = _tensors(10, 0)
    with pytest.raises(AutomcError, match=r"Splits.val: expected a torch Dataset or DataLoader .*got int"):
        data.Splits(train=good, val=3, test=good)
    with pytest.raises(AutomcError, match="Splits.test: empty"):
        data.Splits(train=good, val=good, test=TensorDataset(torch.zeros(0, 1), torch.zeros(0)))
    with pytest.raises(AutomcError, match=r"Splits.train: each sample must be a pair"):
        data.Splits(train=TensorDataset(torch.zeros(4, 3)), val=good, test=good)
    with pytest.raises(AutomcError, match="Splits.augment: unknown augmentation 'blur'"):
        data.Splits(train=good, val=good, test=good, augment="blur")
    with pytest.raises(AutomcError, match="data= must be an automc.data.Splits, got list"):
        automc.search(data=[good, good, good], model="test_tiny", profile=None, progress=False)


SEARCH = dict(
    model="test_tiny",
    space="prune",
    budgets=["flops=0.9"],
    objectives=["acc", "macs"],
    controller="random",
    profile=None,
    finetune_top=0,
    base_epochs=1,
    trials=3,
    proxy="adaptive_bn",
    progress=False,
    export_onnx=False,
)


def test_search_on_loaders_and_on_datasets_gives_the_same_trials(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AUTOMC_HOME", str(tmp_path / "home"))
    train, val, test = _tensors(96, 0), _tensors(48, 1), _tensors(48, 2)
    loaders = data.Splits(
        train=DataLoader(train, batch_size=32, shuffle=True), val=DataLoader(val, batch_size=8), test=test
    )
    sets = data.Splits(train=train, val=val, test=test, name="user-data")
    a = automc.search(data=loaders, out=tmp_path / "a", seed=0, **SEARCH)
    err = capsys.readouterr().err
    assert "automc: data: user-data: train 96 (user train)" in err
    assert "automc: base model: training test_tiny on user-data" in err
    b = automc.search(data=sets, out=tmp_path / "b", seed=0, **SEARCH)
    assert "automc: base model: training" not in capsys.readouterr().err  # same content: cached
    assert a.config.data.dataset == "user-data" and "user-data" in a.study
    assert [t.plan for t in a.trials] == [t.plan for t in b.trials]
    assert [t.values for t in a.trials] == [t.values for t in b.trials]
    assert a.base["test_acc"] == b.base["test_acc"]
