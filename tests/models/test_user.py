"""User models named by an import path: built only from a path the user gives, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from torch import nn

from automc import models
from automc.errors import AutomcError
from automc.models import user

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def user_pkg_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def test_build_calls_the_factory_with_the_given_kwargs():
    net = user.build("user_pkg.netdef:build_net", {"width": 4})
    assert isinstance(net, nn.Module) and net.stem.out_channels == 4
    assert user.class_path(net) == "user_pkg.netdef:SeparableResNet"
    assert user.build("user_pkg.netdef:SeparableResNet").stem.out_channels == 8


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("user_pkg.no_such_module:build_net", "cannot import module 'user_pkg.no_such_module'"),
        ("user_pkg.netdef:no_such_factory", "has no attribute 'no_such_factory'"),
        ("user_pkg.netdef:broken_factory", "the factory raised ValueError: width must be even"),
        ("user_pkg.netdef:not_a_module", "returned a dict, not a torch nn.Module"),
        ("not a path", "an import path has the form package.module:factory"),
    ],
)
def test_bad_import_paths_are_one_line_errors(path: str, message: str):
    with pytest.raises(AutomcError) as info:
        user.build(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_factory_kwargs_must_be_a_json_object():
    assert user.parse_kwargs('{"width": 2}') == {"width": 2}
    assert user.parse_kwargs(None) == {}
    for text in ("[1, 2]", "{width: 2}"):
        with pytest.raises(AutomcError, match="--model-kwargs"):
            user.parse_kwargs(text)


def test_import_paths_are_told_apart_from_zoo_and_torchvision_names():
    assert user.is_import_path("my_pkg.models:build_net") and user.is_import_path("mod:Net.build")
    assert not user.is_import_path("tv:resnet18") and not user.is_import_path("resnet20")
    assert not user.is_import_path("imagefolder:/data/x")


def test_create_never_imports_a_path_it_is_given(monkeypatch: pytest.MonkeyPatch):
    """``models.create`` is reached from data files (saved models, configs): it must not import."""
    monkeypatch.delitem(sys.modules, "user_pkg.netdef", raising=False)
    with pytest.raises(AutomcError, match="never from a data file"):
        models.create("user_pkg.netdef:build_net")
    assert "user_pkg.netdef" not in sys.modules
