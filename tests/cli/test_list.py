"""``automc list KIND`` through the real CLI entry point, for every kind in ``automc.registry.KINDS``."""

from __future__ import annotations

import pytest

from automc import models
from automc.cli import main
from automc.registry import KINDS, lookup


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_lists_every_name_with_its_description(kind: str, capsys) -> None:
    assert main(["list", kind]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {name: text for name, text in (line.split(None, 1) for line in lines)}
    assert set(lookup(kind).names()) <= set(listed)
    assert all(listed[name] == text for name, text in lookup(kind).describe().items())
    assert len(listed) == len(lines)


def test_list_models(capsys) -> None:
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("resnet20 ") and "He et al." in line for line in lines)
    assert any(line.startswith("test_tiny ") for line in lines)
    assert lines[-1].startswith("tv:<name> ") and "torchvision" in lines[-1]
    assert len(lines) == len(models.names()) + 1


def test_list_datasets(capsys) -> None:
    assert main(["list", "datasets"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["cifar10", "digits", "fashion-mnist", "mnist", "synthetic", "imagefolder:PATH"]


def test_list_controllers_in_sorted_order_aligned(capsys) -> None:
    assert main(["list", "controllers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "amc",
        "ilp",
        "optuna-gp",
        "optuna-nsga2",
        "optuna-tpe",
        "random",
        "ray",
    ]
    width = len("optuna-nsga2") + 2
    assert all(line[width - 2 : width] == "  " and line[width] != " " for line in lines)


def test_list_unknown_kind_is_exit_2_naming_the_kinds(capsys) -> None:
    with pytest.raises(SystemExit) as err:
        main(["list", "widgets"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "'widgets'" in lines[0]
    assert all(repr(kind) in lines[0] for kind in KINDS)


def test_list_spaces_shows_every_shipped_space_with_its_file_description(capsys) -> None:
    from automc.resources import find_space
    from automc.space import SearchSpace

    assert main(["list", "spaces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = dict(line.split(None, 1) for line in lines)
    assert {"joint", "prune", "quant", "lowrank"} <= set(listed)
    assert listed["joint"] == SearchSpace.load(find_space("joint")).spec.description
    assert "(the default space)" in listed["joint"]


def test_list_profiles_shows_device_profiles_not_energy_tables(capsys) -> None:
    assert main(["list", "profiles"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "cpu-x86-2core-ort" in names and "cpu-x86-2core-torch" in names and "energy-45nm" not in names
    assert names[0] == "auto" and "cpu-x86-2core-avx2-ort" in names
