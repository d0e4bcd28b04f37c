"""Fitting a device profile's network-level latency terms to networks timed end to end.

The layer table prices each layer alone; what a whole network adds (a constant, a cost per
conv/linear call, per output element, per factorised layer's second call, per int8/float
precision boundary, and a scale on the table, a separate one on its int8 entries) is fitted here by non-negative relative least squares: once over all profiled
networks (:func:`fit_overhead`) and once per network (:func:`fit_network`). numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

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
) -> tuple[float, float, float, float, float, float]:
    """(table-only latency, conv/linear calls, output elements, factorised layers, the part of
    the table-only latency priced from int8 entries, int8/float precision boundaries) under
    ``plan``; ``profile`` must carry no fitted terms (:func:`table_only`)."""
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
    return (*features, float(bare.boundaries))


def _nonneg_lstsq(
    design: np.ndarray, target: np.ndarray, weight: np.ndarray, active: list[int]
) -> np.ndarray:
    """Weighted least squares over the ``active`` columns with every coefficient >= 0.

    Columns whose coefficient comes out negative are dropped and the rest refitted; the
    returned vector has one entry per column of ``design`` (0 for dropped / inactive ones).
    """
    coef = np.zeros(design.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(design[:, active] * weight[:, None], target * weight, rcond=None)
        if (sol >= 0).all():
            coef[active] = sol
            break
        active = [a for a, c in zip(active, sol) if c >= 0] if (sol >= 0).any() else []
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


def fit_network_mixed(
    rows: Sequence[tuple[float, float, float, float, float]],
) -> tuple[float, float, float, float, float]:
    """Fit ``measured = scale * float_table + int8_scale * int8_table + overhead
    + stage * factorised + transition * boundaries``.

    Args:
        rows: ``(float_table_ms, int8_table_ms, factorised_layers, boundaries, measured_ms)``
            per network: the table latency of its layers priced from float entries and from
            int8 entries, and its int8/float precision boundaries
            (``automc.cost.latency.PrecisionRegions``).

    Returns:
        ``(table_scale, int8_table_scale, network_overhead_ms, extra_stage_ms, transition_ms)``,
        every term >= 0, minimising relative squared error (see :func:`fit_network`). The int8
        scale needs a spread in ``int8_table_ms``; without one it is ``table_scale`` (one scale
        for the whole table) and the transition cost 0. The stage and transition terms need a
        spread in their counts and a row more than the terms fitted.
    """
    data = np.asarray(rows, dtype=np.float64)
    w = 1.0 / data[:, 4]
    design = np.column_stack([data[:, 0], np.ones(len(data)), data[:, 2], data[:, 1], data[:, 3]])
    mixed = len(data) >= 4 and np.ptp(data[:, 1]) > 1e-9 and np.ptp(data[:, 0]) > 1e-9
    active = [0, 1, 3]
    for col in (2, 4):
        if len(data) > len(active) + 1 and np.ptp(design[:, col]) > 0:
            active.append(col)
    coef = _nonneg_lstsq(design, data[:, 4], w, active) if mixed else np.zeros(5)
    if coef[0] <= 0 or coef[3] <= 0:
        total = [(f + q, k, m) for f, q, k, _, m in data.tolist()]
        scale, overhead, stage = fit_network(total)
        return scale, scale, overhead, stage, 0.0
    return float(coef[0]), float(coef[3]), float(coef[1]), float(coef[2]), float(coef[4])


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


def refit_loo_ms(layers: Sequence[LayerSpec], variants: Sequence[Variant], profile: HwProfile) -> list[float]:
    """Each variant's latency predicted by a network fit refitted on the *other* variants.

    The table of ``profile`` is kept; its network-level terms (:func:`fit_network_mixed`:
    scales, constant, per-factorised-layer and per-boundary costs) are refitted leave-one-out on ``variants``, all of
    one model and timed in one run. Set against the profile's own predictions, this tells
    the table's and the fit's form error (what is left here) from the drift of the machine
    between the profiling run and this one (what the refit absorbs).

    Returns:
        One predicted latency (ms) per variant, in order (needs at least 3 variants).
    """
    if len(variants) < 3:
        raise AutomcError("a leave-one-out refit needs at least 3 measured variants")
    bare = table_only(profile)
    rows = []
    for v in variants:
        table_ms, _, _, factorised, int8_ms, boundaries = _features(layers, v.plan, bare)
        rows.append((table_ms - int8_ms, int8_ms, factorised, boundaries, v.measured_ms))
    out = []
    for i, (float_ms, int8_ms, factorised, boundaries, _) in enumerate(rows):
        scale, int8_scale, overhead, stage, transition = fit_network_mixed(rows[:i] + rows[i + 1 :])
        out.append(
            overhead + scale * float_ms + int8_scale * int8_ms + stage * factorised + transition * boundaries
        )
    return out
