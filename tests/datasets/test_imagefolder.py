"""imagefolder:PATH: which folder is which split, channels and size, --data-root, content identity, flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from automc import data
from automc.cli import main
from automc.errors import AutomcError


def _images(folder: Path, classes: tuple[str, ...], n: int, *, seed: int = 0, grey: bool = False) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, cls in enumerate(classes):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (9, 9) if grey else (9, 9, 3)
            Image.fromarray(rng.integers(0, 60, shape, dtype=np.uint8) + np.uint8(120 * k)).save(
                folder / cls / f"{i}.png"
            )


def test_train_and_val_without_test_states_val_is_the_test_split(tmp_path: Path) -> None:
    _images(tmp_path / "train", ("a", "b"), 10)
    _images(tmp_path / "val", ("a", "b"), 3)
    s = data.load(f"imagefolder:{tmp_path}")
    assert (len(s.train), len(s.val), len(s.test)) == (18, 2, 6)
    assert s.sources[2] == "val/, used as test: there is no test/"
    assert "test 6 (val/, used as test: there is no test/)" in s.summary()
    assert "val 2 (seeded stratified 2 of train/)" in s.summary()
    assert s.augment == "crop"  # no flips forced on an image folder
    _images(tmp_path / "test", ("a", "b"), 2)
    named = data.load(f"imagefolder:{tmp_path}")
    assert (len(named.train), len(named.val), len(named.test)) == (20, 6, 4)
    assert named.sources == ("train/", "val/", "test/")


def test_grey_channels_size_normalisation_and_data_root(tmp_path: Path) -> None:
    _images(tmp_path / "set" / "train", ("a", "b"), 6, grey=True)
    _images(tmp_path / "set" / "test", ("a", "b"), 2, grey=True)
    options = data.DataOptions(in_channels=1, input_size=20, normalize="none")
    s = data.load("imagefolder:set", tmp_path, options=options)
    x, _ = s.train[0]
    assert x.shape == (1, 20, 20) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert (s.in_channels, s.input_size) == (1, (20, 20))
    assert "RGB to grey" in s.conversion and s.normalization.startswith("none")
    rgb = data.load(f"imagefolder:{tmp_path / 'set'}")
    assert rgb.train[0][0].shape == (3, 32, 32) and rgb.normalization.startswith("imagenet")
    assert rgb.identity != s.identity
    with pytest.raises(AutomcError, match="--normalize train needs an in-memory dataset"):
        data.load("imagefolder:set", tmp_path, options=data.DataOptions(normalize="train"))
    with pytest.raises(AutomcError, match="gives 2 values for 3-channel images"):
        data.load("imagefolder:set", tmp_path, options=data.DataOptions(normalize="0.5,0.5/0.2,0.2"))


def test_identity_follows_the_images_not_the_path(tmp_path: Path) -> None:
    _images(tmp_path / "train", ("a", "b"), 4)
    _images(tmp_path / "test", ("a", "b"), 2)
    first = data.load(f"imagefolder:{tmp_path}").identity
    assert data.load(f"imagefolder:{tmp_path}").identity == first
    _images(tmp_path / "train", ("a", "b"), 4, seed=1)
    assert data.load(f"imagefolder:{tmp_path}").identity != first


def test_search_data_flags_land_in_the_config(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run.yaml"
    argv = ["search", "--dataset", "fashion-mnist", "--in-channels", "3", "--input-size", "28"]
    argv += ["--normalize", "0.5/0.25", "--augment", "flip+crop", "--train-subset", "500"]
    assert main([*argv, "--dump-config", str(out)]) == 0
    section = yaml.safe_load(out.read_text())["data"]
    assert section == {
        "dataset": "fashion-mnist",
        "root": None,
        "in_channels": 3,
        "input_size": 28,
        "normalize": "0.5/0.25",
        "augment": "flip+crop",
        "train_subset": 500,
    }
    assert main(["search", "--augment", "mirror", "--dump-config", str(out)]) == 2
    assert "--augment: unknown augmentation 'mirror'" in capsys.readouterr().err
