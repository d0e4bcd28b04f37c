"""``CostReport``: what every cost model returns (plain data, no torch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

TOTAL_KEYS = ("macs", "params", "size_bytes", "peak_activation_bytes", "energy_mj", "latency_ms")


@dataclass(frozen=True)
class CostReport:
    """Cost of one candidate: totals, per-layer figures and what could not be priced.

    Attributes:
        total: metric -> value for the whole network. Keys (when the model computes
            them): ``macs``, ``params``, ``size_bytes``, ``peak_activation_bytes``,
            ``energy_mj``, ``energy_compute_mj``, ``energy_memory_mj``, ``latency_ms``.
        per_layer: layer name -> metric -> value.
        unsupported: layer name -> reason it could not be priced. A non-empty mapping
            means the totals are lower bounds, never silently complete.
        flags: layer name -> notes (e.g. ``latency: roofline fallback``).
    """

    total: Mapping[str, float]
    per_layer: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: MappingProxyType({}))
    unsupported: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    flags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": dict(self.total),
            "per_layer": {k: dict(v) for k, v in self.per_layer.items()},
            "unsupported": dict(self.unsupported),
            "flags": dict(self.flags),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CostReport:
        return cls(
            total=dict(d["total"]),
            per_layer={k: dict(v) for k, v in d.get("per_layer", {}).items()},
            unsupported=dict(d.get("unsupported", {})),
            flags=dict(d.get("flags", {})),
        )
