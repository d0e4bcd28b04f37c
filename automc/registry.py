"""A name → object table with descriptions and lazily imported plug-in modules (stdlib only).

Used for pruning criteria, weight quantizers and low-rank methods: built-in entries
register themselves with ``@REGISTRY.register(name, description)``; plug-in modules
named at construction are imported on first lookup (a plug-in module that does not
exist is skipped, any other import error propagates).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from automc.errors import AutomcError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (e.g. ``"pruning criterion"``)."""

    def __init__(self, *, kind: str, plugins: Sequence[str] = ()) -> None:
        self.kind = kind
        self._plugins = tuple(plugins)
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, description: str) -> Callable[[T], T]:
        """Decorator registering its argument under ``name`` (returns it unchanged)."""

        def deco(entry: T) -> T:
            self._entries[name] = entry
            self._descriptions[name] = description
            return entry

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._plugins:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        self._load()
        return dict(sorted(self._descriptions.items()))

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an ``AutomcError`` naming the known ones otherwise."""
        if name not in self._entries:
            self._load()
        if name not in self._entries:
            raise AutomcError(f"unknown {self.kind} {name!r} (known: {', '.join(sorted(self._entries))})")
        return self._entries[name]
