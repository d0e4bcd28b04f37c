"""Helpers for versioned data files (``schema:`` + ``version:`` + strict keys).

Every data file (search spaces, device profiles, energy tables, plans, search configs) is
read through :func:`read_text` and parsed by :func:`parse_yaml` or :func:`parse_json`,
which refuse hostile input before it can cost time or memory:

* files larger than :data:`MAX_FILE_BYTES` (4 MiB, one limit for every kind; the largest
  shipped profile is about 120 KB) are refused from their size, before being read;
* YAML anchors and aliases are refused (no "billion laughs"), and so is nesting deeper
  than :data:`MAX_DEPTH` levels in YAML and JSON;
* duplicate keys are an error in YAML and JSON (the last one would silently win);
* a number literal longer than :data:`MAX_NUMBER_CHARS` characters is refused at parse
  time (a 100000-digit integer would otherwise take seconds to convert), and an integer
  field beyond :data:`MAX_INTEGER` in magnitude is refused by :meth:`Problems.number`.

YAML is parsed with PyYAML's safe loader only (the C parser when available). Loaders
collect *all* field problems of a file and raise one ``ConfigError`` whose single line
names the file and each bad field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from automc.errors import ConfigError

MAX_FILE_BYTES = 4 * 2**20
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 40
MAX_INTEGER = 10**15

_SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_RESOLVER = yaml.resolver.Resolver()


def read_text(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """Read a UTF-8 text file of at most ``max_bytes`` bytes.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8 or too large (checked
            before reading it whole).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        with p.open("rb") as f:
            size = p.stat().st_size
            raw = f.read(max_bytes + 1) if size <= max_bytes else b""
        if size > max_bytes or len(raw) > max_bytes:
            raise ConfigError(f"{p}: file is too large ({max(size, len(raw))} bytes; at most {max_bytes})")
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read file ({e.__class__.__name__})") from None


class _StrictLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """Safe loader whose mappings refuse duplicate keys (after construction: ``true``/``True``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class reports it as a YAML error
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


@dataclass
class _Frame:
    """An open YAML collection while scanning events: where it is and what comes next."""

    path: str
    is_map: bool
    expecting_key: bool = True
    key: str = "?"
    index: int = 0
    keys: set[str] = field(default_factory=set)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _node_path(stack: list[_Frame]) -> str:
    if not stack:
        return ""
    top = stack[-1]
    if not top.is_map:
        return f"{top.path}[{top.index}]"
    return top.path if top.expecting_key else _join(top.path, top.key)


def _advance(stack: list[_Frame]) -> None:
    if stack:
        top = stack[-1]
        if top.is_map:
            top.expecting_key = not top.expecting_key
        else:
            top.index += 1


def _is_number(event: yaml.ScalarEvent) -> bool:
    tag = event.tag
    if tag in (None, "!"):
        tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)
    return tag in _NUMBER_TAGS


def _yaml_error(source: str, e: yaml.YAMLError, path: str = "") -> ConfigError:
    mark = getattr(e, "problem_mark", None)
    line = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None)
    detail = f" ({problem})" if isinstance(problem, str) and problem else ""
    inside = f" in {path}" if path else ""
    return ConfigError(f"{source}: not valid YAML{line}{detail}{inside}")


def _scan_yaml(text: str, source: str) -> None:
    """Refuse anchors/aliases, deep nesting, duplicate keys and overlong numbers, streaming.

    A syntax error is reported with the field path reached when it was found.
    """
    stack: list[_Frame] = []
    try:
        _scan_events(yaml.parse(text, Loader=_SafeLoader), stack, source)
    except yaml.YAMLError as e:
        raise _yaml_error(source, e, _node_path(stack)) from None


def _scan_events(events: Iterator[yaml.Event], stack: list[_Frame], source: str) -> None:
    for event in events:
        if isinstance(event, yaml.CollectionEndEvent):
            stack.pop()
            _advance(stack)
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        path = _node_path(stack)
        where = path or "top level"
        is_key = bool(stack) and stack[-1].is_map and stack[-1].expecting_key
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise ConfigError(f"{source}: {where}: YAML anchors and aliases are not allowed")
        if isinstance(event, yaml.ScalarEvent):
            if len(event.value) > MAX_NUMBER_CHARS and _is_number(event):
                raise ConfigError(
                    f"{source}: {where}: number literal of {len(event.value)} characters "
                    f"(at most {MAX_NUMBER_CHARS})"
                )
            if is_key:
                top = stack[-1]
                if event.value in top.keys:
                    raise ConfigError(f"{source}: {_join(top.path, event.value)}: duplicate key")
                top.keys.add(event.value)
                top.key = event.value
            _advance(stack)
            continue
        if len(stack) >= MAX_DEPTH:
            raise ConfigError(f"{source}: {where}: nested deeper than {MAX_DEPTH} levels")
        if is_key:
            stack[-1].key = "?"
        stack.append(_Frame(path=path, is_map=isinstance(event, yaml.MappingStartEvent)))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` with the safe loader and the limits of this module.

    Args:
        text: the file's content.
        source: file name used as the message prefix.

    Raises:
        ConfigError: not valid YAML, or an anchor/alias, nesting deeper than
            :data:`MAX_DEPTH`, a duplicate key or an overlong number literal.
    """
    _scan_yaml(text, source)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        raise _yaml_error(source, e) from None


def read_yaml(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Read and parse a YAML data file (:func:`read_text` then :func:`parse_yaml`)."""
    return parse_yaml(read_text(path, max_bytes=max_bytes), str(path))


def _json_number(kind: type) -> Any:
    def parse(literal: str) -> Any:
        if len(literal) > MAX_NUMBER_CHARS:
            raise ConfigError(f"number literal of {len(literal)} characters (at most {MAX_NUMBER_CHARS})")
        return kind(literal)

    return parse


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"{key}: duplicate key")
        out[key] = value
    return out


def _json_depth(data: Any) -> int:
    deepest = 0
    todo: list[tuple[Any, int]] = [(data, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(text: str, source: str) -> Any:
    """Parse JSON ``text`` with the limits of this module (size, depth, duplicate keys, numbers).

    Raises:
        ConfigError: ``"<source>: ..."`` naming the problem (and the key, for duplicates).
    """
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: too large ({len(text)} characters; at most {MAX_FILE_BYTES})")
    try:
        data = json.loads(
            text,
            object_pairs_hook=_json_object,
            parse_int=_json_number(int),
            parse_float=_json_number(float),
        )
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if _json_depth(data) > MAX_DEPTH:
        raise ConfigError(f"{source}: nested deeper than {MAX_DEPTH} levels")
    return data


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
        """``d[key]`` as a number (a boolean is not one), or None after recording why not.

        Integers beyond :data:`MAX_INTEGER` in magnitude are refused.
        """
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
        if isinstance(v, int) and abs(v) > MAX_INTEGER:
            self.add(name, f"must be at most {MAX_INTEGER:.0e} in magnitude, got {v:.3e}")
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
    be interpreted); other problems are collected by the caller. The version must be an
    integer: ``1.0`` and ``true`` are not version 1.
    """
    probs = Problems(source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping with 'schema' and 'version'")
    if data.get("schema") != schema:
        raise ConfigError(f"{source}: schema: expected {schema!r}, got {data.get('schema')!r}")
    version = data.get("version")
    if type(version) is not int or version not in versions:
        raise ConfigError(
            f"{source}: version: unsupported version {version!r} (supported: {', '.join(map(str, sorted(versions)))})"
        )
    return probs
