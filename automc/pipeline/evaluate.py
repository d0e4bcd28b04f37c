"""Evaluating one candidate: price it, and only if it is within budget compress and score it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from automc.errors import AutomcError
from automc.plan import CompressionPlan, LayerSpec, Measurement


class Evaluator:
    """Scores one candidate: cost first (microseconds), proxy only if within budget.

    An over-budget candidate gets the values of the cost objectives and its constraint
    values only: the storage records it as priced but not scored, never with a made-up
    accuracy. Picklable, so Ray can ship it to workers. Raises for a failed candidate;
    the controller records the failure with its reason and the search goes on.
    """

    def __init__(
        self,
        *,
        model: Any,
        layers: Sequence[LayerSpec],
        example_input: Any,
        proxy: Any,
        cost_model: Any,
        limits: Mapping[str, float],
        objectives: Sequence[Any],
        seed: int = 0,
    ) -> None:
        self.model = model
        self.layers = list(layers)
        self.example_input = example_input
        self.proxy = proxy
        self.cost_model = cost_model
        self.limits = dict(limits)
        self.objectives = list(objectives)
        self.seed = seed

    def cost(self, plan: CompressionPlan) -> Any:
        """The cost report of ``plan``."""
        return self.cost_model.estimate(self.layers, plan)

    def channel_importance(self) -> dict[int, list[float]]:
        """Group id -> the base model's per-channel magnitude importance (the ``global`` warm
        start ranks channels by it: :func:`automc.compress.prune.group_importance`)."""
        from automc.compress.prune import group_importance

        return group_importance(self.model, self.example_input)

    def __call__(self, candidate: Any) -> Measurement:
        import torch

        from automc import budget, compress

        plan = candidate.plan
        report = self.cost(plan)
        if report.unsupported:
            names = ", ".join(sorted(report.unsupported)[:3])
            raise AutomcError(f"cost model cannot price layer(s) {names}")
        totals = dict(report.total)
        cons = budget.constraints(totals, self.limits)
        info: dict[str, Any] = {"cost": totals}
        if any(v > 0 for v in cons.values()):
            info["proxy_skipped"] = True
            return Measurement(objectives=self._objectives(totals, None), constraints=cons, info=info)
        torch.manual_seed(self.seed)
        calib = self.proxy.calibration_batches()
        compressed = compress.apply(self.model, plan, self.example_input, calib_batches=calib, seed=self.seed)
        metrics = dict(self.proxy.evaluate(compressed, plan))
        info["proxy"] = metrics
        return Measurement(objectives=self._objectives(totals, metrics), constraints=cons, info=info)

    def _objectives(
        self, totals: Mapping[str, float], metrics: Mapping[str, float] | None
    ) -> dict[str, float]:
        """Objective values: costs from ``totals``, the rest from the proxy's ``metrics`` (none when not scored)."""
        out: dict[str, float] = {}
        for o in self.objectives:
            if o.name in totals:
                out[o.name] = float(totals[o.name])
            elif metrics is not None:
                v = float(metrics[o.name])
                if not math.isfinite(v):
                    raise AutomcError(f"proxy returned non-finite {o.name}")
                out[o.name] = v
        return out
