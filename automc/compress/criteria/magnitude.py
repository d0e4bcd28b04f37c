"""Magnitude criteria ``l1``, ``l2`` (filter norms) and the ``random`` baseline (data-free).

``l1`` is Li et al. (ICLR 2017, "Pruning Filters for Efficient ConvNets"): a channel's
importance is the sum of ``|w|`` over its filter, summed over all producers of the
dependency group (so a residual group ranks channels by all the convs writing them).
``l2`` uses the Euclidean norm of the concatenated filters instead. ``group_l1`` takes the
weights Torch-Pruning's group magnitude ties to a channel: the per-channel L1 of every weight
tied to it (producers' filters, BatchNorm scales, consumers' input weights), each layer's
scores divided by their mean, then averaged over the layers, so no single wide layer
outvotes the rest of the group. ``tp_l1`` is Torch-Pruning's own ranking
(``MagnitudeImportance(p=1)``, its defaults): the same L1s averaged as they are, so the
layers with the most weight per channel lead. Ties are broken by channel index (lower
index kept), so the choice is deterministic. ``random`` keeps a uniformly random subset,
seeded by ``ctx.seed`` and the group id.
"""

from __future__ import annotations

import torch

from automc.compress.criteria import ChannelGroup, CriterionContext
from automc.errors import AutomcError

__all__ = [
    "L1",
    "L2",
    "GroupL1",
    "RandomCriterion",
    "TorchPruningL1",
    "group_l1_scores",
    "producer_rows",
    "top_k",
]


def producer_rows(group: ChannelGroup, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``channels x features``: the producers' filters side by side, in ``dtype``."""
    if not group.producers:
        raise AutomcError(f"dependency group {group.group} has no producer layer")
    rows = []
    for _, module in group.producers:
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        rows.append(weight.detach().reshape(group.channels, -1).to(dtype))
    return torch.cat(rows, dim=1)


def top_k(scores: torch.Tensor, n_keep: int) -> list[int]:
    """Sorted indices of the ``n_keep`` largest scores (ties: lower index first)."""
    order = torch.argsort(-scores, stable=True)
    return sorted(int(i) for i in order[:n_keep])


class L1:
    name = "l1"
    needs_data = False

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        return top_k(producer_rows(group).abs().sum(dim=1), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None


def group_l1_scores(group: ChannelGroup, *, per_layer: bool = True) -> torch.Tensor:
    """Per-channel ``group_l1`` importance (see the module docstring); ``per_layer=False``:
    ``tp_l1``'s, the layers' L1s averaged without dividing each by its mean first, and
    without depthwise convs (Torch-Pruning prunes them with a function of their own that its
    ``MagnitudeImportance`` does not score)."""
    from torch import nn

    def weight(module: nn.Module) -> torch.Tensor:
        w = module.weight
        assert isinstance(w, torch.Tensor)
        return w.detach().float()

    def depthwise(module: nn.Module) -> bool:
        return isinstance(module, nn.Conv2d) and module.groups > 1 and weight(module).shape[1] == 1

    c = group.channels
    producers = {name for name, _ in group.producers}
    parts = [
        weight(producer).reshape(c, -1).abs().sum(dim=1)
        for _, producer in group.producers
        if per_layer or not depthwise(producer)
    ]
    parts += [weight(bn).abs() for _, bn in group.norms if getattr(bn, "weight", None) is not None]
    for name, module, offset in group.consumers:
        w = weight(module)
        if isinstance(module, nn.Linear):
            mult = group.mults.get(name, 1)
            cols = w[:, offset * mult : (offset + c) * mult].reshape(w.shape[0], c, mult)
            parts.append(cols.abs().sum(dim=(0, 2)))
        elif isinstance(module, nn.Conv2d) and module.groups == 1:
            parts.append(w[:, offset : offset + c].abs().sum(dim=(0, 2, 3)))
        elif depthwise(module) and per_layer and name not in producers:
            # one filter per channel, counted once where it also writes the group
            parts.append(w[offset : offset + c].abs().sum(dim=(1, 2, 3)))
    if per_layer:
        parts = [p / p.mean() if float(p.mean()) > 0 else p for p in parts]
    return torch.stack(parts).mean(dim=0)


class GroupL1:
    name = "group_l1"
    needs_data = False

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        return top_k(group_l1_scores(group), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None


class TorchPruningL1:
    name = "tp_l1"
    needs_data = False

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        return top_k(group_l1_scores(group, per_layer=False), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None


class L2:
    name = "l2"
    needs_data = False

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        return top_k(producer_rows(group).norm(dim=1), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None


class RandomCriterion:
    name = "random"
    needs_data = False

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        gen = torch.Generator().manual_seed(int(ctx.seed) * 1_000_003 + int(group.group))
        return sorted(int(i) for i in torch.randperm(group.channels, generator=gen)[:n_keep])

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None
