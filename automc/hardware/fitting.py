"""Fitting a device profile's network-level latency terms to networks timed end to end.

The layer table prices each layer alone; what a whole network adds (a constant, a cost per
conv/linear call, per output element, per factorised layer's second call, per element
converted at an int8/float precision boundary, per element of a residual add inside an int8
region, and a scale on the table, separate ones on its
int8 entries and on the stages off the runtime's blocked layout) is fitted here by
non-negative relative least squares: once over all profiled networks (:func:`fit_overhead`)
and once per network (:func:`fit_network`, :func:`fit_network_mixed`). numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from automc.cost.flops import layer_geometry
from automc.cost.latency import predict_latency
from automc.errors import AutomcError
from automc.plan import CompressionPlan, LayerSpec
from automc.schema.hw_profile import HwProfile

if TYPE_CHECKING:
    from automc.hardware.variants import Variant


def _features(
    layers: Sequence[LayerSpec], plan: CompressionPlan, profile: HwProfile
) -> tuple[float, float, float, float, float, float, float, float, float]:
    """(table-only latency, conv/linear calls, output elements, factorised layers, the part of
    the table-only latency priced from int8 entries, tensor elements converted at int8/float
    precision boundaries, the part of float stages off the runtime's blocked layout, the part of
    int8 stages off it, tensor elements added in int8 regions) under ``plan``; ``profile`` must carry no fitted terms
    (:func:`table_only`)."""
    bare = predict_latency(layers, plan, profile)
    table_ms = bare.total_ms - profile.latency.network_overhead_ms
    keep = plan.group_keep(layers)
    elems = 0
    for s in layers:
        oh, ow = s.out_hw
        elems += layer_geometry(s, plan.choice(s.name), keep).out_channels * oh * ow
    factorised = sum(1 for name in bare.per_layer_ms if plan.choice(name).rank is not None)
    calls = len(bare.per_layer_ms) + factorised
    int8_ms = 0.0
    if 8 in profile.runtime.native_bits:
        for name, ms in bare.per_layer_ms.items():
            c = plan.choice(name)
            if max(c.w_bits, c.a_bits) <= 8 and bare.simulated.get(name, 8) == 8:
                int8_ms += ms
    features = (table_ms, float(calls), float(elems * profile.runtime.batch), float(factorised), int8_ms)
    return (
        *features,
        float(bare.boundary_elements),
        bare.off_layout_ms,
        bare.int8_off_layout_ms,
        float(bare.int8_add_elements),
    )


def _nonneg_lstsq(
    design: np.ndarray, target: np.ndarray, weight: np.ndarray, active: list[int], free: Sequence[int] = ()
) -> np.ndarray:
    """Weighted least squares over the ``active`` columns with every coefficient >= 0 but those
    of the ``free`` columns.

    Columns whose coefficient comes out negative are dropped and the rest refitted; the
    returned vector has one entry per column of ``design`` (0 for dropped / inactive ones).
    """
    coef = np.zeros(design.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(design[:, active] * weight[:, None], target * weight, rcond=None)
        ok = [c >= 0 or a in free for a, c in zip(active, sol)]
        if all(ok):
            coef[active] = sol
            break
        kept = [a for a, good in zip(active, ok) if good]
        active = kept if any(a not in free for a in kept) else []
    return coef


def fit_overhead(rows: Sequence[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    """Fit ``measured = s * table + c0 + c_layer * calls + c_elem * elements`` with every term >= 0.

    Args:
        rows: ``(table_ms, calls, elements, measured_ms)`` per training network (``calls``:
            conv/linear calls, two for a low-rank-factorised layer).

    Returns:
        ``(table_scale, network_overhead_ms, layer_overhead_ms, elementwise_ms_per_element)``;
        the fit minimises *relative* squared error and drops terms that would come out
        negative (a dropped scale is reported as 1.0 and its term kept at 1 x table).
    """
    data = np.asarray(rows, dtype=np.float64)
    w = 1.0 / data[:, 3]
    design = np.column_stack([data[:, 0], np.ones(len(data)), data[:, 1], data[:, 2]])
    coef = _nonneg_lstsq(design, data[:, 3], w, [0, 1, 2, 3])
    if coef[0] <= 0:
        coef = _nonneg_lstsq(design, data[:, 3] - data[:, 0], w, [1, 2, 3])
        coef[0] = 1.0
    return float(coef[0]), float(coef[1]), float(coef[2]), float(coef[3])


class FitRow(NamedTuple):
    """One timed network for :func:`fit_network_mixed`: its table latency split by kernel path."""

    float_ms: float
    """Table latency of its float stages (on the runtime's blocked layout, where it has one)."""
    int8_ms: float
    """Table latency of its layers priced from int8 entries."""
    factorised: float
    """Low-rank-factorised layers."""
    boundary_elements: float
    """Tensor elements converted at its int8/float precision boundaries
    (``automc.cost.latency.PrecisionRegions.boundary_elements``)."""
    measured_ms: float
    generic_ms: float = 0.0
    """Table latency of its float stages off the blocked layout (``automc.cost.latency.off_block_layout``)."""
    int8_generic_ms: float = 0.0
    """Table latency of its int8 stages off the blocked layout (not in ``int8_ms``)."""
    int8_add_elements: float = 0.0
    """Tensor elements added in its int8 regions (``automc.cost.latency.PrecisionRegions.int8_add_elements``)."""


class NetworkTerms(NamedTuple):
    """The per-network terms :func:`fit_network_mixed` fits (``NetworkFit``'s fields)."""

    table_scale: float
    int8_table_scale: float
    network_overhead_ms: float
    extra_stage_ms: float
    transition_ns_per_element: float
    generic_table_scale: float | None = None
    """``None``: not told apart from ``table_scale`` (no spread in ``generic_ms``, or fitted <= 0)."""
    int8_generic_table_scale: float | None = None
    """``None``: not told apart from ``int8_table_scale`` (no spread in ``int8_generic_ms``, or fitted <= 0)."""
    int8_add_ns_per_element: float = 0.0


def fit_network_mixed(rows: Sequence[Sequence[float]]) -> NetworkTerms:
    """Fit ``measured = scale * float_table + generic_scale * generic_table + int8_scale *
    int8_table + int8_generic_scale * int8_generic_table + overhead + stage * factorised +
    transition * boundary_elements + int8_add * int8_add_elements``.

    Args:
        rows: :class:`FitRow` per network (plain tuples in its field order; ``generic_ms``,
            ``int8_generic_ms`` and ``int8_add_elements`` may be left out).

    Returns:
        :class:`NetworkTerms`, every term >= 0 but the constant and the stage cost, minimising
        relative squared error (see :func:`fit_network`). A separate int8, generic or int8-generic scale needs a
        spread in its table part, four rows or more, and must come out positive; otherwise
        that part is priced at ``table_scale`` (the int8 one at the int8 scale; without an int8
        scale the transition and int8-add costs are 0, the generic scales ``None``). The stage,
        transition and int8-add terms need a spread in their counts and a row more than the terms fitted. The
        constant and the stage cost may come out negative: each table entry was timed as a
        session of its own and carries one session call's overhead, which a layer inside a
        network does not pay, so the table sum of a network of N layers overprices it by N such
        calls (the constant) and a factorised layer's second call by one (the stage cost).
        Held at 0, that overpricing goes into a scale below 1 instead, which then prices thin
        variants high against the base, where the calls are a larger share of the table sum.
    """
    data = np.asarray([tuple(FitRow(*r)) for r in rows], dtype=np.float64)
    f, q, k, b, y, g, qg, a = data.T
    n = len(data)
    w = 1.0 / y
    parts = {"int8": q, "generic": g, "int8_generic": qg}
    split = [name for name, part in parts.items() if n >= 4 and np.ptp(part) > 1e-9]
    if "int8" in split and np.ptp(f) <= 1e-9:
        split.remove("int8")
    while True:
        if "int8" not in split and "int8_generic" in split:
            split.remove("int8_generic")
        base = f + sum((part for name, part in parts.items() if name not in split), np.zeros(n))
        if "int8" in split and "int8_generic" not in split:
            base, q_col = base - qg, q + qg
        else:
            q_col = q
        cols: dict[str, np.ndarray] = {"float": base, "overhead": np.ones(n)}
        cols.update({name: {"int8": q_col, "generic": g, "int8_generic": qg}[name] for name in split})
        extra = (
            {"stage": k, "transition": b * 1e-6, "int8_add": a * 1e-6} if "int8" in split else {"stage": k}
        )
        for name, col in extra.items():
            if n > len(cols) + 1 and np.ptp(col) > 0:
                cols[name] = col
        if n < 2 or np.ptp(base) <= 1e-9 and not split:
            cols.pop("overhead")
        names = list(cols)
        coef = _nonneg_lstsq(
            np.column_stack([cols[c] for c in names]),
            y,
            w,
            list(range(len(names))),
            free=[names.index(name) for name in ("overhead", "stage") if name in names],
        )
        c = dict(zip(names, (float(v) for v in coef)))
        dropped = [name for name in split if c[name] <= 0]
        if not dropped:
            break
        split = [name for name in split if name not in dropped]
    if c["float"] <= 0:
        scale, overhead, stage = fit_network(
            [(fi + qi + gi + qgi, ki, yi) for fi, qi, ki, _, yi, gi, qgi, _ in data.tolist()]
        )
        return NetworkTerms(scale, scale, overhead, stage, 0.0)
    return NetworkTerms(
        table_scale=c["float"],
        int8_table_scale=c.get("int8", c["float"]),
        network_overhead_ms=c.get("overhead", 0.0),
        extra_stage_ms=c.get("stage", 0.0),
        transition_ns_per_element=c.get("transition", 0.0),
        generic_table_scale=c.get("generic"),
        int8_generic_table_scale=c.get("int8_generic"),
        int8_add_ns_per_element=c.get("int8_add", 0.0),
    )


def fit_network(rows: Sequence[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Fit ``measured = scale * table + overhead + stage * factorised`` (all >= 0) on one network.

    Args:
        rows: ``(table_ms, factorised_layers, measured_ms)`` for the network's base and
            random variants.

    Returns:
        ``(table_scale, network_overhead_ms, extra_stage_ms)`` minimising relative squared
        error. A term that would come out negative is dropped (0) and the rest refitted; the
        overhead needs a spread in ``table_ms`` and the stage term a spread in
        ``factorised_layers``, else they stay 0 (a single row fits only the scale).
    """
    data = np.asarray(rows, dtype=np.float64)
    w = 1.0 / data[:, 2]
    design = np.column_stack([data[:, 0], np.ones(len(data)), data[:, 1]])
    active = [0]
    if len(data) >= 2 and np.ptp(data[:, 0]) > 1e-9:
        active.append(1)
    if len(data) >= 3 and np.ptp(data[:, 1]) > 0:
        active.append(2)
    coef = _nonneg_lstsq(design, data[:, 2], w, active)
    if coef[0] <= 0:
        coef = _nonneg_lstsq(design, data[:, 2], w, [0])
    return max(float(coef[0]), 1e-6), float(coef[1]), float(coef[2])


def table_only(profile: HwProfile) -> HwProfile:
    """``profile`` with every fitted network-level term removed (no per-network fits, no
    overheads, table scale 1): its predictions are the plain sums of the table's layer prices."""
    return replace(
        profile,
        latency=replace(
            profile.latency,
            networks=(),
            network_overhead_ms=0.0,
            layer_overhead_ms=0.0,
            elementwise_ns_per_element=0.0,
            table_scale=1.0,
        ),
    )


def fit_row(features: Sequence[float], measured_ms: float) -> FitRow:
    """The :class:`FitRow` of a network with ``features`` (:func:`_features`) timed at ``measured_ms``."""
    table_ms, _, _, factorised, int8_ms, elements, generic_ms, int8_generic_ms, added = features
    return FitRow(
        float_ms=table_ms - int8_ms - generic_ms,
        int8_ms=int8_ms - int8_generic_ms,
        factorised=factorised,
        boundary_elements=elements,
        measured_ms=measured_ms,
        generic_ms=generic_ms,
        int8_generic_ms=int8_generic_ms,
        int8_add_elements=added,
    )


def refit_loo_ms(layers: Sequence[LayerSpec], variants: Sequence[Variant], profile: HwProfile) -> list[float]:
    """Each variant's latency predicted by a network fit refitted on the *other* variants.

    The table of ``profile`` is kept; its network-level terms (:func:`fit_network_mixed`:
    scales, constant, per-factorised-layer, per-boundary and per-int8-add costs) are refitted leave-one-out on ``variants``, all of
    one model and timed in one run. Set against the profile's own predictions, this tells
    the table's and the fit's form error (what is left here) from the drift of the machine
    between the profiling run and this one (what the refit absorbs).

    Returns:
        One predicted latency (ms) per variant, in order (needs at least 3 variants).
    """
    if len(variants) < 3:
        raise AutomcError("a leave-one-out refit needs at least 3 measured variants")
    bare = table_only(profile)
    rows = [fit_row(_features(layers, v.plan, bare), v.measured_ms) for v in variants]
    out = []
    for i, r in enumerate(rows):
        t = fit_network_mixed(rows[:i] + rows[i + 1 :])
        generic_scale = t.table_scale if t.generic_table_scale is None else t.generic_table_scale
        int8_generic_scale = (
            t.int8_table_scale if t.int8_generic_table_scale is None else t.int8_generic_table_scale
        )
        out.append(
            t.network_overhead_ms
            + t.table_scale * r.float_ms
            + generic_scale * r.generic_ms
            + t.int8_table_scale * r.int8_ms
            + int8_generic_scale * r.int8_generic_ms
            + t.extra_stage_ms * r.factorised
            + t.transition_ns_per_element * 1e-6 * r.boundary_elements
            + t.int8_add_ns_per_element * 1e-6 * r.int8_add_elements
        )
    return out
