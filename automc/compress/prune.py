"""Structured (channel) pruning of dependency groups with Torch-Pruning.

For every prunable group with ``keep_ratio < 1`` the plan's criterion picks
``kept_channels(channels, keep_ratio)`` channels (the rounding rule the cost model
uses); Torch-Pruning then removes the others from every coupled producer, BatchNorm and
consumer. All groups are scored on the unpruned model first (Li et al.'s "independent"
strategy) and pruned afterwards, so the choice for one group does not depend on the
order in which groups are visited.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from automc.compress import criteria
from automc.compress.criteria import ChannelGroup, CriterionContext
from automc.compress.criteria.magnitude import group_l1_scores
from automc.errors import AutomcError, UnsupportedLayerError
from automc.graph import GraphInfo, trace
from automc.plan import NOT_PRUNABLE, CompressionPlan, LayerSpec, kept_channels

__all__ = [
    "InputCapture",
    "channel_group",
    "expected_channels",
    "group_importance",
    "prune_groups",
    "verify_channels",
]


class InputCapture:
    """``capture(module) -> Tensor``: the inputs ``module`` sees over ``batches`` (cached)."""

    def __init__(self, *, model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
        self.model = model
        self.batches = list(batches)
        self._cache: dict[int, torch.Tensor] = {}

    def __call__(self, module: nn.Module) -> torch.Tensor:
        key = id(module)
        if key not in self._cache:
            seen: list[torch.Tensor] = []

            def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
                seen.append(inputs[0].detach())

            handle = module.register_forward_pre_hook(hook)
            try:
                with torch.no_grad():
                    for x in self.batches:
                        self.model(x)
            finally:
                handle.remove()
            if not seen:
                raise AutomcError("no calibration batch reached the layer whose inputs were requested")
            self._cache[key] = torch.cat(seen, dim=0)
        return self._cache[key]


def channel_group(info: GraphInfo, group_id: int) -> ChannelGroup:
    """The criterion's view of one prunable dependency group of ``info.model``."""
    g = info.groups[group_id]
    return ChannelGroup(
        group=g.id,
        channels=g.channels,
        producers=[(n, info.module(n)) for n in g.producers],
        norms=[(n, info.module(n)) for n in g.norms],
        consumers=[(n, info.module(n), offset) for n, offset, _ in g.consumers],
        mults={n: mult for n, _, mult in g.consumers},
    )


def group_importance(model: nn.Module, example_input: torch.Tensor) -> dict[int, list[float]]:
    """Group id -> Torch-Pruning's ``MagnitudeImportance(p=1)`` of each of its channels in
    ``model`` (the ``tp_l1`` criterion's scores): the L1 of every weight tied to the channel,
    averaged and divided by the group's mean, the scores its ``global_pruning`` ranks across
    groups."""
    info = trace(copy.deepcopy(model).eval(), example_input)
    out: dict[int, list[float]] = {}
    for gid in sorted(info.groups):
        scores = group_l1_scores(channel_group(info, gid), per_layer=False)
        mean = float(scores.mean())
        out[gid] = [float(v) for v in (scores / mean if mean > 0 else scores)]
    return out


def prune_groups(info: GraphInfo, plan: CompressionPlan, ctx: CriterionContext) -> dict[int, list[int]]:
    """Prune ``info.model`` in place as the plan says; returns group id -> kept indices.

    Raises:
        AutomcError: unknown criterion, or a criterion that returned a bad selection.
    """
    keep = plan.group_keep(info.layers)
    todo = [(gid, ratio) for gid, ratio in sorted(keep.items()) if gid != NOT_PRUNABLE and ratio < 1.0]
    if not todo:
        return {}
    criterion = criteria.get(plan.criterion)
    kept: dict[int, list[int]] = {}
    for gid, ratio in todo:
        group = channel_group(info, gid)
        n_keep = kept_channels(group.channels, ratio)
        chosen = [int(i) for i in criterion.select(group, n_keep, ctx)]
        if len(set(chosen)) != n_keep or any(not 0 <= i < group.channels for i in chosen):
            raise AutomcError(
                f"pruning criterion {plan.criterion!r} returned {len(set(chosen))} valid channels for group "
                f"{gid} ({group.channels} channels), expected {n_keep}"
            )
        kept[gid] = sorted(set(chosen))
        criterion.reconstruct(group, kept[gid], ctx)
    with torch.no_grad():
        for gid, idxs in kept.items():
            channels = info.groups[gid].channels
            remove = sorted(set(range(channels)) - set(idxs))
            if remove:
                info.prune_group(gid, remove)
    return kept


def expected_channels(layers: Sequence[LayerSpec], plan: CompressionPlan) -> dict[str, tuple[int, int]]:
    """Layer name -> ``(in_features, out_channels)`` after pruning, by the plan's rounding rule."""
    keep = plan.group_keep(layers)
    out: dict[str, tuple[int, int]] = {}
    for spec in layers:
        n_out = kept_channels(spec.out_channels, keep[spec.group]) if spec.prunable else spec.out_channels
        n_in = sum(kept_channels(ch, keep.get(g, 1.0)) * mult for g, ch, mult in spec.in_segments)
        out[spec.name] = (n_in, n_out)
    return out


def _in_out(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, nn.Conv2d):
        return module.in_channels, module.out_channels
    raise UnsupportedLayerError(f"expected a conv/linear, found {type(module).__name__}")


def verify_channels(model: nn.Module, expected: Mapping[str, tuple[int, int]]) -> None:
    """Check the real channel counts of ``model`` match ``expected`` exactly.

    Raises:
        UnsupportedLayerError: naming the first layer whose shape differs.
    """
    for name, (n_in, n_out) in expected.items():
        module = model.get_submodule(name)
        real = _in_out(module)
        weight = module.weight
        weight_out = int(weight.shape[0]) if isinstance(weight, torch.Tensor) else -1
        if real != (n_in, n_out) or weight_out != n_out:
            raise UnsupportedLayerError(
                f"layer {name!r}: pruning produced in/out {real[0]}/{real[1]} but the plan predicts "
                f"{n_in}/{n_out}; this model's channel coupling is not supported"
            )
