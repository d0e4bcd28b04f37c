"""Measure a device profile (``schema: automc/hw-profile``) on the machine this runs on.

Steps (what ``automc profile`` runs):
    1. Roofline: attainable MAC/s (large matmul), memory bandwidth (large copy) and the
       launch overhead of a trivial conv (:mod:`automc.hardware.table`).
    2. Table: every layer configuration the models and their compressed variants can take,
       at every precision the runtime executes (fp32 and int8 on ONNX Runtime CPU), each
       timed as a standalone ``Conv2d``/``Linear`` with a bias, exported through the runtime
       (:mod:`automc.hardware.table`).
    3. Overhead fit: a few *training* networks (each base model plus random compressed
       variants, every second one spread around a network-wide compression level so heavily
       and lightly compressed networks are both seen; on a runtime with int8 kernels each
       plan also puts a random share of its layers at int8, and the base model is timed with
       every layer int8 as well) are exported through the runtime
       and timed end to end; the network-level terms of
       ``automc.cost.latency`` are fitted to them by non-negative relative least squares
       (:mod:`automc.hardware.fitting`).
    4. Validation: ``validate`` further random variants per model, never used above, are
       timed end to end and compared with the predictions (:mod:`automc.hardware.variants`).

Each model's fit and validation networks are timed in one phase. The base model is also
timed alone before the table and after the last phase; a phase that ran slow as a whole
(a slow period of a shared machine lasts minutes) is scaled back to the fastest of those
timings before steps 3-4 (:func:`_to_fastest_phase`; noted in ``device.description``).
Every timing follows :mod:`automc.hardware.timing`; the profile's ``statistic`` (``min`` by
default) decides which sample statistic every latency in it means.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch

from automc.cost.latency import DEFAULT_CHANNEL_FRACTIONS, predict_latency
from automc.errors import AutomcError
from automc.hardware import cpu
from automc.hardware.fitting import _features, fit_network_mixed, fit_overhead, fit_row
from automc.hardware.table import measure_roofline, measure_table, table_configs
from automc.hardware.timing import TimingProtocol, measure_as_profiled, measure_model_ms, pinned_threads
from automc.hardware.variants import (
    INT8_SHARE,
    LEVEL_JITTER,
    CompressFn,
    ProfileCase,
    Variant,
    measure_variants,
    random_plan,
    validation_info,
)
from automc.plan import LAYER_KINDS, CompressionPlan, LayerChoice, layers_fingerprint
from automc.schema.hw_profile import (
    PRECISION_BITS,
    STATISTICS,
    DeviceInfo,
    EnergyInfo,
    HwProfile,
    LatencyTable,
    MeasurementInfo,
    NetworkFit,
    RuntimeInfo,
)

if TYPE_CHECKING:
    from automc.hardware.runtimes import Runtime


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


@dataclass(frozen=True, kw_only=True)
class ProfileSettings:
    """What a device profile is measured with (``automc profile``'s options).

    Attributes:
        profile_id: the profile's ``device.id``.
        device: ``cpu`` or ``cuda`` (or ``cuda:N``).
        threads: intra-op threads pinned while measuring (restored afterwards).
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
            (table, overhead fit, validation) means; see :mod:`automc.hardware.timing`.
        description: free text; defaults to the processor / GPU name.
        seed: seed of the random variants (training uses ``seed``, validation ``seed + 1``)
            and of the timing rounds.
    """

    profile_id: str
    device: str = "cpu"
    threads: int = 2
    batch: int = 1
    warmup: int = 5
    repeats: int = 30
    train_variants: int = 30
    validate: int = 30
    channel_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS
    rank_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS
    energy_table: str = "energy-45nm"
    onchip_buffer_bytes: int = 1 << 20
    statistic: str = "min"
    description: str = ""
    seed: int = 0

    @property
    def timing(self) -> TimingProtocol:
        """The timing protocol of every measurement: warm-up, repeats, statistic, threads, seed."""
        return TimingProtocol(
            warmup=self.warmup,
            repeats=self.repeats,
            statistic=self.statistic,
            threads=self.threads,
            seed=self.seed,
        )


def build_profile(
    cases: Sequence[ProfileCase],
    compress: CompressFn,
    settings: ProfileSettings,
    *,
    runtime: Runtime | None = None,
    progress: bool = False,
) -> HwProfile:
    """Measure a complete device profile for ``cases`` on this machine (see the module docstring).

    Args:
        cases: the models to profile, with inputs at batch size ``settings.batch``.
        compress: ``compress(model, plan, example_input) -> nn.Module`` (``automc.compress.apply``).
        settings: what the profile is measured with.
        runtime: the deployment runtime measured (``automc.hardware.runtimes.get``); ``None``
            is torch eager on ``settings.device``. Its name, version, execution provider, graph
            optimisation and precisions are recorded in the profile's ``runtime`` section.
        progress: show progress bars.
    """
    timing = settings.timing
    description = settings.description
    if settings.statistic not in STATISTICS:
        raise AutomcError(f"statistic must be one of {', '.join(STATISTICS)}, got {settings.statistic!r}")
    dev = torch.device(settings.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AutomcError("--device cuda: no CUDA device is available on this machine")
    if runtime is None:
        from automc.hardware.runtimes import get

        runtime = get("torch", device=dev.type)
    precisions = tuple(sorted(runtime.precisions, key=lambda p: -PRECISION_BITS[p]))
    widths = tuple(PRECISION_BITS[p] for p in precisions)
    int8_share = INT8_SHARE if "int8" in precisions else None
    with pinned_threads(settings.threads):
        torch.manual_seed(settings.seed)
        if not description:
            description = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
            description = f"{description}, {runtime.name} {runtime.provider}, {settings.threads} threads"
            if hasattr(os, "getloadavg"):
                description += f", 1-min load average {os.getloadavg()[0]:.1f} at start"
        roofline = measure_roofline(device=dev)
        keys = table_configs(
            [c.layers for c in cases],
            channel_fractions=settings.channel_fractions,
            rank_fractions=settings.rank_fractions,
            batch=settings.batch,
            bits=widths,
            block=runtime.channel_block,
        )

        def time_networks(
            which: Sequence[ProfileCase], plans: Sequence[Sequence[CompressionPlan]], desc: str
        ) -> list[Variant]:
            return measure_variants(
                which, plans, compress, timing, device=dev, progress=progress, desc=desc, runtime=runtime
            )

        def time_bases() -> dict[str, float]:
            """Each base model timed alone on the runtime (the phase rescale's reference)."""
            if runtime.name != "torch":
                bases = time_networks(cases, [[CompressionPlan()] for _ in cases], "base models")
                return {v.model: v.measured_ms for v in bases}
            return {
                c.name: measure_model_ms(
                    c.model,
                    c.example_input.to(dev),
                    warmup=settings.warmup,
                    repeats=settings.repeats,
                    statistic=settings.statistic,
                )
                for c in cases
            }

        bases_before = time_bases()
        entries = measure_table(keys, timing, device=dev, progress=progress, runtime=runtime)
        profile = HwProfile(
            device=DeviceInfo(id=settings.profile_id, kind=dev.type, description=description),
            runtime=RuntimeInfo(
                framework=runtime.name,
                version=runtime.version.split("+")[0],
                threads=settings.threads,
                batch=settings.batch,
                dtype="float32",
                provider=runtime.provider,
                graph_optimization=runtime.graph_optimization,
                precisions=precisions,
                channel_block=runtime.channel_block,
                isa=cpu.isa() if dev.type == "cpu" else (),
                cpu=(cpu.cpu_model() or "") if dev.type == "cpu" else "",
            ),
            measurement=MeasurementInfo(
                warmup=settings.warmup,
                repeats=settings.repeats,
                statistic=settings.statistic,
                date=_dt.date.today().isoformat(),
            ),
            roofline=roofline,
            energy=EnergyInfo(table=settings.energy_table, onchip_buffer_bytes=settings.onchip_buffer_bytes),
            latency=LatencyTable(
                network_overhead_ms=0.0,
                grid=MappingProxyType(
                    {
                        "channel_fractions": tuple(settings.channel_fractions),
                        "rank_fractions": tuple(settings.rank_fractions),
                    }
                ),
                entries=tuple(entries),
                grid_block=runtime.channel_block,
            ),
        )

        # Every second variant is spread around a network-wide compression level, so the fit
        # sees heavily and lightly compressed networks (its scale and overhead are told apart)
        # and the validation covers both the middle and the ends of the MACs range. On a
        # runtime with a blocked channel layout every second pair keeps its channels on it, as
        # a search with a latency budget does (``SearchSpace.bind``): the fit sees networks
        # with and without convs off the layout, and the validation covers both.
        def mixed_plans(case: ProfileCase, rng: random.Random, n: int) -> list[CompressionPlan]:
            return [
                random_plan(
                    case.layers,
                    rng,
                    level_jitter=LEVEL_JITTER if i % 2 else None,
                    model=case.name,
                    int8_share=int8_share,
                    channel_block=runtime.channel_block if i // 2 % 2 else 0,
                )
                for i in range(n)
            ]

        # The fit also sees each base model whole at int8 (with int8 kernels): the network a
        # latency budget drives the search towards, and the only kind whose residual streams all
        # run int8 (``NetworkFit.int8_add_ns_per_element``), which random shares rarely reach.
        def anchors(case: ProfileCase) -> list[CompressionPlan]:
            if int8_share is None:
                return [CompressionPlan()]
            int8 = {s.name: LayerChoice(w_bits=8, a_bits=8) for s in case.layers if s.kind in LAYER_KINDS}
            return [
                CompressionPlan(),
                CompressionPlan(layers=int8, model=case.name, fingerprint=layers_fingerprint(case.layers)),
            ]

        rng = random.Random(settings.seed)
        train_plans = [anchors(c) + mixed_plans(c, rng, settings.train_variants) for c in cases]
        vrng = random.Random(settings.seed + 1)
        val_plans = [mixed_plans(c, vrng, settings.validate) for c in cases]
        # Each model's fit and held-out networks are timed in ONE interleaved run, so both see
        # the same machine state; models are timed one after another, not mixed, because
        # mixing thousands of distinct conv shapes evicts the runtime's kernel caches and slows
        # every network in a way a deployed model running alone never sees.
        measured = []
        for case, tp, vp in zip(cases, train_plans, val_plans):
            measured += time_networks([case], [tp + vp], f"networks ({case.name})")
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
            own = [fit_row(r, m) for r, m, v in zip(rows, measured_ms, train) if v.model == case.name]
            t = fit_network_mixed(own)
            networks.append(
                NetworkFit(
                    model=case.name,
                    fingerprint=layers_fingerprint(case.layers),
                    table_scale=t.table_scale,
                    network_overhead_ms=t.network_overhead_ms,
                    extra_stage_ms=t.extra_stage_ms,
                    int8_table_scale=t.int8_table_scale if int8_share is not None else None,
                    generic_table_scale=t.generic_table_scale,
                    int8_generic_table_scale=t.int8_generic_table_scale,
                    transition_ns_per_element=t.transition_ns_per_element,
                    int8_add_ns_per_element=t.int8_add_ns_per_element,
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
        if settings.validate > 0:
            profile = replace(profile, validation=validation_info(profile, cases, held_out))
        return profile


def recheck(
    profile: HwProfile,
    cases: Sequence[ProfileCase],
    *,
    tolerance: float = 0.15,
    runtime: Runtime | None = None,
) -> list[tuple[str, float, float]]:
    """Time each case's base model again now and compare it with the profile's prediction.

    The profile times its layer table and its networks minutes apart; a slow period of a
    shared machine during one of them skews every prediction of that model alike, which
    its own validation (timed in the same period) cannot see.

    Returns:
        ``(model, measured_ms, predicted_ms)`` for each base model off by more than ``tolerance``
        (timed on ``runtime``, the profile's; ``None``: torch eager).
    """
    if runtime is None or runtime.name == "torch":
        measured = [measure_as_profiled(profile, [c.model], c.example_input)[0] for c in cases]
    else:
        bases = measure_variants(
            cases,
            [[CompressionPlan()] for _ in cases],
            lambda model, plan, x: model,
            TimingProtocol.as_profiled(profile),
            runtime=runtime,
        )
        measured = [v.measured_ms for v in bases]
    off = []
    for case, ms in zip(cases, measured):
        predicted = predict_latency(case.layers, CompressionPlan(), profile).total_ms
        if abs(ms / predicted - 1.0) > tolerance:
            off.append((case.name, ms, predicted))
    return off
