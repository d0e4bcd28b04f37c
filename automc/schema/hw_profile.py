"""Loader and strict validator for device profiles (``schema: automc/hw-profile``).

A device profile says how fast one machine runs conv/linear layers: a lookup table of
measured layer latencies (``latency.table``), a roofline for configurations outside the
table, the fitted per-network overhead terms, the energy table to use, and how well the
profile predicted real compressed networks it was not built from (``validation``).
Profiles are written by ``automc profile`` (``automc.hardware``) and read by
``automc.cost.latency``. Example: ``hw_profiles/cpu-x86-2core-ort.yaml``.

Every problem of a file is collected and raised as one ``ConfigError`` line naming the
file and each bad field (unknown keys, missing fields, wrong types, non-finite or
negative numbers, duplicate table entries).
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from automc.errors import AutomcError
from automc.plan import ALLOWED_BITS, LAYER_KINDS
from automc.schema.common import Problems, check_header, read_yaml

HW_PROFILE_SCHEMA = "automc/hw-profile"
HW_PROFILE_VERSIONS = frozenset({1})
DEVICE_KINDS = ("cpu", "cuda", "mps", "xpu", "npu", "other")
#: ``median``: the typical call; ``min``: the best of the repeats, which stays reproducible on a
#: shared machine whose neighbours slow some periods down (see ``automc.hardware.timing``).
STATISTICS = ("median", "min")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4", "binary")
#: compute bits of each precision (what a table entry's ``bits`` says)
PRECISION_BITS = MappingProxyType({"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4, "binary": 1})

_TOP_REQUIRED = {"schema", "version", "device", "runtime", "measurement", "roofline", "energy", "latency"}
_TOP_OPTIONAL = {"validation"}
_DEVICE_KEYS = {"id", "kind", "description"}
_RUNTIME_KEYS = {"framework", "version", "threads", "batch", "dtype"}
_RUNTIME_OPTIONAL = {"provider", "graph_optimization", "precisions", "channel_block", "isa", "cpu"}
_MEASUREMENT_KEYS = {"warmup", "repeats", "statistic", "date"}
_ROOFLINE_KEYS = {"peak_macs_per_s", "memory_bandwidth_bytes_per_s", "launch_overhead_ms"}
_ENERGY_KEYS = {"table", "onchip_buffer_bytes"}
_LATENCY_REQUIRED = {"network_overhead_ms", "grid", "table"}
_LATENCY_OPTIONAL = {
    "layer_overhead_ms",
    "elementwise_ns_per_element",
    "table_scale",
    "networks",
    "grid_block",
}
_NETWORK_KEYS = {"model", "fingerprint", "table_scale", "network_overhead_ms"}
_GRID_KEYS = {"channel_fractions", "rank_fractions"}
_ENTRY_REQUIRED = {
    "kind",
    "in_size",
    "in_channels",
    "out_channels",
    "kernel",
    "stride",
    "groups",
    "bits",
    "batch",
    "median_ms",
    "spread_ms",
    "count",
}
_ENTRY_OPTIONAL = {"padding", "min_ms"}
_VALIDATION_REQUIRED = {"models", "n", "within_10pct", "rmspe", "spearman", "flops_spearman"}
_VALIDATION_OPTIONAL = {"per_model"}
_METRIC_KEYS = {"n", "within_10pct", "rmspe", "spearman", "flops_spearman"}

#: (kind, in_h, in_w, in_channels, out_channels, kh, kw, sh, sw, ph, pw, groups, bits, batch)
ConfigKey = tuple[str, int, int, int, int, int, int, int, int, int, int, int, int, int]


@dataclass(frozen=True)
class DeviceInfo:
    """Which machine was measured.

    Attributes:
        id: short profile name, e.g. ``cpu-x86-2core-ort``.
        kind: ``cpu``, ``cuda``, ``mps``, ``xpu``, ``npu`` or ``other``.
        description: free text (CPU model, GPU name).
    """

    id: str
    kind: str
    description: str


@dataclass(frozen=True)
class RuntimeInfo:
    """Software settings the latencies hold for: the runtime that executes the deployed model.

    Attributes:
        framework: the runtime's name (``automc list runtimes``): ``torch`` (eager) or
            ``onnxruntime``; files written before runtimes existed say ``torch``.
        version: the runtime's version string.
        threads: intra-op threads pinned during measurement.
        batch: batch size of every measurement.
        dtype: deployment dtype of the float layers, e.g. ``float32``.
        provider: execution provider (``CPUExecutionProvider``; ``eager`` for torch).
        graph_optimization: the runtime's graph-optimisation level (``ORT_ENABLE_ALL``;
            ``none`` for torch eager).
        precisions: the precisions the runtime executes natively and the table holds
            entries for (``fp32``, ``int8``...). Absent in a file: the precisions of its
            table's entries (``fp32`` for a torch-eager profile).
        channel_block: channels per block of the runtime's blocked float conv layout
            (ONNX Runtime CPU: MLAS NCHWc, 16 with AVX-512, 8 with AVX/AVX2); convs whose
            channels do not fit it run a generic kernel
            (:func:`automc.cost.latency.off_block_layout`). 0 (absent in a file): none.
        isa: the instruction sets of the CPU it was measured on that decide the runtime's
            kernels (:func:`automc.hardware.cpu.isa`: ``avx2``, ``avx512f``, ``vnni``; on
            ARM ``neon``, ``dotprod``, ``i8mm``). Empty (absent in a file): not recorded.
        cpu: the model of the CPU it was measured on (:func:`automc.hardware.cpu.cpu_model`,
            e.g. ``AuthenticAMD family 23 model 1``): CPUs with the same instruction sets
            run the same kernels at other speeds. Empty (absent in a file): not recorded.
    """

    framework: str
    version: str
    threads: int
    batch: int
    dtype: str
    provider: str = "eager"
    graph_optimization: str = "none"
    precisions: tuple[str, ...] = ("fp32",)
    channel_block: int = 0
    isa: tuple[str, ...] = ()
    cpu: str = ""

    @property
    def native_bits(self) -> tuple[int, ...]:
        """Sorted compute bits of :attr:`precisions` (``(8, 32)`` for int8 + fp32)."""
        return tuple(sorted({PRECISION_BITS[p] for p in self.precisions}))


@dataclass(frozen=True)
class MeasurementInfo:
    """How each latency was measured (warm-up runs, repeats, statistic, date)."""

    warmup: int
    repeats: int
    statistic: str
    date: str


@dataclass(frozen=True)
class Roofline:
    """Roofline model used for configurations the table does not cover.

    Attributes:
        peak_macs_per_s: precision (``fp32``, ``int8``, ...) -> attainable MACs per second.
        memory_bandwidth_bytes_per_s: attainable memory bandwidth.
        launch_overhead_ms: fixed cost of one layer call.
    """

    peak_macs_per_s: Mapping[str, float]
    memory_bandwidth_bytes_per_s: float
    launch_overhead_ms: float


@dataclass(frozen=True)
class EnergyInfo:
    """Which energy table prices this device, and its on-chip buffer size."""

    table: str
    onchip_buffer_bytes: int


@dataclass(frozen=True)
class LatencyEntry:
    """One measured layer configuration.

    Attributes:
        kind: ``conv2d``, ``dwconv2d``, ``grouped`` or ``linear``.
        in_size: input ``(H, W)``; ``(1, 1)`` for linear.
        in_channels: input channels (features for linear).
        out_channels: output channels (features for linear).
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``(ph, pw)``.
        groups: convolution groups (equal to the channels for depthwise).
        bits: compute precision the entry was measured at (32 = float).
        batch: batch size.
        median_ms: median latency of one call.
        spread_ms: inter-quartile range of the samples.
        count: number of samples behind the median.
        min_ms: fastest sample (required when the profile's statistic is ``min``).
    """

    kind: str
    in_size: tuple[int, int]
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    bits: int
    batch: int
    median_ms: float
    spread_ms: float
    count: int
    min_ms: float | None = None

    def value_ms(self, statistic: str) -> float:
        """The entry's latency under the profile's ``measurement.statistic``."""
        if statistic == "min":
            if self.min_ms is None:
                raise AutomcError(f"latency table entry {self.key} has no min_ms for statistic 'min'")
            return self.min_ms
        return self.median_ms

    @property
    def key(self) -> ConfigKey:
        """The hashable identity of the entry's layer configuration (what the table is keyed by)."""
        return (
            self.kind,
            int(self.in_size[0]),
            int(self.in_size[1]),
            int(self.in_channels),
            int(self.out_channels),
            int(self.kernel[0]),
            int(self.kernel[1]),
            int(self.stride[0]),
            int(self.stride[1]),
            int(self.padding[0]),
            int(self.padding[1]),
            int(self.groups),
            int(self.bits),
            int(self.batch),
        )

    @classmethod
    def from_key(
        cls, key: ConfigKey, *, median_ms: float, spread_ms: float, count: int, min_ms: float | None = None
    ) -> LatencyEntry:
        """The entry of the layer configuration ``key`` (the inverse of :attr:`key`) with its timings."""
        kind, ih, iw, n, m, kh, kw, sh, sw, ph, pw, groups, bits, batch = key
        return cls(
            kind=kind,
            in_size=(ih, iw),
            in_channels=n,
            out_channels=m,
            kernel=(kh, kw),
            stride=(sh, sw),
            padding=(ph, pw),
            groups=groups,
            bits=bits,
            batch=batch,
            median_ms=median_ms,
            spread_ms=spread_ms,
            count=count,
            min_ms=min_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "in_size": _compact(self.in_size),
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel": _compact(self.kernel),
            "stride": _compact(self.stride),
            "padding": _compact(self.padding),
            "groups": self.groups,
            "bits": self.bits,
            "batch": self.batch,
            "median_ms": _round_sig(self.median_ms),
            "spread_ms": _round_sig(self.spread_ms),
            "count": self.count,
            **({} if self.min_ms is None else {"min_ms": _round_sig(self.min_ms)}),
        }


@dataclass(frozen=True)
class NetworkFit:
    """Overhead fitted on one profiled network.

    ``latency = table_scale * table sum + network_overhead_ms + extra_stage_ms * factorised layers
    + transition_ms * precision boundaries + transition_ns_per_element * elements converted at them
    + int8_add_ns_per_element * elements added in int8 regions``
    (with the int8 and off-layout scales below on their parts of the table sum).

    The non-conv work (activations, adds, pooling, framework dispatch) of a network and how
    its layers run inside it rather than alone differ a lot between architectures (on the
    2-core CPU, mobilenetv2 spends ~35% of its time outside convs, resnet20 ~15%), so each
    profiled network gets its own two terms, fitted on its base and random variants.

    Attributes:
        model: the network's name (informational).
        fingerprint: ``automc.plan.layers_fingerprint`` of its layers (the lookup key).
        table_scale: factor applied to the sum of the network's table latencies.
        network_overhead_ms: fixed cost per forward pass. Negative where the table sum
            overprices the network's calls: each of its layers' entries was timed as a session
            of its own and carries one session call's overhead, which a layer inside a network
            does not pay (``automc.hardware.fitting.fit_network_mixed``).
        extra_stage_ms: cost of the second call of each low-rank-factorised layer inside
            the network (dispatch, its intermediate tensor), beyond both stages' table
            latencies. Negative where the table overprices that call: each entry of a
            runtime's table was timed as a session of its own and carries one session call's
            overhead, which a layer inside a network does not pay. Optional in the file (0
            when absent: profiles measured before it).
        int8_table_scale: factor applied to the table latencies of the layers priced from
            int8 entries, when it differs from ``table_scale`` (an int8 layer alone pays for
            quantizing its input and dequantizing its output, inside a chain of int8 layers
            it does not). ``None`` (absent in the file): ``table_scale``.
        transition_ms: cost of each int8/float precision boundary inside the network (the
            quantize or dequantize and layout reorder where an int8 layer meets a float
            region; ``automc.cost.latency.PrecisionRegions``). Optional in the file (0 when
            absent: profiles measured before it, and runtimes without int8 kernels).
        transition_ns_per_element: cost per tensor element converted at each such boundary
            (the quantize, dequantize and layout reorder scale with the tensor: a boundary
            on a 32x32 stage of resnet20 converts four times the elements of one on an 8x8
            stage). Optional in the file (0 when absent: profiles measured before it).
        generic_table_scale: factor applied to the table latencies of float conv stages off
            the runtime's blocked channel layout (``RuntimeInfo.channel_block``), when it
            differs from ``table_scale``: measured alone every layer pays its own layout
            reorders, inside a network only the generic ones do. ``None`` (absent in the
            file): ``table_scale``.
        int8_generic_table_scale: the same for int8 conv stages off that layout (ONNX
            Runtime's int8 kernels slow down there too: measured on mobilenetv2, int8 networks
            off the layout ran 14% slower than their on-layout table prices, those on it 9%
            faster). ``None`` (absent in the file): ``int8_table_scale``.
        int8_add_ns_per_element: cost per tensor element of each residual add inside a region
            that runs int8 (``automc.cost.latency.PrecisionRegions.int8_add_elements``): ONNX
            Runtime runs those adds as ``QLinearAdd`` kernels, where a float network's adds fuse
            into its convolutions, and no layer's table entry holds them. Optional in the file
            (0 when absent: profiles measured before it, and runtimes without int8 kernels).
    """

    model: str
    fingerprint: str
    table_scale: float
    network_overhead_ms: float
    extra_stage_ms: float = 0.0
    int8_table_scale: float | None = None
    transition_ms: float = 0.0
    generic_table_scale: float | None = None
    int8_generic_table_scale: float | None = None
    transition_ns_per_element: float = 0.0
    int8_add_ns_per_element: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "fingerprint": self.fingerprint,
            "table_scale": _round_sig(self.table_scale),
            "network_overhead_ms": _round_sig(self.network_overhead_ms),
            "extra_stage_ms": _round_sig(self.extra_stage_ms),
        }
        if self.int8_table_scale is not None:
            out["int8_table_scale"] = _round_sig(self.int8_table_scale)
        if self.transition_ms:
            out["transition_ms"] = _round_sig(self.transition_ms)
        if self.generic_table_scale is not None:
            out["generic_table_scale"] = _round_sig(self.generic_table_scale)
        if self.int8_generic_table_scale is not None:
            out["int8_generic_table_scale"] = _round_sig(self.int8_generic_table_scale)
        if self.transition_ns_per_element:
            out["transition_ns_per_element"] = _round_sig(self.transition_ns_per_element)
        if self.int8_add_ns_per_element:
            out["int8_add_ns_per_element"] = _round_sig(self.int8_add_ns_per_element)
        return out


@dataclass(frozen=True)
class LatencyTable:
    """Measured layer latencies plus the fitted network-level terms.

    A network's latency is predicted as ``network_overhead_ms`` + the sum over its layers
    of (``table_scale`` x table latency + ``layer_overhead_ms`` x calls +
    ``elementwise_ns_per_element`` x output elements), where a low-rank-factorised layer
    makes two calls and any other one; the last two carry the non-conv
    work (activations, adds, pooling) that the standalone layer measurements do not see,
    ``table_scale`` how much faster or slower a layer runs inside a network than alone.

    Attributes:
        network_overhead_ms: fixed cost per forward pass (fitted).
        layer_overhead_ms: extra cost per conv/linear call inside a network (fitted).
        elementwise_ns_per_element: cost per output element of each layer (fitted).
        table_scale: factor applied to every table latency (fitted; 1 = as measured).
        grid: the channel grid the table was measured on: ``channel_fractions`` and
            ``rank_fractions`` (fractions of each layer's channels / maximal rank).
        entries: the measured configurations.
        grid_block: the channel block the conv grids were moved onto
            (``automc.cost.latency.block_layout_grid``; 0 = the fractions' counts as they are,
            as in profiles measured before the grid followed the layout).
    """

    network_overhead_ms: float
    grid: Mapping[str, tuple[float, ...]]
    entries: tuple[LatencyEntry, ...]
    layer_overhead_ms: float = 0.0
    elementwise_ns_per_element: float = 0.0
    table_scale: float = 1.0
    networks: tuple[NetworkFit, ...] = ()
    grid_block: int = 0

    def network(self, fingerprint: str) -> NetworkFit | None:
        """The per-network fit for a layer fingerprint, if that network was profiled."""
        return next((n for n in self.networks if n.fingerprint == fingerprint), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "networks": [n.to_dict() for n in self.networks],
            "network_overhead_ms": _round_sig(self.network_overhead_ms),
            "layer_overhead_ms": _round_sig(self.layer_overhead_ms),
            "elementwise_ns_per_element": _round_sig(self.elementwise_ns_per_element),
            "table_scale": _round_sig(self.table_scale),
            "grid": {k: list(v) for k, v in self.grid.items()},
            **({"grid_block": self.grid_block} if self.grid_block else {}),
            "table": [e.to_dict() for e in self.entries],
        }


@dataclass(frozen=True)
class ValidationInfo:
    """How well the profile predicted compressed networks it was not built from.

    Attributes:
        models: model names the validation networks were derived from.
        n: number of validation networks (all models together).
        within_10pct: fraction of networks predicted within +-10% of the measurement.
        rmspe: root mean squared percentage error, as a fraction (0.05 = 5%).
        spearman: rank correlation of predicted vs measured latency; the *worst* model's
            value when several models were validated (rankings across models are trivial).
        flops_spearman: the same for MACs vs measured latency (the FLOPs-only baseline).
        per_model: model name -> the same five figures for that model alone.
    """

    models: tuple[str, ...]
    n: int
    within_10pct: float
    rmspe: float
    spearman: float
    flops_spearman: float
    per_model: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "n": self.n,
            "within_10pct": _round_sig(self.within_10pct),
            "rmspe": _round_sig(self.rmspe),
            "spearman": _round_sig(self.spearman),
            "flops_spearman": _round_sig(self.flops_spearman),
            "per_model": {
                m: {k: (int(v) if k == "n" else _round_sig(v)) for k, v in d.items()}
                for m, d in self.per_model.items()
            },
        }


@dataclass(frozen=True)
class HwProfile:
    """A validated device profile (see the module docstring).

    Attributes:
        device: which machine.
        runtime: software settings.
        measurement: measurement protocol.
        roofline: fallback model.
        energy: energy table reference.
        latency: the measured table and fitted overheads.
        validation: end-to-end validation figures, ``None`` if never validated.
        source: the file it was read from (empty when built in memory).
    """

    device: DeviceInfo
    runtime: RuntimeInfo
    measurement: MeasurementInfo
    roofline: Roofline
    energy: EnergyInfo
    latency: LatencyTable
    validation: ValidationInfo | None = None
    source: str = ""

    @property
    def name(self) -> str:
        return self.device.id

    @property
    def has_latency(self) -> bool:
        return bool(self.latency.entries)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": HW_PROFILE_SCHEMA,
            "version": 1,
            "device": {
                "id": self.device.id,
                "kind": self.device.kind,
                "description": self.device.description,
            },
            "runtime": {
                "framework": self.runtime.framework,
                "version": self.runtime.version,
                "threads": self.runtime.threads,
                "batch": self.runtime.batch,
                "dtype": self.runtime.dtype,
                "provider": self.runtime.provider,
                "graph_optimization": self.runtime.graph_optimization,
                "precisions": list(self.runtime.precisions),
                **({"channel_block": self.runtime.channel_block} if self.runtime.channel_block else {}),
                **({"isa": list(self.runtime.isa)} if self.runtime.isa else {}),
                **({"cpu": self.runtime.cpu} if self.runtime.cpu else {}),
            },
            "measurement": {
                "warmup": self.measurement.warmup,
                "repeats": self.measurement.repeats,
                "statistic": self.measurement.statistic,
                "date": self.measurement.date,
            },
            "roofline": {
                "peak_macs_per_s": {k: _round_sig(v) for k, v in self.roofline.peak_macs_per_s.items()},
                "memory_bandwidth_bytes_per_s": _round_sig(self.roofline.memory_bandwidth_bytes_per_s),
                "launch_overhead_ms": _round_sig(self.roofline.launch_overhead_ms),
            },
            "energy": {"table": self.energy.table, "onchip_buffer_bytes": self.energy.onchip_buffer_bytes},
        }
        if self.validation is not None:
            out["validation"] = self.validation.to_dict()
        out["latency"] = self.latency.to_dict()
        return out


def _compact(pair: tuple[int, int]) -> int | list[int]:
    return int(pair[0]) if pair[0] == pair[1] else [int(pair[0]), int(pair[1])]


def _round_sig(v: float, digits: int = 5) -> float:
    if v == 0 or not math.isfinite(v):
        return float(v)
    return float(f"{v:.{digits}g}")


def _pair(
    p: Problems, d: Mapping[str, Any], key: str, field_name: str, *, minimum: int
) -> tuple[int, int] | None:
    name = f"{field_name}.{key}"
    v = d[key]
    vals = [v, v] if not isinstance(v, list) else v
    if len(vals) != 2 or any(isinstance(x, bool) or not isinstance(x, int) or x < minimum for x in vals):
        p.add(name, f"must be an integer >= {minimum} or a list of two, got {v!r}")
        return None
    return int(vals[0]), int(vals[1])


def _choice(
    p: Problems, d: Mapping[str, Any], key: str, field_name: str, allowed: Sequence[str]
) -> str | None:
    v = p.string(d, key, field_name)
    if v is not None and v not in allowed:
        p.add(f"{field_name}.{key}", f"must be one of {', '.join(allowed)}, got {v!r}")
        return None
    return v


def _section(
    p: Problems, data: Mapping[str, Any], key: str, required: set[str], optional: set[str] | None = None
) -> Mapping[str, Any] | None:
    d = p.mapping(data.get(key), key)
    if d is not None:
        p.keys(d, key, required=required, optional=optional or set())
    return d


def _entry(p: Problems, raw: Any, where: str) -> LatencyEntry | None:
    d = p.mapping(raw, where)
    if d is None:
        return None
    n0 = len(p.items)
    p.keys(d, where, required=_ENTRY_REQUIRED, optional=_ENTRY_OPTIONAL)
    if len(p.items) > n0:
        return None
    kind = _choice(p, d, "kind", where, LAYER_KINDS)
    in_size = _pair(p, d, "in_size", where, minimum=1)
    kernel = _pair(p, d, "kernel", where, minimum=1)
    stride = _pair(p, d, "stride", where, minimum=1)
    padding = _pair(p, d, "padding", where, minimum=0) if "padding" in d else None
    ints = {
        k: p.number(d, k, where, integer=True, positive=True)
        for k in ("in_channels", "out_channels", "groups", "batch", "count")
    }
    bits = p.number(d, "bits", where, integer=True, positive=True)
    if bits is not None and bits not in ALLOWED_BITS:
        p.add(f"{where}.bits", f"must be one of {sorted(ALLOWED_BITS)}, got {bits!r}")
        bits = None
    median = p.number(d, "median_ms", where, positive=True)
    spread = p.number(d, "spread_ms", where)
    fastest = p.number(d, "min_ms", where, positive=True, required=False)
    if len(p.items) > n0 or kind is None or in_size is None or kernel is None or stride is None:
        return None
    if padding is None:
        padding = (kernel[0] // 2, kernel[1] // 2)
    return LatencyEntry(
        kind=kind,
        in_size=in_size,
        in_channels=int(ints["in_channels"] or 0),
        out_channels=int(ints["out_channels"] or 0),
        kernel=kernel,
        stride=stride,
        padding=padding,
        groups=int(ints["groups"] or 0),
        bits=int(bits or 0),
        batch=int(ints["batch"] or 0),
        median_ms=float(median or 0.0),
        spread_ms=float(spread or 0.0),
        count=int(ints["count"] or 0),
        min_ms=None if fastest is None else float(fastest),
    )


def _fractions(p: Problems, d: Mapping[str, Any], key: str, field_name: str) -> tuple[float, ...]:
    v = d.get(key)
    name = f"{field_name}.{key}"
    if not isinstance(v, list) or not v:
        p.add(name, f"must be a non-empty list of fractions in (0, 1], got {v!r}")
        return ()
    bad = [x for x in v if isinstance(x, bool) or not isinstance(x, int | float) or not (0 < x <= 1)]
    if bad:
        p.add(name, f"must hold fractions in (0, 1], got {bad[0]!r}")
        return ()
    return tuple(float(x) for x in v)


def _networks(p: Problems, raw: Any) -> tuple[NetworkFit, ...]:
    if not isinstance(raw, list):
        p.add("latency.networks", f"must be a list, got {type(raw).__name__}")
        return ()
    out = []
    for i, item in enumerate(raw):
        field = f"latency.networks[{i}]"
        d = p.mapping(item, field)
        if d is None:
            continue
        p.keys(
            d,
            field,
            required=_NETWORK_KEYS,
            optional={
                "extra_stage_ms",
                "int8_table_scale",
                "transition_ms",
                "generic_table_scale",
                "int8_generic_table_scale",
                "transition_ns_per_element",
                "int8_add_ns_per_element",
            },
        )
        model = p.string(d, "model", field)
        fp = p.string(d, "fingerprint", field)
        scale = p.number(d, "table_scale", field, positive=True)
        oh = p.number(d, "network_overhead_ms", field, minimum=None)
        stage = p.number(d, "extra_stage_ms", field, minimum=None) if "extra_stage_ms" in d else 0.0
        int8_scale = p.number(d, "int8_table_scale", field, positive=True, required=False)
        transition = p.number(d, "transition_ms", field) if "transition_ms" in d else 0.0
        generic = p.number(d, "generic_table_scale", field, positive=True, required=False)
        int8_generic = p.number(d, "int8_generic_table_scale", field, positive=True, required=False)
        per_element = p.number(d, "transition_ns_per_element", field, required=False) or 0.0
        per_added = p.number(d, "int8_add_ns_per_element", field, required=False) or 0.0
        if (
            model
            and fp
            and scale is not None
            and oh is not None
            and stage is not None
            and transition is not None
        ):
            out.append(
                NetworkFit(
                    model=model,
                    fingerprint=fp,
                    table_scale=float(scale),
                    network_overhead_ms=float(oh),
                    extra_stage_ms=float(stage),
                    int8_table_scale=None if int8_scale is None else float(int8_scale),
                    transition_ms=float(transition),
                    generic_table_scale=None if generic is None else float(generic),
                    int8_generic_table_scale=None if int8_generic is None else float(int8_generic),
                    transition_ns_per_element=float(per_element),
                    int8_add_ns_per_element=float(per_added),
                )
            )
    return tuple(out)


def parse_hw_profile(data: Any, source: str) -> HwProfile:
    """Validate an already-parsed profile mapping; raise one ConfigError listing all problems."""
    p = check_header(data, source, schema=HW_PROFILE_SCHEMA, versions=set(HW_PROFILE_VERSIONS))
    p.keys(data, "", required=_TOP_REQUIRED, optional=_TOP_OPTIONAL)

    dev = _section(p, data, "device", _DEVICE_KEYS)
    device = None
    if dev is not None:
        did, dkind = p.string(dev, "id", "device"), _choice(p, dev, "kind", "device", DEVICE_KINDS)
        ddesc = dev.get("description")
        if not isinstance(ddesc, str):
            p.add("device.description", f"must be a string, got {ddesc!r}")
        if did and dkind and isinstance(ddesc, str):
            device = DeviceInfo(id=did, kind=dkind, description=ddesc)

    rt = _section(p, data, "runtime", _RUNTIME_KEYS, _RUNTIME_OPTIONAL)
    runtime = None
    if rt is not None:
        fw, ver, dtype = (p.string(rt, k, "runtime") for k in ("framework", "version", "dtype"))
        threads = p.number(rt, "threads", "runtime", integer=True, positive=True)
        batch = p.number(rt, "batch", "runtime", integer=True, positive=True)
        provider = p.string(rt, "provider", "runtime") if "provider" in rt else "eager"
        level = p.string(rt, "graph_optimization", "runtime") if "graph_optimization" in rt else "none"
        precisions = _precisions(p, rt) if "precisions" in rt else None
        block = p.number(rt, "channel_block", "runtime", integer=True) if "channel_block" in rt else 0
        isa = rt.get("isa", [])
        if not isinstance(isa, list) or not all(isinstance(x, str) and x for x in isa):
            p.add("runtime.isa", f"must be a list of instruction-set names, got {isa!r}")
            isa = []
        cpu = p.string(rt, "cpu", "runtime") if "cpu" in rt else ""
        if (
            fw
            and ver
            and dtype
            and threads is not None
            and batch is not None
            and provider
            and level
            and block is not None
            and cpu is not None
        ):
            runtime = RuntimeInfo(
                framework=fw,
                version=ver,
                threads=int(threads),
                batch=int(batch),
                dtype=dtype,
                provider=provider,
                graph_optimization=level,
                precisions=precisions or ("fp32",),
                channel_block=int(block),
                isa=tuple(isa),
                cpu=cpu,
            )

    ms = _section(p, data, "measurement", _MEASUREMENT_KEYS)
    measurement = None
    if ms is not None:
        warmup = p.number(ms, "warmup", "measurement", integer=True)
        repeats = p.number(ms, "repeats", "measurement", integer=True, positive=True)
        stat = _choice(p, ms, "statistic", "measurement", STATISTICS)
        date = ms.get("date")
        if isinstance(date, _dt.date):
            date = date.isoformat()
        if not isinstance(date, str) or not date:
            p.add("measurement.date", f"must be a date string, got {date!r}")
            date = None
        if warmup is not None and repeats is not None and stat and date:
            measurement = MeasurementInfo(warmup=int(warmup), repeats=int(repeats), statistic=stat, date=date)

    rf = _section(p, data, "roofline", _ROOFLINE_KEYS)
    roofline = None
    if rf is not None:
        peaks_raw = p.mapping(rf.get("peak_macs_per_s"), "roofline.peak_macs_per_s")
        peaks: dict[str, float] = {}
        if peaks_raw is not None:
            for k in peaks_raw:
                if k not in PRECISIONS:
                    p.add(
                        f"roofline.peak_macs_per_s.{k}",
                        f"unknown precision (allowed: {', '.join(PRECISIONS)})",
                    )
                    continue
                v = p.number(peaks_raw, k, "roofline.peak_macs_per_s", positive=True)
                if v is not None:
                    peaks[k] = float(v)
            if "fp32" not in peaks_raw:
                p.add("roofline.peak_macs_per_s.fp32", "missing")
        bw = p.number(rf, "memory_bandwidth_bytes_per_s", "roofline", positive=True)
        launch = p.number(rf, "launch_overhead_ms", "roofline")
        if "fp32" in peaks and bw is not None and launch is not None:
            roofline = Roofline(
                peak_macs_per_s=MappingProxyType(peaks),
                memory_bandwidth_bytes_per_s=float(bw),
                launch_overhead_ms=float(launch),
            )

    en = _section(p, data, "energy", _ENERGY_KEYS)
    energy = None
    if en is not None:
        table = p.string(en, "table", "energy")
        buf = p.number(en, "onchip_buffer_bytes", "energy", integer=True, positive=True)
        if table and buf is not None:
            energy = EnergyInfo(table=table, onchip_buffer_bytes=int(buf))

    lt = _section(p, data, "latency", _LATENCY_REQUIRED, _LATENCY_OPTIONAL)
    latency = None
    if lt is not None:
        overhead = p.number(lt, "network_overhead_ms", "latency")
        layer_oh = p.number(lt, "layer_overhead_ms", "latency", required=False)
        elem = p.number(lt, "elementwise_ns_per_element", "latency", required=False)
        scale = p.number(lt, "table_scale", "latency", required=False, positive=True)
        grid_block = p.number(lt, "grid_block", "latency", integer=True, required=False)
        networks = _networks(p, lt.get("networks", []))
        grid_raw = p.mapping(lt.get("grid"), "latency.grid")
        grid: dict[str, tuple[float, ...]] = {}
        if grid_raw is not None:
            p.keys(grid_raw, "latency.grid", required=_GRID_KEYS)
            for k in sorted(_GRID_KEYS & set(grid_raw)):
                grid[k] = _fractions(p, grid_raw, k, "latency.grid")
        rows = lt.get("table")
        entries: list[LatencyEntry] = []
        if not isinstance(rows, list):
            p.add("latency.table", f"must be a list of entries, got {type(rows).__name__}")
        else:
            seen: dict[ConfigKey, int] = {}
            for i, raw in enumerate(rows):
                e = _entry(p, raw, f"latency.table[{i}]")
                if e is None:
                    continue
                if e.key in seen:
                    p.add(f"latency.table[{i}]", f"duplicate of latency.table[{seen[e.key]}]")
                    continue
                seen[e.key] = i
                if measurement is not None and measurement.statistic == "min" and e.min_ms is None:
                    p.add(f"latency.table[{i}].min_ms", "required when measurement.statistic is 'min'")
                    continue
                entries.append(e)
        if overhead is not None and grid_raw is not None:
            latency = LatencyTable(
                network_overhead_ms=float(overhead),
                grid=MappingProxyType(grid),
                entries=tuple(entries),
                layer_overhead_ms=float(layer_oh or 0.0),
                elementwise_ns_per_element=float(elem or 0.0),
                table_scale=float(scale if scale is not None else 1.0),
                networks=networks,
                grid_block=int(grid_block or 0),
            )

    if runtime is not None and latency is not None:
        runtime = _with_table_precisions(p, runtime, latency, explicit=rt is not None and "precisions" in rt)

    validation = None
    if "validation" in data:
        va = _section(p, data, "validation", _VALIDATION_REQUIRED, _VALIDATION_OPTIONAL)
        if va is not None:
            validation = _validation(p, va)

    p.raise_if_any()
    assert (
        device and runtime and measurement and roofline and energy and latency
    )  # guaranteed by raise_if_any
    return HwProfile(
        device=device,
        runtime=runtime,
        measurement=measurement,
        roofline=roofline,
        energy=energy,
        latency=latency,
        validation=validation,
        source=source,
    )


def _precisions(p: Problems, rt: Mapping[str, Any]) -> tuple[str, ...] | None:
    v = rt.get("precisions")
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        p.add("runtime.precisions", f"must be a non-empty list of precision names, got {v!r}")
        return None
    bad = [x for x in v if x not in PRECISIONS]
    if bad:
        p.add("runtime.precisions", f"unknown precision {bad[0]!r} (allowed: {', '.join(PRECISIONS)})")
        return None
    if len(set(v)) != len(v):
        p.add("runtime.precisions", f"lists a precision twice: {v!r}")
        return None
    return tuple(v)


def _with_table_precisions(
    p: Problems, runtime: RuntimeInfo, latency: LatencyTable, *, explicit: bool
) -> RuntimeInfo:
    """The runtime with its precisions checked against the table (or taken from it when absent)."""
    table_bits = sorted({e.bits for e in latency.entries}, reverse=True)
    if not explicit:
        by_bits = {b: n for n, b in reversed(list(PRECISION_BITS.items()))}
        stray = [b for b in table_bits if b not in by_bits]
        if stray:
            p.add("latency.table", f"holds {stray[0]}-bit entries, which match no precision")
        names = tuple(by_bits[b] for b in table_bits if b in by_bits)
        return replace(runtime, precisions=names or ("fp32",))
    native = set(runtime.native_bits)
    stray = [b for b in table_bits if b not in native]
    if stray:
        p.add(
            "latency.table",
            f"holds {stray[0]}-bit entries but runtime.precisions {list(runtime.precisions)} has no such precision",
        )
    return runtime


def _metrics(p: Problems, d: Mapping[str, Any], where: str) -> dict[str, float] | None:
    n0 = len(p.items)
    out: dict[str, float] = {}
    n = p.number(d, "n", where, integer=True)
    for k in ("within_10pct", "rmspe"):
        v = p.number(d, k, where)
        if v is not None:
            out[k] = float(v)
    for k in ("spearman", "flops_spearman"):
        v = p.number(d, k, where, minimum=-1.0)
        if v is not None:
            out[k] = float(v)
    if "within_10pct" in out and out["within_10pct"] > 1:
        p.add(f"{where}.within_10pct", f"must be a fraction in [0, 1], got {out['within_10pct']!r}")
    if len(p.items) > n0 or n is None:
        return None
    out["n"] = int(n)
    return out


def _validation(p: Problems, va: Mapping[str, Any]) -> ValidationInfo | None:
    models = va.get("models")
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        p.add("validation.models", f"must be a list of model names, got {models!r}")
        models = None
    top = _metrics(p, va, "validation")
    per: dict[str, Mapping[str, float]] = {}
    per_raw = p.mapping(va.get("per_model", {}), "validation.per_model")
    if per_raw is not None:
        for name, raw in per_raw.items():
            where = f"validation.per_model.{name}"
            d = p.mapping(raw, where)
            if d is None:
                continue
            p.keys(d, where, required=_METRIC_KEYS)
            m = _metrics(p, d, where)
            if m is not None:
                per[str(name)] = MappingProxyType(m)
    if models is None or top is None:
        return None
    return ValidationInfo(
        models=tuple(models),
        n=int(top["n"]),
        within_10pct=top["within_10pct"],
        rmspe=top["rmspe"],
        spearman=top["spearman"],
        flops_spearman=top["flops_spearman"],
        per_model=MappingProxyType(per),
    )


def load_hw_profile(path: str | Path) -> HwProfile:
    """Read and validate a device profile file; raise ``ConfigError`` listing every problem."""
    return parse_hw_profile(read_yaml(path), str(path))


def dump_hw_profile(profile: HwProfile, path: str | Path) -> Path:
    """Write a profile as YAML (one table entry per line); return the path written."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(profile.to_dict(), sort_keys=False, default_flow_style=None, width=400)
    out.write_text(text, encoding="utf-8")
    return out


AUTO_PROFILE = "auto"
"""The profile name that resolves to the shipped CPU profile for this CPU (:func:`auto_profile`)."""

SHIPPED_CPU_PROFILES = (
    "cpu-x86-2core-ort",
    "cpu-x86-2core-avx2-ort",
    "cpu-x86-2core-zen1-ort",
    "cpu-x86-2core-zen5-ort",
)
"""The shipped ONNX Runtime CPU profiles :data:`AUTO_PROFILE` chooses from; the first where none matches."""


@functools.cache
def _auto() -> tuple[str, HwProfile]:
    """The name and the loaded profile :func:`auto_profile` chooses (each file parsed once)."""
    from automc.hardware.cpu import cpu_model, isa
    from automc.resources import find_profile

    here, model = set(isa()), cpu_model()
    best: tuple[int, str, HwProfile] | None = None
    for name in SHIPPED_CPU_PROFILES:
        profile = load_hw_profile(find_profile(name, schema=HW_PROFILE_SCHEMA))
        rank = 0
        if set(profile.runtime.isa) == here:
            rank = 3 if model and profile.runtime.cpu == model else 1 if profile.runtime.cpu else 2
        if rank == 3:
            return name, profile
        if best is None or rank > best[0]:
            best = (rank, name, profile)
    assert best is not None
    return best[1], best[2]


def auto_profile() -> str:
    """The name of the shipped ONNX Runtime CPU profile measured on this CPU: its model
    (:func:`automc.hardware.cpu.cpu_model`) and instruction sets (:func:`automc.hardware.cpu.isa`)
    where one matches both, else one with the same instruction sets that records no model,
    else one with them measured on another model, else the first of
    :data:`SHIPPED_CPU_PROFILES` (a search with a latency budget then says so).
    ``cpu-x86-2core-ort``: AVX-512 with VNNI; ``cpu-x86-2core-avx2-ort``: AVX2;
    ``cpu-x86-2core-zen1-ort``: AVX2 on AMD family 23 model 1; ``cpu-x86-2core-zen5-ort``:
    AVX-512 with VNNI on AMD family 26 model 2."""
    return _auto()[0]


def profile_name(name_or_path: str) -> str:
    """``name_or_path`` as given, ``auto`` as the name it resolves to here (:func:`auto_profile`);
    benchmarks record that name."""
    return auto_profile() if name_or_path == AUTO_PROFILE else name_or_path


def resolve_profile(name_or_path: str | Path) -> HwProfile:
    """Load a profile given a path or a name (``cpu-x86-2core-ort`` -> ``hw_profiles/cpu-x86-2core-ort.yaml``).

    A name is looked up in ``./hw_profiles`` first, then among the profiles shipped with
    automc (``automc.resources.find_profile``); ``auto`` is the shipped CPU profile for this
    CPU (:func:`auto_profile`). An unknown name raises ``AutomcError`` listing the available
    profiles.
    """
    from automc.resources import find_profile

    if name_or_path == AUTO_PROFILE:
        return _auto()[1]
    return load_hw_profile(find_profile(name_or_path, schema=HW_PROFILE_SCHEMA, what="device profile"))
