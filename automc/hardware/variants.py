"""Random compressed variants of the profiled models, timed end to end, and the validation figures.

A profile's network-level terms are fitted to random variants of each model
(:func:`random_plan`) and checked on further variants never used in the fit
(:func:`validation_info`).
"""

from __future__ import annotations

import functools
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from automc.cost.flops import layer_geometry
from automc.cost.latency import block_layout_keep, block_layout_rank, fidelity, predict_latency
from automc.errors import AutomcError
from automc.hardware.timing import (
    DEFAULT_TIMING,
    NETWORK_SAMPLE_MS,
    TimingProtocol,
    fold_bn,
    time_callables,
)
from automc.plan import LAYER_KINDS, NOT_PRUNABLE, CompressionPlan, LayerChoice, LayerSpec, layers_fingerprint
from automc.schema.hw_profile import HwProfile, ValidationInfo

if TYPE_CHECKING:
    from automc.hardware.runtimes import Runtime

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


LEVEL_JITTER = 0.2
"""Relative spread of group keep ratios around a network-wide level (``random_plan``)."""

RANK_SHARE = (0.0, 0.8)
"""Range of the per-plan probability that a conv/linear layer is factorised (``random_plan``)."""

INT8_SHARE = (0.0, 1.0)
"""Range of the per-plan probability that a layer runs at int8 (``random_plan`` on a runtime
that executes int8)."""


def random_plan(
    layers: Sequence[LayerSpec],
    rng: random.Random,
    *,
    keep_range: tuple[float, float] = (0.25, 1.0),
    level_jitter: float | None = None,
    rank_probability: float | None = None,
    rank_range: tuple[float, float] = (0.2, 0.9),
    model: str = "",
    int8_share: tuple[float, float] | None = None,
    channel_block: int = 0,
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

    With ``int8_share`` (a runtime that executes int8), each layer runs at 8 weight and
    activation bits with a per-plan probability drawn from that range, so plans mix int8
    and fp32 layers in every proportion; the draws come after all others, so the pruning
    and ranks of a seeded plan do not depend on it.

    With ``channel_block`` above 1, every drawn keep ratio and rank is moved to the nearest
    channel count on the runtime's blocked layout, as a search bound for that runtime moves
    them (``automc.space.SearchSpace.bind``); the draws are the same.
    """
    members: dict[int, list[LayerSpec]] = {}
    for spec in layers:
        if spec.group != NOT_PRUNABLE:
            members.setdefault(spec.group, []).append(spec)
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
            drawn = round(drawn, 3)
            if spec.group not in group_keep and channel_block > 1:
                drawn = block_layout_keep(drawn, members[spec.group], channel_block)
            keep = group_keep.setdefault(spec.group, drawn)
        rank = None
        if spec.kind in ("conv2d", "linear") and spec.max_rank > 1 and rng.random() < rank_probability:
            rank = max(1, int(round(rng.uniform(*rank_range) * spec.max_rank)))
            if channel_block > 1:
                rank = block_layout_rank(rank, spec.max_rank, channel_block)
        if keep < 1.0 or rank is not None:
            choices[spec.name] = LayerChoice(keep_ratio=keep, rank=rank)
    if int8_share is not None:
        share = rng.uniform(*int8_share)
        for spec in layers:
            if spec.kind in LAYER_KINDS and rng.random() < share:
                old = choices.get(spec.name, LayerChoice())
                choices[spec.name] = replace(old, w_bits=8, a_bits=8)
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


def network_fns(
    nets: Sequence[tuple[nn.Module, CompressionPlan, torch.Tensor]],
    runtime: Runtime | None,
    *,
    threads: int,
    workdir: Path,
    device: torch.device | str = "cpu",
) -> list[Callable[[], Any]]:
    """One call of each network as deployed on ``runtime``.

    ``None`` or the torch runtime: the BN-folded module on ``device``. Another runtime: the
    network exported through it (the layers its plan puts at <= 8 bits as int8, calibrated
    on the example input) and loaded as a session with ``threads`` intra-op threads.
    """
    from automc.hardware.runtimes import int8_layers

    fns: list[Callable[[], Any]] = []
    dev = torch.device(device)
    for i, (net, plan, x) in enumerate(nets):
        if runtime is None or runtime.name == "torch":
            fns.append(functools.partial(fold_bn(net).to(dev), x.to(dev)))
            continue
        int8 = int8_layers(plan) if "int8" in runtime.precisions else frozenset()
        artifact = runtime.export(
            net, x, workdir / f"net{i}{runtime.suffix}", int8_layers=int8, calib=[x] if int8 else ()
        )
        fns.append(functools.partial(runtime.session(artifact, threads=threads), x.numpy()))
    return fns


def measure_variants(
    cases: Sequence[ProfileCase],
    plans: Sequence[Sequence[CompressionPlan]],
    compress: CompressFn,
    protocol: TimingProtocol = DEFAULT_TIMING,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "networks",
    runtime: Runtime | None = None,
) -> list[Variant]:
    """Compress each case by each of its plans and time the networks as deployed on ``runtime``
    (:func:`network_fns`; torch eager when ``None``), all of them interleaved, so that a slow
    period of a shared machine slows them alike (runtime sessions' workers do not spin:
    ``automc.hardware.runtimes.ort_session.SPINNING``).

    Each network is timed by ``protocol`` with samples of :data:`NETWORK_SAMPLE_MS`; a
    runtime's sessions get its ``session_threads``. ``measured_ms`` is the protocol's
    ``statistic`` (``median`` or ``min``) of each network's samples.
    """
    nets: list[tuple[str, CompressionPlan, nn.Module, torch.Tensor]] = []
    for case, case_plans in zip(cases, plans):
        for plan in case_plans:
            net = case.model if not plan.layers else compress(case.model, plan, case.example_input)
            nets.append((case.name, plan, net, case.example_input))
    with tempfile.TemporaryDirectory(prefix="automc-networks-") as tmp:
        fns = network_fns(
            [(net, plan, x) for _, plan, net, x in nets],
            runtime,
            threads=protocol.session_threads,
            workdir=Path(tmp),
            device=device,
        )
        timings = time_callables(
            fns,
            replace(protocol, sample_ms=NETWORK_SAMPLE_MS),
            device=str(device),
            progress=progress,
            desc=desc,
        )
        del fns
    by_name = {c.name: c for c in cases}
    return [
        Variant(
            model=name,
            plan=plan,
            macs=plan_macs(by_name[name].layers, plan),
            measured_ms=t.value(protocol.statistic),
        )
        for (name, plan, _, _), t in zip(nets, timings)
    ]


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
