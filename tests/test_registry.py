"""The one registry (``automc.registry``) and every registry of every kind in ``KINDS``."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from automc.errors import AutomcError
from automc.registry import KINDS, Registry, lookup


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The name of a fresh importable module holding ``VALUE = 42`` (never imported yet)."""
    name = f"registry_probe_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_lazy_entry_is_imported_on_get_only(probe: str) -> None:
    reg: Registry[int] = Registry(kind="widget")
    reg.add("answer", f"{probe}:VALUE", "the answer")
    assert reg.names() == ["answer"] and reg.describe() == {"answer": "the answer"}
    assert reg.check("answer") == "answer" and "answer" in reg and len(reg) == 1
    assert probe not in sys.modules
    assert reg.get("answer") == 42
    assert probe in sys.modules


def test_register_returns_the_object_and_names_are_sorted() -> None:
    reg: Registry[type] = Registry(kind="widget")

    @reg.register("zeta", "last by name")
    class Zeta:
        pass

    reg.register("alpha", "first by name")(int)
    assert reg.get("zeta") is Zeta and reg.get("alpha") is int
    assert reg.names() == list(reg) == ["alpha", "zeta"]
    assert list(reg.describe()) == ["alpha", "zeta"]


def test_an_unknown_name_is_one_error_listing_the_known_ones() -> None:
    reg: Registry[int] = Registry(kind="widget")
    reg.register("b", "bee")(2)
    reg.register("a", "ay")(1)
    with pytest.raises(AutomcError, match=r"^unknown widget 'c' \(known: a, b\)$"):
        reg.get("c")
    with pytest.raises(AutomcError, match=r"^plan\.yaml: widget: unknown widget 'c' \(known: a, b\)$"):
        reg.check("c", "plan.yaml: widget")
    with pytest.raises(AutomcError, match=r"unknown widget 3 \(not a name\)"):
        reg.check(3)


def test_a_taken_name_is_refused() -> None:
    reg: Registry[int] = Registry(kind="widget")
    reg.register("a", "ay")(1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a", "again")(2)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", "json:loads", "again")
    assert reg.get("a") == 1


@pytest.mark.parametrize("description", ["", "  ", "two\nlines"])
def test_a_description_must_be_one_non_empty_line(description: str) -> None:
    reg: Registry[int] = Registry(kind="widget")
    with pytest.raises(ValueError, match="one non-empty line"):
        reg.register("a", description)(1)
    with pytest.raises(ValueError, match="one non-empty line"):
        reg.add("a", "json:loads", description)
    assert reg.names() == []


@pytest.mark.parametrize("target", ["json", "json:", ":loads", "json.loads"])
def test_a_lazy_target_must_be_module_colon_attr(target: str) -> None:
    with pytest.raises(ValueError, match="target must be 'package.module:attr'"):
        Registry(kind="widget").add("a", target, "ay")


def test_a_missing_third_party_package_is_one_error_naming_it(tmp_path: Path, monkeypatch) -> None:
    name = f"registry_needs_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("import a_package_that_is_not_installed\nVALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[int] = Registry(kind="widget")
    reg.add("needy", f"{name}:VALUE", "needs a package")
    with pytest.raises(
        AutomcError,
        match=r"^widget 'needy' needs the package 'a_package_that_is_not_installed', which is not installed$",
    ):
        reg.get("needy")


def test_a_missing_automc_module_is_a_bug_not_a_user_error() -> None:
    reg: Registry[int] = Registry(kind="widget")
    reg.add("gone", "automc.no_such_module:VALUE", "points nowhere")
    with pytest.raises(ModuleNotFoundError):
        reg.get("gone")


def test_lookup_of_an_unknown_kind_lists_the_kinds() -> None:
    with pytest.raises(AutomcError, match=r"^unknown kind 'widgets' \(known: models, datasets"):
        lookup("widgets")


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_has_a_non_empty_described_registry(kind: str) -> None:
    registry = lookup(kind)
    assert registry.names() and registry.names() == sorted(registry.names())
    assert all(text and "\n" not in text for text in registry.describe().values())


ENTRIES = [pytest.param(kind, name, id=f"{kind}:{name}") for kind in KINDS for name in lookup(kind).names()]


@pytest.mark.parametrize(("kind", "name"), ENTRIES)
def test_every_entry_of_every_kind_can_be_got(kind: str, name: str) -> None:
    registry = lookup(kind)
    obj = registry.get(name)
    assert callable(obj)
    assert registry.get(name) is obj
