"""Loader and strict validator for energy tables (``schema: automc/energy-table``).

An energy table lists the energy of arithmetic operations and memory accesses for one
process node, each entry with its source, plus the rules used between entries (see
``automc.cost.energy``). Example: ``hw_profiles/energy-45nm.yaml``.

Every problem of a file is collected and raised as one ``ConfigError`` line naming the
file and each bad field (unknown keys, missing fields, non-finite or non-positive
numbers, duplicate entries).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automc.schema.common import Problems, check_header, read_yaml

ENERGY_SCHEMA = "automc/energy-table"
ENERGY_VERSIONS = frozenset({1})
OPS = ("add", "mult")
DTYPES = ("int", "float")
LEVELS = ("register_file", "sram", "dram")
REQUIRED_LEVELS = ("sram", "dram")

_TOP_REQUIRED = {"schema", "version", "name", "onchip_buffer_bytes", "rules", "compute", "memory"}
_TOP_OPTIONAL = {"process_nm"}
_OP_KEYS = {"op", "dtype", "bits", "energy_pj", "source"}
_MEM_KEYS = {"level", "bits", "energy_pj", "source"}


@dataclass(frozen=True)
class OpEnergy:
    """Energy of one arithmetic operation.

    Attributes:
        op: ``add`` or ``mult``.
        dtype: ``int`` or ``float``.
        bits: operand width of the entry.
        energy_pj: picojoules per operation.
        source: where the figure comes from.
    """

    op: str
    dtype: str
    bits: int
    energy_pj: float
    source: str


@dataclass(frozen=True)
class MemEnergy:
    """Energy of one memory access.

    Attributes:
        level: ``register_file``, ``sram`` or ``dram``.
        bits: bits moved per access.
        energy_pj: picojoules per access.
        source: where the figure comes from.
    """

    level: str
    bits: int
    energy_pj: float
    source: str

    @property
    def energy_pj_per_bit(self) -> float:
        return self.energy_pj / self.bits


@dataclass(frozen=True)
class EnergyTable:
    """A validated energy table.

    Attributes:
        name: table name (e.g. ``energy-45nm``).
        rules: the scaling rules between entries, as stated in the file.
        onchip_buffer_bytes: default on-chip buffer size when the device profile gives none.
        compute: arithmetic entries.
        memory: memory-access entries.
        process_nm: process node, when given.
        path: file the table was read from (empty when built in code).
    """

    name: str
    rules: str
    onchip_buffer_bytes: int
    compute: tuple[OpEnergy, ...]
    memory: tuple[MemEnergy, ...]
    process_nm: float | None = None
    path: str = ""

    def ops(self, op: str, dtype: str) -> tuple[OpEnergy, ...]:
        """Entries for ``op``/``dtype`` sorted by ``bits`` (may be empty)."""
        return tuple(
            sorted((e for e in self.compute if e.op == op and e.dtype == dtype), key=lambda e: e.bits)
        )

    def level(self, level: str) -> MemEnergy | None:
        """The memory entry of ``level``, or None."""
        for e in self.memory:
            if e.level == level:
                return e
        return None


def load_energy_table_file(path: str | Path) -> EnergyTable:
    """Read and validate an energy-table YAML file; raise ``ConfigError`` listing all problems."""
    p = Path(path)
    return parse_energy_table(read_yaml(p), source=str(p))


def parse_energy_table(data: Any, *, source: str = "energy table") -> EnergyTable:
    """Validate already-parsed YAML data; ``source`` names the file in error messages."""
    probs = check_header(data, source, schema=ENERGY_SCHEMA, versions=set(ENERGY_VERSIONS))
    probs.keys(data, "", required=_TOP_REQUIRED, optional=_TOP_OPTIONAL)
    name = probs.string(data, "name", "")
    rules = probs.string(data, "rules", "")
    buffer = probs.number(data, "onchip_buffer_bytes", "", integer=True, positive=True)
    process = probs.number(data, "process_nm", "", positive=True, required=False)
    compute = _entries(probs, data.get("compute"), "compute", _OP_KEYS, _parse_op)
    memory = _entries(probs, data.get("memory"), "memory", _MEM_KEYS, _parse_mem)
    _check_coverage(probs, compute, memory)
    probs.raise_if_any()
    assert name is not None and rules is not None and buffer is not None
    return EnergyTable(
        name=name,
        rules=rules,
        onchip_buffer_bytes=int(buffer),
        compute=tuple(compute),
        memory=tuple(memory),
        process_nm=None if process is None else float(process),
        path=source,
    )


def _entries(probs: Problems, items: Any, field: str, keys: set[str], parse: Any) -> list[Any]:
    if items is None:  # a missing list was already reported by ``probs.keys``
        return []
    if not isinstance(items, list) or not items:
        probs.add(field, f"must be a non-empty list of entries, got {type(items).__name__}")
        return []
    out = []
    seen: dict[tuple[Any, ...], int] = {}
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        entry = probs.mapping(item, where)
        if entry is None:
            continue
        probs.keys(entry, where, required=keys)
        parsed = parse(probs, entry, where)
        if parsed is None:
            continue
        key = parsed[0]
        if key in seen:
            probs.add(where, f"duplicate entry {'/'.join(map(str, key))} (also {field}[{seen[key]}])")
            continue
        seen[key] = i
        out.append(parsed[1])
    return out


def _bits(probs: Problems, entry: Mapping[str, Any], where: str) -> int | None:
    v = probs.number(entry, "bits", where, integer=True, positive=True, required=False)
    if v is not None and v > 64:
        probs.add(f"{where}.bits", f"must be <= 64, got {v!r}")
        return None
    return None if v is None else int(v)


def _choice(
    probs: Problems, entry: Mapping[str, Any], key: str, where: str, allowed: tuple[str, ...]
) -> str | None:
    if key not in entry:
        return None
    v = entry[key]
    if v not in allowed:
        probs.add(f"{where}.{key}", f"must be one of {', '.join(allowed)}, got {v!r}")
        return None
    return str(v)


def _parse_op(
    probs: Problems, entry: Mapping[str, Any], where: str
) -> tuple[tuple[Any, ...], OpEnergy] | None:
    op = _choice(probs, entry, "op", where, OPS)
    dtype = _choice(probs, entry, "dtype", where, DTYPES)
    bits = _bits(probs, entry, where)
    energy = probs.number(entry, "energy_pj", where, positive=True, required=False)
    source = probs.string(entry, "source", where, required=False)
    if op is None or dtype is None or bits is None or energy is None or source is None:
        return None
    return (op, dtype, bits), OpEnergy(op=op, dtype=dtype, bits=bits, energy_pj=float(energy), source=source)


def _parse_mem(
    probs: Problems, entry: Mapping[str, Any], where: str
) -> tuple[tuple[Any, ...], MemEnergy] | None:
    level = _choice(probs, entry, "level", where, LEVELS)
    bits = _bits(probs, entry, where)
    energy = probs.number(entry, "energy_pj", where, positive=True, required=False)
    source = probs.string(entry, "source", where, required=False)
    if level is None or bits is None or energy is None or source is None:
        return None
    return (level,), MemEnergy(level=level, bits=bits, energy_pj=float(energy), source=source)


def _check_coverage(probs: Problems, compute: list[OpEnergy], memory: list[MemEnergy]) -> None:
    if compute and not any(e.op == "mult" and e.dtype == "float" and e.bits == 32 for e in compute):
        probs.add("compute", "needs a 32-bit float mult entry (float32 layers are priced with it)")
    if compute and not any(e.op == "add" and e.dtype == "float" and e.bits == 32 for e in compute):
        probs.add("compute", "needs a 32-bit float add entry (float32 layers are priced with it)")
    levels = {e.level for e in memory}
    if memory:
        for level in REQUIRED_LEVELS:
            if level not in levels:
                probs.add("memory", f"needs a {level!r} entry")
