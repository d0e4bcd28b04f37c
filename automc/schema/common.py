"""Helpers for versioned data files (``schema:`` + ``version:`` + strict keys).

Every loader reads YAML with ``yaml.safe_load`` only, collects *all* problems of a file
and raises one ``ConfigError`` whose single line names the file and each bad field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import yaml

from automc.errors import ConfigError


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file; a missing or unreadable file -> ConfigError naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read file ({e.__class__.__name__})") from None


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file with ``safe_load``; missing/unreadable/unparsable -> ConfigError."""
    p = Path(path)
    text = read_text(p)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}") from None


class Problems:
    """Collects validation problems for one file, then raises them all at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.items.append(f"{field}: {message}" if field else message)

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(f"{self.source}: " + "; ".join(self.items))

    # --- typed getters: return the value, or None after recording a problem ---
    def mapping(self, d: Any, field: str, *, required: bool = True) -> Mapping[str, Any] | None:
        if d is None and not required:
            return None
        if not isinstance(d, Mapping):
            self.add(field, f"must be a mapping, got {type(d).__name__}")
            return None
        return d

    def keys(
        self,
        d: Mapping[str, Any],
        field: str,
        *,
        required: AbstractSet[str],
        optional: AbstractSet[str] = frozenset(),
    ) -> None:
        prefix = f"{field}." if field else ""
        for k in sorted(set(d) - required - set(optional), key=str):
            self.add(f"{prefix}{k}", "unknown key")
        for k in sorted(required - set(d)):
            self.add(f"{prefix}{k}", "missing")

    def number(
        self,
        d: Mapping[str, Any],
        key: str,
        field: str,
        *,
        integer: bool = False,
        positive: bool = False,
        minimum: float | None = 0.0,
        required: bool = True,
    ) -> float | None:
        name = f"{field}.{key}" if field else key
        if key not in d:
            if required:
                self.add(name, "missing")
            return None
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.add(name, f"must be a number, got {v!r}")
            return None
        if integer and not isinstance(v, int):
            self.add(name, f"must be an integer, got {v!r}")
            return None
        if math.isnan(v) or math.isinf(v):
            self.add(name, f"must be finite, got {v!r}")
            return None
        if positive and v <= 0:
            self.add(name, f"must be > 0, got {v!r}")
            return None
        if minimum is not None and v < minimum:
            self.add(name, f"must be >= {minimum}, got {v!r}")
            return None
        return v

    def string(self, d: Mapping[str, Any], key: str, field: str, *, required: bool = True) -> str | None:
        name = f"{field}.{key}" if field else key
        if key not in d:
            if required:
                self.add(name, "missing")
            return None
        v = d[key]
        if not isinstance(v, str) or not v:
            self.add(name, f"must be a non-empty string, got {v!r}")
            return None
        return v


def check_header(data: Any, source: str, *, schema: str, versions: set[int]) -> Problems:
    """Validate the ``schema:``/``version:`` header; return a Problems collector.

    A wrong schema or unsupported version is raised at once (the rest of the file cannot
    be interpreted); other problems are collected by the caller.
    """
    probs = Problems(source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping with 'schema' and 'version'")
    if data.get("schema") != schema:
        raise ConfigError(f"{source}: schema: expected {schema!r}, got {data.get('schema')!r}")
    version = data.get("version")
    if isinstance(version, bool) or version not in versions:
        raise ConfigError(
            f"{source}: version: unsupported version {version!r} (supported: {', '.join(map(str, sorted(versions)))})"
        )
    return probs
