"""Gradient criterion: Gate Decorator's first-order Taylor importance (``taylor``).

Dong et al. (NeurIPS 2019): a gate ``phi = 1`` multiplies each channel (on the output of
the group's BatchNorms, else of its producers); the importance is
``|sum over batches of phi * dL/dphi|`` with the cross-entropy loss, summed over the gate
sites of the group. Without targets the model's own arg-max predictions serve as labels
(a KL to its own output would have zero gradient at ``phi = 1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from automc.compress.criteria import ChannelGroup, CriterionContext
from automc.compress.criteria.magnitude import top_k
from automc.errors import AutomcError

__all__ = ["Taylor"]


class Taylor:
    """Gate Decorator importance. One backward pass per batch serves every group of a model:
    the per-module gate gradients are computed for all BatchNorms (and all conv/linear
    producers) at once on the first ``select`` and cached for that context."""

    name = "taylor"
    needs_data = True

    def __init__(self) -> None:
        self._cache_key: tuple[int, int] | None = None
        self._cache: dict[int, torch.Tensor] = {}

    def _module_scores(self, ctx: CriterionContext) -> dict[int, torch.Tensor]:
        """``id(module) -> sum over batches of phi * dL/dphi`` (signed) for every gate site."""
        key = (id(ctx), id(ctx.model))
        if self._cache_key == key:
            return self._cache
        gated = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Conv2d, nn.Linear)
        sites = [m for m in ctx.model.modules() if isinstance(m, gated)]
        first = next(ctx.model.parameters())
        gates: dict[int, torch.Tensor] = {}

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            gate = gates.get(id(module))
            if gate is None:
                gate = torch.ones(
                    output.shape[1], dtype=output.dtype, device=output.device, requires_grad=True
                )
                gates[id(module)] = gate
            return output * gate.view(1, -1, *([1] * (output.dim() - 2)))

        handles = [site.register_forward_hook(hook) for site in sites]
        totals: dict[int, torch.Tensor] = {}
        try:
            with torch.enable_grad():
                for i, batch in enumerate(ctx.batches):
                    logits = ctx.model(batch.to(first.device))
                    if i < len(ctx.targets):
                        labels = ctx.targets[i].to(logits.device)
                    else:
                        labels = logits.detach().argmax(dim=1)
                    loss = F.cross_entropy(logits, labels)
                    ids = list(gates)
                    grads = torch.autograd.grad(loss, [gates[k] for k in ids], allow_unused=True)
                    for k, grad in zip(ids, grads):
                        if grad is not None:
                            totals[k] = totals.get(k, 0) + (gates[k].detach() * grad).double().cpu()
        finally:
            for h in handles:
                h.remove()
        self._cache_key, self._cache = key, totals
        return totals

    def scores(self, group: ChannelGroup, ctx: CriterionContext) -> torch.Tensor:
        """Per-channel importance ``|sum_batches phi dL/dphi|`` summed over the group's gate sites
        (its BatchNorms, or its producers when it has none)."""
        if not ctx.batches:
            raise AutomcError("pruning criterion 'taylor' needs calibration batches (data-driven criterion)")
        sites = [m for _, m in group.norms] or [m for _, m in group.producers]
        totals = self._module_scores(ctx)
        out = torch.zeros(group.channels, dtype=torch.float64)
        for site in sites:
            if id(site) in totals:
                out += totals[id(site)].abs()
        return out

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        return top_k(self.scores(group, ctx), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None
