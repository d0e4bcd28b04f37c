"""Latency of a compressed network from a measured device profile (no torch, no tracing).

A candidate's latency is the sum of its layers' latencies looked up in the profile's
table plus a fitted per-network overhead. For a network the profile was measured on
(matched by ``layers_fingerprint``; see ``automc.schema.hw_profile.NetworkFit``)::

    total_ms = network_overhead_ms[net] + table_scale[net] * sum over layers table_ms
             + extra_stage_ms[net] * (number of low-rank-factorised layers)

             + transition_ms[net] * (number of int8/float precision boundaries)
             + transition_ns_per_element[net] * (tensor elements converted at them)
             + int8_add_ns_per_element[net] * (tensor elements added in int8 regions)

(with ``int8_table_scale[net]`` instead of ``table_scale[net]`` for the layers priced from
int8 entries, and ``generic_table_scale[net]`` / ``int8_generic_table_scale[net]`` for the
stages off the runtime's blocked channel layout, when the fit has them). A precision
boundary is an int8 layer next to a float region of the network's tensors
(:class:`PrecisionRegions`): the runtime quantizes the layer's input there, or dequantizes
its output, and reorders the tensor's layout, at a cost that grows with the tensor. Where a
region runs int8, its residual adds run as int8 kernels of their own
(:meth:`PrecisionRegions.int8_add_elements`).

For any other network the global fit is used and the estimate is flagged under
``"(network)"`` (see ``automc.schema.hw_profile.LatencyTable``)::

    total_ms = network_overhead_ms
             + sum over layers (table_scale * table_ms + layer_overhead_ms * calls
                                + elementwise_ns_per_element * out_elements)

where ``calls`` is 2 for a low-rank-factorised layer (two convs / linears) and 1 otherwise.

Each layer maps to one table configuration, or two for a low-rank factorisation (a
``kh x kw`` conv ``n -> r`` with the layer's stride/padding, then a ``1 x 1`` conv ``r -> m``
at the output resolution; a linear becomes ``n -> r`` then ``r -> m``). Pruned channel
counts follow ``automc.plan.kept_channels`` and ``in_segments``, exactly as
``automc.cost.flops`` and ``compress.apply`` do.

The table is measured on a grid of channel counts per layer (``grid.channel_fractions``
of each layer's channels, ``grid.rank_fractions`` of its maximal rank; see
:func:`channel_grid`); channel counts in between are interpolated bilinearly in (input,
output) channels between the four surrounding grid points (linearly in channels for
depthwise convs). Bilinear interpolation is exact for any latency of the form
``a + b*n + c*m + d*n*m``, which covers MAC-proportional cost. On a runtime with a blocked
channel layout the conv grids are moved onto it (:func:`block_layout_grid`), so the table
holds the blocked kernels (but a depthwise layer's smallest count below a block) and a conv
off the layout is priced from them with the network's fitted generic-kernel scale (one for
float stages, one for int8 stages: both slow down off the layout).

Caveats, stated plainly:
    * A configuration outside the table (channel count outside the grid range, a layer
      shape never profiled) is priced by the roofline (``max(compute, memory) + launch
      overhead``) and flagged in ``flags``; such estimates are much rougher.
    * Bits: a layer is priced at the smallest precision the profile's runtime executes
      (``runtime.precisions``) with at least ``max(w_bits, a_bits)`` bits (the largest one
      if none has): on ONNX Runtime CPU (``fp32``, ``int8``) a layer at <= 8 bits is priced
      from the int8 table. Bits the runtime does not execute (4-bit on ONNX Runtime, any
      non-32 bits on torch eager, where fake-quantized layers run at float speed) are
      priced at that next precision, and the estimate says so in ``simulated`` (the plan's
      size and energy see the bits, its latency does not).
    * Unstructured sparsity does not change latency (dense kernels).
    * Low rank on depthwise/grouped convs and unknown layer kinds go to ``unsupported``.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from automc.plan import (
    ALLOWED_BITS,
    IDENTITY,
    LAYER_KINDS,
    NOT_PRUNABLE,
    CompressionPlan,
    LayerSpec,
    kept_channels,
    layers_fingerprint,
)
from automc.schema.hw_profile import ConfigKey, HwProfile, NetworkFit

DEFAULT_CHANNEL_FRACTIONS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
NETWORK_FLAG_KEY = "(network)"
FLAG_NOT_PROFILED = (
    "latency: network not in the profile, global overhead fit (profile it for a tighter estimate)"
)
FLAG_ROOFLINE = "latency: outside the profile table, roofline estimate"
FLAG_NO_SHAPE = "latency: layer shape not in the profile, roofline estimate"
PRECISION_FLAG_KEY = "(precision)"
SIMULATED_NOTE = "simulated: size/energy only on this runtime"
"""What a plan with bits its runtime does not execute is marked with (after ``sub-N-bit``)."""

#: (kind, in_h, in_w, kh, kw, sh, sw, ph, pw, batch)
_Shape = tuple[str, int, int, int, int, int, int, int, int, int]


@dataclass(frozen=True)
class LatencyEstimate:
    """Predicted latency of one candidate.

    Attributes:
        total_ms: predicted latency of one forward pass at the profile's batch size.
        per_layer_ms: layer name -> its share (table + per-layer terms).
        flags: layer name -> note when the layer left the table (roofline fallback).
        unsupported: layer name -> reason it could not be priced; a non-empty mapping
            means ``total_ms`` is a lower bound.
        simulated: layer name -> the bits it was priced at, for each layer whose bits the
            profile's runtime does not execute (priced at the next precision it does).
        boundaries: int8/float precision boundaries of the network
            (:meth:`PrecisionRegions.boundaries`; 0 on a runtime without int8 kernels); their
            price (the network fit's ``transition_ms`` each and ``transition_ns_per_element``
            per element converted) is in ``total_ms``, in no layer's share.
        boundary_elements: the tensor elements converted at those boundaries
            (:meth:`PrecisionRegions.boundary_elements`, at the profile's batch size).
        int8_add_elements: the tensor elements added in the int8 regions' residual adds
            (:meth:`PrecisionRegions.int8_add_elements`, at the profile's batch size), priced at
            the network fit's ``int8_add_ns_per_element`` in ``total_ms``, in no layer's share.
        off_layout: layers with a stage off the runtime's blocked channel layout
            (:func:`off_block_layout`), priced at the network fit's ``generic_table_scale``
            (float) or ``int8_generic_table_scale`` (int8).
        off_layout_ms: the part of ``total_ms`` the float stages off the layout make up.
        int8_off_layout_ms: the part of ``total_ms`` the int8 stages off the layout make up.
    """

    total_ms: float
    per_layer_ms: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    flags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    unsupported: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    simulated: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    boundaries: int = 0
    boundary_elements: int = 0
    int8_add_elements: int = 0
    off_layout: int = 0
    off_layout_ms: float = 0.0
    int8_off_layout_ms: float = 0.0

    @property
    def simulated_note(self) -> str:
        """``sub-8-bit simulated: size/energy only on this runtime`` (the precision the
        simulated layers were priced at), or ``""`` when every layer runs at its own bits."""
        if not self.simulated:
            return ""
        return f"sub-{min(self.simulated.values())}-bit {SIMULATED_NOTE}"


def channel_grid(channels: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """Sorted distinct channel counts ``kept_channels(channels, f)`` for ``f`` in ``fractions``.

    The profiler measures exactly these counts and the predictor interpolates between
    them, so both must call this function.
    """
    return tuple(sorted({kept_channels(channels, f) for f in fractions}))


def input_prunable(spec: LayerSpec) -> bool:
    """Whether any of the layer's input features come from a prunable group."""
    return any(g != NOT_PRUNABLE for g, _, _ in spec.in_segments)


@dataclass(frozen=True)
class StageAxes:
    """Where one stage (a layer or a low-rank factor) sits in the table.

    Attributes:
        kind: table kind (``conv2d``, ``dwconv2d``, ``grouped``, ``linear``).
        in_size: input ``(H, W)``.
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``(ph, pw)``.
        groups: groups (0 for depthwise: equal to the channels).
        in_grid: grid of input channel counts.
        out_grid: grid of output channel counts (ignored for depthwise).
    """

    kind: str
    in_size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    in_grid: tuple[int, ...]
    out_grid: tuple[int, ...]

    def key(self, n: int, m: int, bits: int, batch: int) -> ConfigKey:
        groups = n if self.kind == "dwconv2d" else self.groups
        return (
            self.kind,
            self.in_size[0],
            self.in_size[1],
            n,
            m,
            self.kernel[0],
            self.kernel[1],
            self.stride[0],
            self.stride[1],
            self.padding[0],
            self.padding[1],
            groups,
            bits,
            batch,
        )

    def grid_points(self) -> list[tuple[int, int]]:
        """The (in, out) channel pairs the profiler measures for this stage."""
        if self.kind == "dwconv2d":
            return [(c, c) for c in self.in_grid]
        return [(n, m) for n in self.in_grid for m in self.out_grid]


def _grid_for(
    channels: int,
    fractions: Sequence[float],
    prunable: bool,
    multiple: int = 1,
    block: int = 0,
    *,
    depthwise: bool = False,
) -> tuple[int, ...]:
    if not prunable:
        return (channels,)
    grid = channel_grid(channels, fractions)
    if multiple > 1:
        return tuple(sorted({max(multiple, (c // multiple) * multiple) for c in grid}))
    return block_layout_grid(grid, channels, block, depthwise=depthwise)


def layer_stages(
    spec: LayerSpec,
    channel_fractions: Sequence[float],
    rank_fractions: Sequence[float],
    block: int = 0,
) -> tuple[StageAxes, tuple[StageAxes, StageAxes] | None]:
    """The table axes of a layer: its plain stage and, when factorisable, its two low-rank stages.

    ``block > 1`` moves a conv's grid counts onto the runtime's blocked channel layout
    (:func:`block_layout_grid`), as a profile with ``LatencyTable.grid_block`` was measured.
    """
    multiple = spec.groups if spec.kind == "grouped" else 1
    block = block if spec.kind in ("conv2d", "dwconv2d") else 0
    depthwise = spec.kind == "dwconv2d"
    in_grid = _grid_for(spec.in_channels, channel_fractions, input_prunable(spec), multiple, block)
    out_grid = _grid_for(
        spec.out_channels, channel_fractions, spec.prunable, multiple, block, depthwise=depthwise
    )
    groups = 0 if spec.kind == "dwconv2d" else spec.groups
    if spec.kind == "dwconv2d":
        in_grid = out_grid
    plain = StageAxes(
        kind=spec.kind,
        in_size=spec.in_hw,
        kernel=spec.kernel,
        stride=spec.stride,
        padding=spec.padding,
        groups=groups,
        in_grid=in_grid,
        out_grid=out_grid,
    )
    if spec.kind not in ("conv2d", "linear"):
        return plain, None
    rank_grid = block_layout_grid(
        channel_grid(spec.max_rank, rank_fractions), spec.max_rank, block, depthwise=False
    )
    first = replace(plain, groups=1, out_grid=rank_grid)
    second = StageAxes(
        kind=spec.kind,
        in_size=spec.out_hw,
        kernel=(1, 1),
        stride=(1, 1),
        padding=(0, 0),
        groups=1,
        in_grid=rank_grid,
        out_grid=out_grid,
    )
    return plain, (first, second)


@dataclass(frozen=True)
class PrecisionRegions:
    """Where a network's int8 layers meet float tensors.

    A region is the set of tensors between conv/linear layers that one dependency group
    shares (the residual stream of a stage, the tensor between two layers); a depthwise conv
    starts a new region of its group. The network's input, the output of an unprunable layer
    (the classifier) and a region no layer reads (it feeds the network's output) stay float. A region runs int8 when
    every layer reading or writing it does (as the ONNX Runtime export quantizes:
    ``automc.hardware.runtimes.ort.int8_region``); each int8 layer pays one boundary per
    float region it reads and one where it writes a float region.

    Attributes:
        adjacent: per layer (in the order given), the regions it reads, then the one it writes
            (listed twice where it writes a region it reads).
        members: per region, the positions of the layers that read or write it.
        external: per region, whether it touches the network's input or output (float).
        roles: per layer, per region of ``adjacent``, the input segment
            (``LayerSpec.in_segments``) it reads there, or -1 where it writes its output.
    """

    adjacent: tuple[tuple[int, ...], ...]
    members: tuple[tuple[int, ...], ...]
    external: tuple[bool, ...]
    roles: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def of(cls, layers: Sequence[LayerSpec]) -> PrecisionRegions:
        """The regions of ``layers`` (their groups, ``in_segments`` and execution ``index``)."""
        ids: dict[tuple[object, ...], int] = {}
        members: list[list[int]] = []
        external: list[bool] = []
        read: list[bool] = []

        def region(key: tuple[object, ...], outside: bool, pos: int, reads: bool) -> int:
            if key not in ids:
                ids[key] = len(members)
                members.append([])
                external.append(outside)
                read.append(False)
            rid = ids[key]
            if pos not in members[rid]:
                members[rid].append(pos)
            read[rid] = read[rid] or reads
            return rid

        last_dw: dict[int, int] = {}
        adjacent: list[tuple[int, ...]] = [()] * len(layers)
        roles: list[tuple[int, ...]] = [()] * len(layers)
        for pos in sorted(range(len(layers)), key=lambda i: layers[i].index):
            spec = layers[pos]
            touched: dict[int, int] = {}
            for seg, (g, _, _) in enumerate(spec.in_segments or ((NOT_PRUNABLE, spec.in_channels, 1),)):
                key: tuple[object, ...] = ("input",) if g == NOT_PRUNABLE else (g, last_dw.get(g, -1))
                touched.setdefault(region(key, g == NOT_PRUNABLE, pos, True), seg)
            if spec.group == NOT_PRUNABLE:
                out = region(("output", spec.name), True, pos, False)
            else:
                if spec.kind == "dwconv2d":
                    last_dw[spec.group] = spec.index
                out = region((spec.group, last_dw.get(spec.group, -1)), False, pos, False)
            # a layer may write the region it reads (``x + conv(x)``): both are listed
            adjacent[pos] = (*touched, out)
            roles[pos] = (*touched.values(), -1)
        return cls(
            adjacent=tuple(adjacent),
            members=tuple(tuple(m) for m in members),
            external=tuple(ext or not r for ext, r in zip(external, read)),
            roles=tuple(roles),
        )

    def _float_regions(self, int8: Sequence[bool]) -> list[bool]:
        return [ext or not all(int8[m] for m in mem) for mem, ext in zip(self.members, self.external)]

    def boundaries(self, int8: Sequence[bool]) -> int:
        """Int8/float boundaries when layer ``i`` runs int8 iff ``int8[i]``: over the int8
        layers, the float regions each reads or writes."""
        float_region = self._float_regions(int8)
        return sum(sum(float_region[r] for r in regs) for regs, on in zip(self.adjacent, int8) if on)

    def boundary_elements(
        self, int8: Sequence[bool], segment_elements: Sequence[Sequence[int]], output_elements: Sequence[int]
    ) -> int:
        """The tensor elements converted at the :meth:`boundaries`: at each, the elements of the
        int8 layer's input segment it reads there (``segment_elements[i][s]``) or of its output
        (``output_elements[i]``)."""
        float_region = self._float_regions(int8)
        total = 0
        for i, on in enumerate(int8):
            if on:
                for r, seg in zip(self.adjacent[i], self.roles[i]):
                    if float_region[r]:
                        total += output_elements[i] if seg < 0 else segment_elements[i][seg]
        return total

    def int8_add_elements(self, int8: Sequence[bool], output_elements: Sequence[int]) -> int:
        """The tensor elements added in int8 where layer ``i`` runs int8 iff ``int8[i]``: in each
        region that runs int8, every layer writing into it but the one writing the most adds its
        output (``output_elements[i]``) to the others' (a residual add).

        A float region's adds fuse into the convolution that writes them (ONNX Runtime's
        ``FusedConv`` with a sum); an int8 region's run as kernels of their own
        (``QLinearAdd``: dequantize both inputs, add, requantize), which no layer's table entry
        holds. A network with most of its layers int8 has its residual streams int8 and pays
        them all (resnet20 all int8: 9 ``QLinearAdd`` nodes on tensors of 16x32x32 to 64x8x8)."""
        float_region = self._float_regions(int8)
        writes: list[list[int]] = [[] for _ in self.members]
        for i, regs in enumerate(self.adjacent):
            written = regs[-1]
            if not float_region[written]:
                writes[written].append(output_elements[i])
        return sum(sum(w) - max(w) for w in writes if w)


LATENCY_TOLERANCE = 0.10
"""Relative error of a latency prediction within which it counts as holding (a winner beyond it
is flagged with the reasons, ``automc.pipeline.winners.latency_check``)."""


def off_block_layout(kind: str, n: int, m: int, groups: int, block: int) -> bool:
    """Whether a conv stage with ``n`` input and ``m`` output channels runs off the runtime's
    blocked channel layout (``block`` channels per block; 0 = the runtime has none).

    ONNX Runtime's CPU provider reorders convs to MLAS's NCHWc layout (16 channels per block
    with AVX-512, 8 with AVX/AVX2) only where the channels fit it: a plain conv whose input
    channels are fewer than a block or a multiple of it (output channels are padded), a
    depthwise conv whose channels are a multiple, a grouped conv whose per-group input and
    output channels are. Any other conv runs the generic NCHW kernel, measured here up to
    1.5x slower than the unpruned network it was pruned from (resnet20, keep 0.875: 14/28/56
    channels, 0.58 ms against 0.39 ms). Linear layers have no blocked layout. Its int8 kernels
    are no NCHWc ones but run slower on the same channel counts (mobilenetv2: int8 networks off
    the layout 14% slower than their on-layout table prices; ``NetworkFit.int8_generic_table_scale``).
    """
    if block <= 1 or kind == "linear":
        return False
    if kind == "dwconv2d":
        return m % block != 0
    if kind == "grouped" and groups > 1:
        return (n // groups) % block != 0 or m % groups != 0 or (m // groups) % block != 0
    return n >= block and n % block != 0


def block_layout_channels(count: int, channels: int, block: int, *, depthwise: bool) -> int:
    """The channel count nearest ``count`` (ties: the larger) that keeps a dependency group of
    ``channels`` channels on the runtime's blocked layout (:func:`off_block_layout`).

    Such a count is a multiple of ``block``, or all ``channels`` (the unpruned layout), or,
    where no member of the group is depthwise or grouped (``depthwise``), fewer than one block:
    a plain conv reading fewer channels than a block stays on the layout. ``block <= 1``
    leaves ``count`` as it is.
    """
    if block <= 1 or count >= channels:
        return min(count, channels)
    if count < block and not depthwise:
        return count
    lower = count // block * block
    upper = min(channels, lower + block)
    if lower == 0 or upper - count <= count - lower:
        return upper
    return lower


def block_layout_grid(
    grid: tuple[int, ...], channels: int, block: int, *, depthwise: bool
) -> tuple[int, ...]:
    """A table grid of channel counts (sorted, out of ``channels``) moved onto the blocked layout.

    Each count moves to :func:`block_layout_channels`, and the smallest one also moves down to
    a whole block (where it is not already on the layout), so the grid spans every count a
    search on the layout takes; a depthwise layer's smallest count below one block stays too,
    so the grid still spans every count of the fractions. The table then measures the
    runtime's blocked kernels, and a count between two grid points interpolates between two
    kernels of one kind (but below a depthwise layer's first block): counts off the layout are
    priced from the same points with the generic kernels' fitted scale
    (``NetworkFit.generic_table_scale``). ``block <= 1``, or a layer of at most one block,
    leaves the grid as it is.
    """
    if block <= 1 or channels <= block:
        return grid
    points = {block_layout_channels(c, channels, block, depthwise=depthwise) for c in grid}
    low = grid[0]
    if depthwise or low >= block:
        points.add(max(block, low // block * block))
    if low < min(points):
        points.add(low)
    return tuple(sorted(points))


def block_layout_keep(keep: float, members: Sequence[LayerSpec], block: int) -> float:
    """The keep ratio of the dependency group ``members`` (``LayerSpec.group``) moved to the
    nearest channel count on the blocked layout (:func:`block_layout_channels`; a group
    with a depthwise or grouped member needs whole blocks)."""
    channels = members[0].out_channels
    depthwise = any(m.kind in ("dwconv2d", "grouped") for m in members)
    count = block_layout_channels(kept_channels(channels, keep), channels, block, depthwise=depthwise)
    return round(count / channels, 10)


def block_layout_rank(rank: int, max_rank: int, block: int) -> int | None:
    """A low rank moved to the nearest count on the blocked layout (the factorised layer's
    second conv reads ``rank`` channels); ``None`` (no factorisation) where that is ``max_rank``."""
    moved = block_layout_channels(rank, max_rank, block, depthwise=False)
    return None if moved >= max_rank else moved


def _bracket(grid: tuple[int, ...], v: int) -> tuple[int, int, float] | None:
    if v < grid[0] or v > grid[-1]:
        return None
    i = bisect.bisect_left(grid, v)
    if grid[i] == v:
        return v, v, 0.0
    lo, hi = grid[i - 1], grid[i]
    return lo, hi, (v - lo) / (hi - lo)


@dataclass(frozen=True)
class _Layer:
    spec: LayerSpec
    plain: StageAxes
    lowrank: tuple[StageAxes, StageAxes] | None
    out_positions: int
    in_positions: int
    kernel_area: int
    uid: int


class LatencyPredictor:
    """Latency lookups for one profile; build once, call :meth:`predict` many times.

    Indexes the table by configuration and caches every layer price, so repeated
    candidates cost a few dictionary lookups per layer.
    """

    def __init__(self, profile: HwProfile) -> None:
        self.profile = profile
        lt = profile.latency
        self.batch = profile.runtime.batch
        self.channel_fractions = tuple(lt.grid.get("channel_fractions", DEFAULT_CHANNEL_FRACTIONS))
        self.rank_fractions = tuple(lt.grid.get("rank_fractions", self.channel_fractions))
        stat = profile.measurement.statistic
        self._table: dict[ConfigKey, float] = {e.key: e.value_ms(stat) for e in lt.entries}
        self._shapes: set[_Shape] = {
            (k[0], k[1], k[2], k[5], k[6], k[7], k[8], k[9], k[10], k[13]) for k in self._table
        }
        self._bits = list(profile.runtime.native_bits) or [32]
        self._bits_map = {b: self._table_bits(b) for b in ALLOWED_BITS}
        self._layers: dict[int, tuple[LayerSpec, _Layer]] = {}
        self._next_uid = 0
        self._prices: dict[tuple[int, int, int, int, int], tuple[float, float, str]] = {}
        self._block = profile.runtime.channel_block
        self._grid_block = lt.grid_block
        self._elem_ms = lt.elementwise_ns_per_element * 1e-6
        self._layer_ms = lt.layer_overhead_ms
        self._scale = lt.table_scale
        self._fits: dict[tuple[int, int], tuple[LayerSpec, NetworkFit | None]] = {}
        self._regions: dict[tuple[int, int], tuple[LayerSpec, PrecisionRegions]] = {}

    def _table_bits(self, bits: int) -> int:
        for b in self._bits:
            if b >= bits:
                return b
        return self._bits[-1]

    def _layer(self, spec: LayerSpec) -> _Layer:
        hit = self._layers.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        if len(self._layers) > 100_000:
            self._layers.clear()
            self._prices.clear()
        plain, lowrank = layer_stages(spec, self.channel_fractions, self.rank_fractions, self._grid_block)
        oh, ow = spec.out_hw
        ih, iw = spec.in_hw
        layer = _Layer(
            spec=spec,
            plain=plain,
            lowrank=lowrank,
            out_positions=oh * ow,
            in_positions=ih * iw,
            kernel_area=spec.kernel[0] * spec.kernel[1],
            uid=self._next_uid,
        )
        self._next_uid += 1
        self._layers[id(spec)] = (spec, layer)
        return layer

    def _stage_ms(self, st: StageAxes, n: int, m: int, bits: int) -> float | None:
        """Interpolated table latency of one stage, or None when outside the table."""
        tb = self._bits_map.get(bits, self._bits[-1])
        bn = _bracket(st.in_grid, n)
        if bn is None:
            return None
        if st.kind == "dwconv2d":
            lo = self._table.get(st.key(bn[0], bn[0], tb, self.batch))
            hi = self._table.get(st.key(bn[1], bn[1], tb, self.batch))
            if lo is None or hi is None:
                return None
            return lo + (hi - lo) * bn[2]
        bm = _bracket(st.out_grid, m)
        if bm is None:
            return None
        vals = []
        for a in (bn[0], bn[1]):
            for b in (bm[0], bm[1]):
                v = self._table.get(st.key(a, b, tb, self.batch))
                if v is None:
                    return None
                vals.append(v)
        tn, tm = bn[2], bm[2]
        top = vals[0] + (vals[1] - vals[0]) * tm
        bottom = vals[2] + (vals[3] - vals[2]) * tm
        return top + (bottom - top) * tn

    def _roofline_ms(
        self, macs: int, weights: int, in_elems: int, out_elems: int, w_bits: int, a_bits: int
    ) -> float:
        rf = self.profile.roofline
        bits = max(w_bits, a_bits)
        prec = (
            "fp32"
            if bits > 16
            else "fp16"
            if bits > 8
            else "int8"
            if bits > 4
            else "int4"
            if bits > 1
            else "binary"
        )
        peak = rf.peak_macs_per_s.get(prec) or rf.peak_macs_per_s["fp32"]
        b = self.batch
        compute_s = macs * b / peak
        mem_bytes = weights * w_bits / 8 + in_elems * b * a_bits / 8 + out_elems * b * 4
        memory_s = mem_bytes / rf.memory_bandwidth_bytes_per_s
        return max(compute_s, memory_s) * 1e3 + rf.launch_overhead_ms

    def _shape_known(self, st: StageAxes) -> bool:
        return (
            st.kind,
            st.in_size[0],
            st.in_size[1],
            st.kernel[0],
            st.kernel[1],
            st.stride[0],
            st.stride[1],
            st.padding[0],
            st.padding[1],
            self.batch,
        ) in self._shapes

    def _price(
        self, layer: _Layer, n: int, m: int, rank: int | None, w_bits: int, a_bits: int
    ) -> tuple[float, float, str]:
        """``(table ms of stages on the runtime's blocked layout, of stages off it, flag)``."""
        spec = layer.spec
        bits = max(w_bits, a_bits)
        if rank is None:
            stages = [(layer.plain, n, m)]
            groups = n if spec.kind == "dwconv2d" else spec.groups
            rf = [
                (
                    layer.out_positions * m * (n // max(1, groups)) * layer.kernel_area,
                    m * (n // max(1, groups)) * layer.kernel_area,
                    n * layer.in_positions,
                    m * layer.out_positions,
                )
            ]
        else:
            assert layer.lowrank is not None
            r = max(1, min(rank, m, n * layer.kernel_area))
            stages = [(layer.lowrank[0], n, r), (layer.lowrank[1], r, m)]
            rf = [
                (
                    layer.out_positions * r * n * layer.kernel_area,
                    r * n * layer.kernel_area,
                    n * layer.in_positions,
                    r * layer.out_positions,
                ),
                (layer.out_positions * m * r, m * r, r * layer.out_positions, m * layer.out_positions),
            ]
        fast = generic = 0.0
        flag = ""
        for (st, a, b), (macs, weights, ie, oe) in zip(stages, rf):
            ms = self._stage_ms(st, a, b, bits)
            if ms is None:
                flag = FLAG_ROOFLINE if self._shape_known(st) else FLAG_NO_SHAPE
                ms = self._roofline_ms(macs, weights, ie, oe, w_bits, a_bits)
            if off_block_layout(st.kind, a, b, st.groups, self._block):
                generic += ms
            else:
                fast += ms
        return fast, generic, flag

    def _network_fit(self, layers: Sequence[LayerSpec]) -> NetworkFit | None:
        """The profile's per-network fit for these layers (cached per layer list)."""
        if not self.profile.latency.networks or not layers:
            return None
        key = (id(layers[0]), len(layers))
        hit = self._fits.get(key)
        if hit is None or hit[0] is not layers[0]:
            hit = (layers[0], self.profile.latency.network(layers_fingerprint(layers)))
            self._fits[key] = hit
        return hit[1]

    def _precision_regions(self, layers: Sequence[LayerSpec]) -> PrecisionRegions:
        """:class:`PrecisionRegions` of these layers (cached per layer list)."""
        key = (id(layers[0]), len(layers))
        hit = self._regions.get(key)
        if hit is None or hit[0] is not layers[0]:
            if len(self._regions) > 1000:
                self._regions.clear()
            hit = (layers[0], PrecisionRegions.of(layers))
            self._regions[key] = hit
        return hit[1]

    def predict(self, layers: Sequence[LayerSpec], plan: CompressionPlan) -> LatencyEstimate:
        """Predicted latency of ``layers`` compressed by ``plan`` (see the module docstring)."""
        choices = plan.layers
        keep = {NOT_PRUNABLE: 1.0}
        for spec in layers:
            if spec.group != NOT_PRUNABLE and spec.group not in keep:
                keep[spec.group] = choices.get(spec.name, IDENTITY).keep_ratio
        per_layer: dict[str, float] = {}
        flags: dict[str, str] = {}
        unsupported: dict[str, str] = {}
        simulated: dict[str, int] = {}
        fit = self._network_fit(layers)
        if fit is None:
            total = self.profile.latency.network_overhead_ms
            scale, elem_ms, layer_ms, stage_ms = self._scale, self._elem_ms, self._layer_ms, 0.0
            if self.profile.latency.networks:
                flags[NETWORK_FLAG_KEY] = FLAG_NOT_PROFILED
        else:
            total = fit.network_overhead_ms
            scale, elem_ms, layer_ms, stage_ms = fit.table_scale, 0.0, 0.0, fit.extra_stage_ms
        int8_scale = scale if fit is None or fit.int8_table_scale is None else fit.int8_table_scale
        generic_scale = scale if fit is None or fit.generic_table_scale is None else fit.generic_table_scale
        int8_generic_scale = (
            int8_scale
            if fit is None or fit.int8_generic_table_scale is None
            else fit.int8_generic_table_scale
        )
        int8 = [False] * len(layers)
        segment_elements: list[tuple[int, ...]] = [()] * len(layers)
        output_elements = [0] * len(layers)
        off_layout = 0
        off_layout_ms = int8_off_layout_ms = 0.0
        for pos, spec in enumerate(layers):
            if spec.kind not in LAYER_KINDS:
                unsupported[spec.name] = f"layer kind {spec.kind!r} has no latency model"
                continue
            choice = choices.get(spec.name, IDENTITY)
            layer = self._layer(spec)
            segments = tuple(
                kept_channels(c, keep.get(g, 1.0)) * mult
                for g, c, mult in spec.in_segments or ((NOT_PRUNABLE, spec.in_channels, 1),)
            )
            n = sum(segments)
            m = kept_channels(spec.out_channels, keep.get(spec.group, 1.0))
            if spec.kind == "dwconv2d":
                n = m
            segment_elements[pos] = tuple(c * layer.in_positions * self.batch for c in segments)
            output_elements[pos] = m * layer.out_positions * self.batch
            rank = choice.rank
            if rank is not None and layer.lowrank is None:
                unsupported[spec.name] = f"low-rank factorisation of a {spec.kind} layer has no latency model"
                continue
            bits = max(choice.w_bits, choice.a_bits)
            priced_bits = self._bits_map.get(bits, self._bits[-1])
            if priced_bits != bits:
                simulated[spec.name] = priced_bits
            int8[pos] = priced_bits == 8
            ck = (layer.uid, n, m, rank or 0, choice.w_bits * 64 + choice.a_bits)
            hit = self._prices.get(ck)
            if hit is None:
                hit = self._price(layer, n, m, rank, choice.w_bits, choice.a_bits)
                self._prices[ck] = hit
            if priced_bits == 8:
                off_ms = int8_generic_scale * hit[1]
                ms = int8_scale * hit[0] + off_ms
                int8_off_layout_ms += off_ms
            else:
                off_ms = generic_scale * hit[1]
                ms = scale * hit[0] + off_ms
                off_layout_ms += off_ms
            ms += layer_ms + elem_ms * output_elements[pos]
            if rank is not None:
                ms += layer_ms + stage_ms
            off_layout += hit[1] > 0
            if hit[2]:
                flags[spec.name] = hit[2]
            per_layer[spec.name] = ms
            total += ms
        boundaries = elements = added = 0
        if any(int8):
            regions = self._precision_regions(layers)
            boundaries = regions.boundaries(int8)
            elements = regions.boundary_elements(int8, segment_elements, output_elements)
            added = regions.int8_add_elements(int8, output_elements)
        if fit is not None:
            total += fit.transition_ms * boundaries + fit.transition_ns_per_element * 1e-6 * elements
            total += fit.int8_add_ns_per_element * 1e-6 * added
        return LatencyEstimate(
            total_ms=total,
            per_layer_ms=per_layer,
            flags=flags,
            unsupported=unsupported,
            simulated=simulated,
            boundaries=boundaries,
            boundary_elements=elements,
            int8_add_elements=added,
            off_layout=off_layout,
            off_layout_ms=off_layout_ms,
            int8_off_layout_ms=int8_off_layout_ms,
        )


_PREDICTORS: dict[int, tuple[HwProfile, LatencyPredictor]] = {}


def predictor_for(profile: HwProfile) -> LatencyPredictor:
    """The cached :class:`LatencyPredictor` of ``profile`` (built on first use)."""
    hit = _PREDICTORS.get(id(profile))
    if hit is not None and hit[0] is profile:
        return hit[1]
    if len(_PREDICTORS) >= 16:
        _PREDICTORS.clear()
    pred = LatencyPredictor(profile)
    _PREDICTORS[id(profile)] = (profile, pred)
    return pred


def predict_latency(
    layers: Sequence[LayerSpec], plan: CompressionPlan, profile: HwProfile
) -> LatencyEstimate:
    """Predicted latency of ``layers`` compressed by ``plan`` on the device of ``profile``.

    Args:
        layers: the model's layer table (``automc.graph.layers``).
        plan: the compression plan.
        profile: a measured device profile (``automc.schema.hw_profile.resolve_profile``).

    Returns:
        Total and per-layer milliseconds at the profile's batch size, roofline-fallback
        flags and unsupported layers.
    """
    return predictor_for(profile).predict(layers, plan)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); 0.0 when undefined (n < 2 or constant)."""
    if len(a) != len(b) or len(a) < 2:
        return 0.0
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    if va == 0 or vb == 0:
        return 0.0
    return cov / (va * vb) ** 0.5


def fidelity(
    predicted_ms: Sequence[float], measured_ms: Sequence[float], macs: Sequence[float] | None = None
) -> dict[str, float]:
    """How well predictions match measurements.

    Returns:
        ``n``; ``within_10pct`` (fraction with ``|pred - meas| <= 10% of meas``); ``rmspe``
        (root mean squared relative error, a fraction); ``spearman`` (predicted vs measured);
        and, when ``macs`` is given, ``flops_spearman`` (MACs vs measured, the FLOPs-only
        baseline).
    """
    rel = [(p - m) / m for p, m in zip(predicted_ms, measured_ms)]
    n = len(rel)
    out: dict[str, float] = {
        "n": n,
        "within_10pct": sum(abs(r) <= 0.10 for r in rel) / n if n else 0.0,
        "rmspe": (sum(r * r for r in rel) / n) ** 0.5 if n else 0.0,
        "spearman": spearman(predicted_ms, measured_ms),
    }
    if macs is not None:
        out["flops_spearman"] = spearman(macs, measured_ms)
    return out
