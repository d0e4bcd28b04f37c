"""The one name → factory registry behind every pluggable kind (stdlib only).

Models, datasets, pruning criteria, quantizers, low-rank methods, controllers, proxies
(and later runtimes) each keep one :class:`Registry`. An entry is either registered
directly (``@REGISTRY.register(name, description)``) or declared lazily as an import
target ``"package.module:attr"`` (:meth:`Registry.add`), imported on first :meth:`get`,
so that listing names never imports torch, Optuna or Ray. Every entry has a one-line
description; an unknown name is one :class:`AutomcError` listing the known ones.

``automc list KIND`` reads :data:`KINDS`: kind → ``"module:attr"`` of that kind's registry.

Example::

    from automc.registry import Registry

    CRITERIA: Registry[type] = Registry(kind="pruning criterion")
    CRITERIA.add("l1", "automc.compress.criteria.magnitude:L1", "L1 norm of each filter")

    @CRITERIA.register("mine", "my criterion")
    class Mine: ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from automc.errors import AutomcError

T = TypeVar("T")

__all__ = ["KINDS", "Entry", "Registry", "lookup"]


@dataclass(frozen=True)
class Entry:
    """One registered name: a loaded object or a lazy ``"module:attr"`` target."""

    name: str
    description: str
    target: str = ""


class Registry(Generic[T]):
    """Named entries of one kind (e.g. ``"pruning criterion"``).

    Args:
        kind: what an entry is, used in error messages (``unknown <kind> 'x'``).
    """

    def __init__(self, *, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, T] = {}

    def _check_new(self, name: str, description: str) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind}: a name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not description.strip() or "\n" in description.strip():
            raise ValueError(f"{self.kind} {name!r}: the description must be one non-empty line")

    def add(self, name: str, target: str, description: str) -> None:
        """Declare ``name`` as the object at ``target`` (``"package.module:attr"``), imported on first use."""
        self._check_new(name, description)
        module, sep, attr = target.partition(":")
        if not (module and sep and attr):
            raise ValueError(f"{self.kind} {name!r}: target must be 'package.module:attr', got {target!r}")
        self._entries[name] = Entry(name=name, description=description.strip(), target=target)

    def register(self, name: str, description: str) -> Callable[[T], T]:
        """Decorator registering its argument under ``name`` (returns it unchanged)."""

        def deco(obj: T) -> T:
            self._check_new(name, description)
            self._entries[name] = Entry(name=name, description=description.strip())
            self._loaded[name] = obj
            return obj

        return deco

    def remove(self, name: str) -> None:
        """Forget ``name`` (a test that registers a temporary entry undoes it with this).

        Raises:
            AutomcError: unknown name (the message lists the known ones).
        """
        self.check(name)
        del self._entries[name]
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """Name → one-line description, sorted by name."""
        return {n: self._entries[n].description for n in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, name: object, where: str = "") -> str:
        """``name`` if registered; otherwise one ``AutomcError`` (prefixed by ``where``) listing the known names."""
        if isinstance(name, str) and name in self._entries:
            return name
        prefix = f"{where}: " if where else ""
        shown = repr(name) if isinstance(name, str) else f"{name!r} (not a name)"
        raise AutomcError(f"{prefix}unknown {self.kind} {shown} (known: {', '.join(self.names())})")

    def get(self, name: str) -> T:
        """The object registered as ``name``, importing a lazy target on first use.

        Raises:
            AutomcError: unknown name (the message lists the known ones), or a lazy target
                that needs a third-party package which is not installed.
        """
        self.check(name)
        if name not in self._loaded:
            self._loaded[name] = self._import(self._entries[name])
        return self._loaded[name]

    def _import(self, entry: Entry) -> Any:
        module_name, _, attr = entry.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and e.name.partition(".")[0] != "automc":
                raise AutomcError(
                    f"{self.kind} {entry.name!r} needs the package {e.name!r}, which is not installed"
                ) from None
            raise
        return getattr(module, attr)


KINDS: dict[str, str] = {
    "models": "automc.models:REGISTRY",
    "datasets": "automc.data:REGISTRY",
    "criteria": "automc.compress.criteria:REGISTRY",
    "quantizers": "automc.compress.quantizers:REGISTRY",
    "lowrank": "automc.compress.lowrank:REGISTRY",
    "controllers": "automc.search.registry:REGISTRY",
    "proxies": "automc.proxy:REGISTRY",
    "runtimes": "automc.hardware.runtimes:REGISTRY",
}
"""``automc list KIND``: kind → the ``"module:attr"`` of its :class:`Registry`."""


def lookup(kind: str) -> Registry[Any]:
    """The registry of ``kind`` (a key of :data:`KINDS`); an unknown kind is an ``AutomcError``."""
    if kind not in KINDS:
        raise AutomcError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    module_name, _, attr = KINDS[kind].partition(":")
    registry = getattr(importlib.import_module(module_name), attr)
    if not isinstance(registry, Registry):
        raise TypeError(f"{KINDS[kind]} is not a Registry")
    return registry
