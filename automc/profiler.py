"""Measure a device profile (``schema: automc/hw-profile``) on the machine this runs on.

Steps (what ``automc profile`` runs):
    1. Roofline: attainable MAC/s (large matmul), memory bandwidth (large copy) and the
       launch overhead of a trivial conv.
    2. Table: every layer configuration the models and their compressed variants can take
       (:func:`table_configs`: each layer's shape x a grid of channel counts, plus the two
       low-rank factors), each timed as a standalone ``Conv2d``/``Linear`` with a bias
       (deployment folds BatchNorm into it).
    3. Overhead fit: a few *training* networks (each base model plus random compressed
       variants, every second one spread around a network-wide compression level so heavily
       and lightly compressed networks are both seen) are timed end to end; the network-level terms of
       ``automc.cost.latency`` are fitted to them by non-negative relative least squares.
    4. Validation: ``validate`` further random variants per model, never used above, are
       timed end to end and compared with the predictions.

Each model's fit and validation networks are timed in one phase. The base model is also
timed alone before the table and after the last phase; a phase that ran slow as a whole
(a slow period of a shared machine lasts minutes) is scaled back to the fastest of those
timings before steps 3-4 (:func:`_to_fastest_phase`; noted in ``device.description``).

Timing protocol: ``torch.set_num_threads`` pinned, eval mode, ``torch.inference_mode()``,
warm-up calls, then ``repeats`` samples taken in interleaved rounds (every configuration
once per round, shuffled, so slow drifts of the machine hit all alike); each sample
averages enough back-to-back calls to last ~``sample_ms``; the spread is the inter-quartile
range. The profile's statistic (``--statistic``) is either the median or the minimum of
the samples; both are recorded for every table entry. ``min`` is the default because it
is the reproducible one on a shared machine: on the 2-core VM this project runs on, the
median latency of the same network drifts by a CV of ~15% between processes (other
tenants slow some periods down, by up to 3x), the minimum by ~6% (measured: 6 processes x
10 networks, resnet20 and mobilenetv2, 2 threads). On CUDA, samples are timed with CUDA events.
Networks are timed as deployed: BatchNorm folded into the preceding conv (:func:`fold_bn`).

This module imports only torch, numpy, yaml (through the schema) and torch-free automc
modules, so it runs on a bare machine with just torch installed; tqdm is used for the
progress bar when present.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import math
import os
import platform
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.cost.flops import layer_geometry
from automc.cost.latency import DEFAULT_CHANNEL_FRACTIONS, fidelity, layer_stages, predict_latency
from automc.errors import AutomcError
from automc.plan import NOT_PRUNABLE, CompressionPlan, LayerChoice, LayerSpec, layers_fingerprint
from automc.schema.hw_profile import (
    STATISTICS,
    ConfigKey,
    DeviceInfo,
    EnergyInfo,
    HwProfile,
    LatencyEntry,
    LatencyTable,
    MeasurementInfo,
    NetworkFit,
    Roofline,
    RuntimeInfo,
    ValidationInfo,
)

CompressFn = Callable[[nn.Module, CompressionPlan, torch.Tensor], nn.Module]


@dataclass(frozen=True)
class ProfileCase:
    """One model to profile.

    Attributes:
        name: model name (recorded in the profile's validation section).
        model: the uncompressed model.
        example_input: an input at the profile's batch size.
        layers: its layer table (``automc.graph.layers``).
    """

    name: str
    model: nn.Module
    example_input: torch.Tensor
    layers: tuple[LayerSpec, ...]


@dataclass(frozen=True)
class Timing:
    """Median, minimum and inter-quartile range (ms) of ``count`` samples."""

    median_ms: float
    spread_ms: float
    count: int
    min_ms: float

    def value(self, statistic: str) -> float:
        """The sample statistic a profile uses (``median`` or ``min``)."""
        return self.min_ms if statistic == "min" else self.median_ms


def _progress(total: int, desc: str, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sample_ms(fn: Callable[[], Any], inner: int, device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / inner
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) * 1e3 / inner


def time_callables(
    fns: Sequence[Callable[[], Any]],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 5,
    repeats: int = 30,
    sample_ms: float = 0.25,
    seed: int = 0,
    rewarm: int = 2,
    progress: bool = False,
    desc: str = "timing",
) -> list[Timing]:
    """Time zero-argument callables with interleaved, shuffled rounds (see the module docstring).

    Args:
        fns: the callables; each call runs the workload once.
        device: where they run (CUDA is timed with events).
        warmup: untimed calls per callable before sampling.
        repeats: samples per callable.
        sample_ms: target duration of one sample (back-to-back calls are averaged).
        seed: shuffling seed.
        rewarm: untimed calls right before each sample, so every sample is taken with the
            workload's weights and activations in cache, as when a deployed model runs
            alone (interleaving alone would time cold caches and overstate latency).
        progress: show a progress bar.
        desc: progress bar label.

    Returns:
        One :class:`Timing` per callable, in order.
    """
    dev = torch.device(device)
    inner: list[int] = []
    bar = _progress(len(fns) * (1 + repeats), desc, progress)
    with torch.inference_mode():
        for fn in fns:
            for _ in range(max(1, warmup)):
                fn()
            _sync(dev)
            t = _sample_ms(fn, 1, dev)
            inner.append(max(1, min(1000, int(math.ceil(sample_ms / max(t, 1e-6))))))
            if bar is not None:
                bar.update(1)
        samples: list[list[float]] = [[] for _ in fns]
        order = list(range(len(fns)))
        rng = random.Random(seed)
        for _ in range(repeats):
            rng.shuffle(order)
            for i in order:
                for _ in range(rewarm):
                    fns[i]()
                samples[i].append(_sample_ms(fns[i], inner[i], dev))
            if bar is not None:
                bar.update(len(fns))
    if bar is not None:
        bar.close()
    out = []
    for s in samples:
        q1, med, q3 = np.percentile(np.asarray(s), [25, 50, 75])
        out.append(Timing(median_ms=float(med), spread_ms=float(q3 - q1), count=len(s), min_ms=min(s)))
    return out


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm2d folded into the conv feeding it.

    Uses ``torch.fx`` to find conv -> BN pairs where the BN is the conv's only consumer;
    the BN becomes ``nn.Identity`` and the conv gets the folded weight and bias, keeping
    the model's own ``forward``. A model ``torch.fx`` cannot trace is returned unfolded
    (eval-mode copy): its BNs are then timed, which overstates deployed latency.
    """
    from torch.fx import symbolic_trace
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = copy.deepcopy(model).eval()
    try:
        gm = symbolic_trace(out)
    except Exception:  # noqa: BLE001 - any tracing failure means "cannot fold", not an error
        return out
    modules = dict(out.named_modules())
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        prev = node.args[0] if node.args else None
        if not isinstance(prev, torch.fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        conv = modules.get(prev.target)
        if type(conv) is not nn.Conv2d:
            continue
        bn = modules[node.target]
        _set_module(out, str(prev.target), fuse_conv_bn_eval(conv, bn))
        _set_module(out, str(node.target), nn.Identity())
    return out


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def measure_models_ms(
    models: Sequence[nn.Module],
    example_input: torch.Tensor,
    *,
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 30,
    fold: bool = True,
    statistic: str = "median",
) -> list[float]:
    """End-to-end latency (ms, ``statistic`` of the samples) of one forward pass of each model.

    The models are timed in one interleaved run (:func:`time_callables`), so a slow period of
    the machine hits them all alike and their samples are spread over the whole run instead
    of each model's own second. Each is timed as deployed (BatchNorm folded unless ``fold``
    is false), in eval mode under ``torch.inference_mode()``, on the device of ``example_input``.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    x = example_input
    nets = [(fold_bn(m) if fold else copy.deepcopy(m).eval()).to(x.device) for m in models]
    fns: list[Callable[[], Any]] = [functools.partial(net, x) for net in nets]
    timings = time_callables(fns, device=x.device, warmup=warmup, repeats=repeats)
    return [t.value(statistic) for t in timings]


def measure_model_ms(model: nn.Module, example_input: torch.Tensor, **kwargs: Any) -> float:
    """:func:`measure_models_ms` of one model."""
    return measure_models_ms([model], example_input, **kwargs)[0]


def measure_as_profiled(
    profile: HwProfile, models: Sequence[nn.Module], example_input: torch.Tensor
) -> list[float]:
    """:func:`measure_models_ms` with ``profile``'s threads, warm-up, repeats and statistic, so the
    figures compare with its predictions (a minimum over more samples is lower)."""
    m = profile.measurement
    return measure_models_ms(
        models,
        example_input,
        threads=profile.runtime.threads,
        warmup=m.warmup,
        repeats=m.repeats,
        statistic=m.statistic,
    )


def table_configs(
    layer_lists: Iterable[Sequence[LayerSpec]],
    *,
    channel_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS,
    rank_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS,
    batch: int = 1,
    bits: int = 32,
    lowrank: bool = True,
) -> list[ConfigKey]:
    """Every table configuration the models and their compressed variants can take (sorted)."""
    keys: set[ConfigKey] = set()
    for layers in layer_lists:
        for spec in layers:
            plain, factors = layer_stages(spec, channel_fractions, rank_fractions)
            stages = [plain] + (list(factors) if factors is not None and lowrank else [])
            for st in stages:
                for n, m in st.grid_points():
                    keys.add(st.key(n, m, bits, batch))
    return sorted(keys)


def _module_for(key: ConfigKey, device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    kind, ih, iw, n, m, kh, kw, sh, sw, ph, pw, groups, _bits, batch = key
    if kind == "linear":
        mod: nn.Module = nn.Linear(n, m, bias=True)
        x = torch.randn(batch, n)
    else:
        mod = nn.Conv2d(n, m, (kh, kw), stride=(sh, sw), padding=(ph, pw), groups=groups, bias=True)
        x = torch.randn(batch, n, ih, iw)
    return mod.eval().to(device), x.to(device)


def measure_table(
    keys: Sequence[ConfigKey],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 5,
    repeats: int = 30,
    sample_ms: float = 0.25,
    seed: int = 0,
    progress: bool = False,
) -> list[LatencyEntry]:
    """Time each configuration as a standalone layer; return the table entries.

    Only float (32-bit) entries are measured: a fake-quantized layer runs at float speed.
    """
    dev = torch.device(device)
    fns = []
    for key in keys:
        mod, x = _module_for(key, dev)
        fns.append(lambda mod=mod, x=x: mod(x))
    timings = time_callables(
        fns,
        device=dev,
        warmup=warmup,
        repeats=repeats,
        sample_ms=sample_ms,
        seed=seed,
        progress=progress,
        desc="layer table",
    )
    entries = []
    for key, t in zip(keys, timings):
        kind, ih, iw, n, m, kh, kw, sh, sw, ph, pw, groups, bits, batch = key
        entries.append(
            LatencyEntry(
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
                median_ms=max(t.median_ms, 1e-6),
                spread_ms=t.spread_ms,
                count=t.count,
                min_ms=max(t.min_ms, 1e-6),
            )
        )
    return entries


def measure_roofline(*, device: torch.device | str = "cpu", repeats: int = 5) -> Roofline:
    """Attainable fp32 MAC/s (matmul), memory bandwidth (copy) and launch overhead (tiny conv)."""
    dev = torch.device(device)
    size = 512
    a, b = torch.randn(size, size, device=dev), torch.randn(size, size, device=dev)
    src = torch.randn(16 * 1024 * 1024, device=dev)
    dst = torch.empty_like(src)
    tiny, tx = _module_for(("conv2d", 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 32, 1), dev)
    t_mm, t_copy, t_tiny = time_callables(
        [lambda: torch.mm(a, b), lambda: dst.copy_(src), lambda: tiny(tx)],
        device=dev,
        warmup=2,
        repeats=repeats,
        sample_ms=2.0,
    )
    peak = size**3 / (t_mm.median_ms * 1e-3)
    bandwidth = 2 * src.numel() * 4 / (t_copy.median_ms * 1e-3)
    return Roofline(
        peak_macs_per_s=MappingProxyType({"fp32": peak}),
        memory_bandwidth_bytes_per_s=bandwidth,
        launch_overhead_ms=t_tiny.median_ms,
    )


LEVEL_JITTER = 0.2
"""Relative spread of group keep ratios around a network-wide level (``random_plan``)."""

RANK_SHARE = (0.0, 0.8)
"""Range of the per-plan probability that a conv/linear layer is factorised (``random_plan``)."""


def random_plan(
    layers: Sequence[LayerSpec],
    rng: random.Random,
    *,
    keep_range: tuple[float, float] = (0.25, 1.0),
    level_jitter: float | None = None,
    rank_probability: float | None = None,
    rank_range: tuple[float, float] = (0.2, 0.9),
    model: str = "",
) -> CompressionPlan:
    """A random fp32 plan: a keep ratio per dependency group, random ranks on some layers.

    By default each group's keep ratio is drawn on its own from ``keep_range``, so most
    plans land near the middle of the MACs range. With ``level_jitter`` a network-wide
    level is drawn from ``keep_range`` first and each group keeps ``level * U(1 - jitter,
    1 + jitter)`` (clamped to ``keep_range``): plans then spread from heavily to lightly
    compressed, as a search's Pareto front does.

    Each conv/linear layer that can be factorised is, with probability
    ``rank_probability``, at a rank drawn from ``rank_range`` of its maximal rank. By
    default that probability is itself drawn per plan from :data:`RANK_SHARE`, so plans
    range from unfactorised to mostly factorised (a search's winners often factorise
    most layers) and the profile's fit can tell the cost of a factorised layer's second
    call from the network's fixed overhead.
    """
    if rank_probability is None:
        rank_probability = rng.uniform(*RANK_SHARE)
    level = rng.uniform(*keep_range) if level_jitter is not None else 1.0
    group_keep: dict[int, float] = {}
    choices: dict[str, LayerChoice] = {}
    for spec in layers:
        keep = 1.0
        if spec.group != NOT_PRUNABLE:
            # one draw per prunable layer, the group's first wins (keeps seeded plans stable)
            if level_jitter is None:
                drawn = rng.uniform(*keep_range)
            else:
                drawn = level * rng.uniform(1.0 - level_jitter, 1.0 + level_jitter)
                drawn = min(keep_range[1], max(keep_range[0], drawn))
            keep = group_keep.setdefault(spec.group, round(drawn, 3))
        rank = None
        if spec.kind in ("conv2d", "linear") and spec.max_rank > 1 and rng.random() < rank_probability:
            rank = max(1, int(round(rng.uniform(*rank_range) * spec.max_rank)))
        if keep < 1.0 or rank is not None:
            choices[spec.name] = LayerChoice(keep_ratio=keep, rank=rank)
    return CompressionPlan(layers=choices, model=model, fingerprint=layers_fingerprint(layers))


def plan_macs(layers: Sequence[LayerSpec], plan: CompressionPlan) -> int:
    """MACs of ``layers`` under ``plan`` (``automc.cost.flops`` arithmetic)."""
    keep = plan.group_keep(layers)
    return sum(layer_geometry(s, plan.choice(s.name), keep).macs for s in layers)


@dataclass(frozen=True)
class Variant:
    """One compressed network timed end to end."""

    model: str
    plan: CompressionPlan
    macs: int
    measured_ms: float


def measure_variants(
    cases: Sequence[ProfileCase],
    plans: Sequence[Sequence[CompressionPlan]],
    compress: CompressFn,
    *,
    device: torch.device | str = "cpu",
    warmup: int = 5,
    repeats: int = 30,
    seed: int = 0,
    statistic: str = "median",
    progress: bool = False,
    desc: str = "networks",
) -> list[Variant]:
    """Compress each case by each of its plans, fold BN and time all networks interleaved.

    ``measured_ms`` is the ``statistic`` (``median`` or ``min``) of each network's samples.
    """
    dev = torch.device(device)
    nets: list[tuple[str, CompressionPlan, nn.Module, torch.Tensor]] = []
    for case, case_plans in zip(cases, plans):
        x = case.example_input.to(dev)
        for plan in case_plans:
            net = case.model if not plan.layers else compress(case.model, plan, case.example_input)
            nets.append((case.name, plan, fold_bn(net).to(dev), x))
    fns = [lambda net=net, x=x: net(x) for _, _, net, x in nets]
    timings = time_callables(
        fns,
        device=dev,
        warmup=warmup,
        repeats=repeats,
        sample_ms=2.0,
        seed=seed,
        progress=progress,
        desc=desc,
    )
    by_name = {c.name: c for c in cases}
    return [
        Variant(
            model=name,
            plan=plan,
            macs=plan_macs(by_name[name].layers, plan),
            measured_ms=t.value(statistic),
        )
        for (name, plan, _, _), t in zip(nets, timings)
    ]


def recheck(
    profile: HwProfile, cases: Sequence[ProfileCase], *, tolerance: float = 0.15
) -> list[tuple[str, float, float]]:
    """Time each case's base model again now and compare it with the profile's prediction.

    The profile times its layer table and its networks minutes apart; a slow period of a
    shared machine during one of them skews every prediction of that model alike, which
    its own validation (timed in the same period) cannot see.

    Returns:
        ``(model, measured_ms, predicted_ms)`` for each base model off by more than ``tolerance``.
    """
    measured = measure_as_profiled(profile, [c.model for c in cases], cases[0].example_input)
    off = []
    for case, ms in zip(cases, measured):
        predicted = predict_latency(case.layers, CompressionPlan(), profile).total_ms
        if abs(ms / predicted - 1.0) > tolerance:
            off.append((case.name, ms, predicted))
    return off


def _features(
    layers: Sequence[LayerSpec], plan: CompressionPlan, profile: HwProfile
) -> tuple[float, float, float, float]:
    """(table-only latency, conv/linear calls, output elements, factorised layers) under ``plan``."""
    bare = predict_latency(layers, plan, profile)
    table_ms = bare.total_ms - profile.latency.network_overhead_ms
    keep = plan.group_keep(layers)
    elems = 0
    for s in layers:
        oh, ow = s.out_hw
        elems += layer_geometry(s, plan.choice(s.name), keep).out_channels * oh * ow
    factorised = sum(1 for name in bare.per_layer_ms if plan.choice(name).rank is not None)
    calls = len(bare.per_layer_ms) + factorised
    return table_ms, float(calls), float(elems * profile.runtime.batch), float(factorised)


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

    The table of ``profile`` is kept; its network-level terms (:func:`fit_network`: scale,
    constant, per-factorised-layer cost) are refitted leave-one-out on ``variants``, all of
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
        table_ms, _, _, factorised = _features(layers, v.plan, bare)
        rows.append((table_ms, factorised, v.measured_ms))
    out = []
    for i, (table_ms, factorised, _) in enumerate(rows):
        scale, overhead, stage = fit_network(rows[:i] + rows[i + 1 :])
        out.append(overhead + scale * table_ms + stage * factorised)
    return out


def validation_info(
    profile: HwProfile, cases: Sequence[ProfileCase], variants: Sequence[Variant]
) -> ValidationInfo:
    """Compare predictions of ``profile`` with measured ``variants``; per model and overall."""
    layers = {c.name: c.layers for c in cases}
    per: dict[str, dict[str, float]] = {}
    pred_all: list[float] = []
    meas_all: list[float] = []
    for case in cases:
        vs = [v for v in variants if v.model == case.name]
        if not vs:
            continue
        pred = [predict_latency(layers[case.name], v.plan, profile).total_ms for v in vs]
        meas = [v.measured_ms for v in vs]
        per[case.name] = fidelity(pred, meas, [float(v.macs) for v in vs])
        pred_all += pred
        meas_all += meas
    if not per:
        raise AutomcError("validation needs at least one measured variant")
    overall = fidelity(pred_all, meas_all)
    return ValidationInfo(
        models=tuple(per),
        n=len(pred_all),
        within_10pct=overall["within_10pct"],
        rmspe=overall["rmspe"],
        spearman=min(d["spearman"] for d in per.values()),
        flops_spearman=min(d["flops_spearman"] for d in per.values()),
        per_model=MappingProxyType({k: MappingProxyType(v) for k, v in per.items()}),
    )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


PHASE_SLOWDOWN_TOLERANCE = 0.05
"""A network phase whose base model ran this much slower than its fastest timing is rescaled."""


def _to_fastest_phase(
    measured: Sequence[Variant], before: Mapping[str, float], after: Mapping[str, float]
) -> tuple[list[Variant], list[str]]:
    """Rescale each model's network timings to the fastest its base model ran while profiling.

    A shared machine has slow periods lasting minutes, longer than one model's network
    phase, so the phase can run slow as a whole, and the per-network fit with it: every
    later prediction of that model would then be high by as much (seen here: 13%). The
    base model (the phase's first network) is also timed alone before the layer table and
    after the last phase; when the phase's own base timing is more than
    ``PHASE_SLOWDOWN_TOLERANCE`` slower than the fastest of the three, all that model's
    networks are scaled by fastest / phase timing. The profile then describes the machine
    at its fastest, as the ``min`` statistic does for each configuration.

    Returns:
        The (rescaled) variants and one note per rescaled model.
    """
    in_phase: dict[str, float] = {}
    for v in measured:
        if not v.plan.layers:
            in_phase.setdefault(v.model, v.measured_ms)
    factor = {}
    notes = []
    for name, ms in in_phase.items():
        fastest = min(ms, before.get(name, ms), after.get(name, ms))
        if ms > fastest * (1.0 + PHASE_SLOWDOWN_TOLERANCE):
            factor[name] = fastest / ms
            notes.append(
                f"{name} networks timed {ms / fastest - 1.0:.0%} slow against its fastest base timing "
                f"({fastest:.3f} ms), scaled by {factor[name]:.3f}"
            )
    return [replace(v, measured_ms=v.measured_ms * factor.get(v.model, 1.0)) for v in measured], notes


def build_profile(
    cases: Sequence[ProfileCase],
    compress: CompressFn,
    *,
    profile_id: str,
    device: str = "cpu",
    threads: int = 2,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 30,
    train_variants: int = 6,
    validate: int = 30,
    channel_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS,
    rank_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS,
    energy_table: str = "energy-45nm",
    onchip_buffer_bytes: int = 1 << 20,
    statistic: str = "min",
    description: str = "",
    seed: int = 0,
    progress: bool = False,
) -> HwProfile:
    """Measure a complete device profile for ``cases`` on this machine (see the module docstring).

    Args:
        cases: the models to profile, with inputs at batch size ``batch``.
        compress: ``compress(model, plan, example_input) -> nn.Module`` (``automc.compress.apply``).
        profile_id: the profile's ``device.id``.
        device: ``cpu`` or ``cuda`` (or ``cuda:N``).
        threads: intra-op threads pinned with ``torch.set_num_threads``.
        batch: batch size of every measurement.
        warmup: warm-up calls per configuration.
        repeats: samples per configuration.
        train_variants: random variants per model used (with the base model) to fit overheads.
        validate: held-out random variants per model used only for the validation figures.
        channel_fractions: channel grid, as fractions of each layer's channels.
        rank_fractions: low-rank grid, as fractions of each layer's maximal rank.
        energy_table: energy table name recorded in the profile.
        onchip_buffer_bytes: on-chip buffer size recorded in the profile.
        statistic: ``min`` or ``median`` of the samples: what every latency in the profile
            (table, overhead fit, validation) means; see the module docstring.
        description: free text; defaults to the processor / GPU name.
        seed: seed of the random variants (training uses ``seed``, validation ``seed + 1``).
        progress: show progress bars.
    """
    if statistic not in STATISTICS:
        raise AutomcError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AutomcError("--device cuda: no CUDA device is available on this machine")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if not description:
        description = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
        description = f"{description}, {threads} threads"
        if hasattr(os, "getloadavg"):
            description += f", 1-min load average {os.getloadavg()[0]:.1f} at start"
    roofline = measure_roofline(device=dev)
    keys = table_configs(
        [c.layers for c in cases],
        channel_fractions=channel_fractions,
        rank_fractions=rank_fractions,
        batch=batch,
    )

    def time_bases() -> dict[str, float]:
        return {
            c.name: measure_model_ms(
                c.model, c.example_input.to(dev), warmup=warmup, repeats=repeats, statistic=statistic
            )
            for c in cases
        }

    bases_before = time_bases()
    entries = measure_table(keys, device=dev, warmup=warmup, repeats=repeats, seed=seed, progress=progress)
    profile = HwProfile(
        device=DeviceInfo(id=profile_id, kind=dev.type, description=description),
        runtime=RuntimeInfo(
            framework="torch",
            version=torch.__version__.split("+")[0],
            threads=threads,
            batch=batch,
            dtype="float32",
        ),
        measurement=MeasurementInfo(
            warmup=warmup, repeats=repeats, statistic=statistic, date=_dt.date.today().isoformat()
        ),
        roofline=roofline,
        energy=EnergyInfo(table=energy_table, onchip_buffer_bytes=onchip_buffer_bytes),
        latency=LatencyTable(
            network_overhead_ms=0.0,
            grid=MappingProxyType(
                {"channel_fractions": tuple(channel_fractions), "rank_fractions": tuple(rank_fractions)}
            ),
            entries=tuple(entries),
        ),
    )

    # Every second variant is spread around a network-wide compression level, so the fit
    # sees heavily and lightly compressed networks (its scale and overhead are told apart)
    # and the validation covers both the middle and the ends of the MACs range.
    def mixed_plans(case: ProfileCase, rng: random.Random, n: int) -> list[CompressionPlan]:
        return [
            random_plan(case.layers, rng, level_jitter=LEVEL_JITTER if i % 2 else None, model=case.name)
            for i in range(n)
        ]

    rng = random.Random(seed)
    train_plans = [[CompressionPlan()] + mixed_plans(c, rng, train_variants) for c in cases]
    vrng = random.Random(seed + 1)
    val_plans = [mixed_plans(c, vrng, validate) for c in cases]
    # Each model's fit and held-out networks are timed in ONE interleaved run, so both see
    # the same machine state; models are timed one after another, not mixed, because
    # mixing thousands of distinct conv shapes evicts the runtime's kernel caches and slows
    # every network in a way a deployed model running alone never sees.
    measured = []
    for case, tp, vp in zip(cases, train_plans, val_plans):
        measured += measure_variants(
            [case],
            [tp + vp],
            compress,
            device=dev,
            warmup=warmup,
            repeats=repeats,
            seed=seed,
            statistic=statistic,
            progress=progress,
            desc=f"networks ({case.name})",
        )
    measured, notes = _to_fastest_phase(measured, bases_before, time_bases())
    if notes:
        profile = replace(
            profile, device=replace(profile.device, description=f"{description}; {'; '.join(notes)}")
        )
    n_fit = {c.name: len(tp) for c, tp in zip(cases, train_plans)}
    seen: dict[str, int] = {}
    train: list[Variant] = []
    held_out: list[Variant] = []
    for v in measured:
        seen[v.model] = seen.get(v.model, 0) + 1
        (train if seen[v.model] <= n_fit[v.model] else held_out).append(v)
    by_name = {c.name: c for c in cases}
    rows = [_features(by_name[v.model].layers, v.plan, profile) for v in train]
    measured_ms = [v.measured_ms for v in train]
    scale, c0, c_layer, c_elem = fit_overhead([(*r[:3], m) for r, m in zip(rows, measured_ms)])
    networks = []
    for case in cases:
        own = [(r[0], r[3], m) for r, m, v in zip(rows, measured_ms, train) if v.model == case.name]
        net_scale, net_c0, net_stage = fit_network(own)
        networks.append(
            NetworkFit(
                model=case.name,
                fingerprint=layers_fingerprint(case.layers),
                table_scale=net_scale,
                network_overhead_ms=net_c0,
                extra_stage_ms=net_stage,
            )
        )
    profile = replace(
        profile,
        latency=replace(
            profile.latency,
            table_scale=scale,
            network_overhead_ms=c0,
            layer_overhead_ms=c_layer,
            elementwise_ns_per_element=c_elem * 1e6,
            networks=tuple(networks),
        ),
    )
    if validate > 0:
        profile = replace(profile, validation=validation_info(profile, cases, held_out))
    return profile
