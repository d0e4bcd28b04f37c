"""Setting a search up: data, base model, layer table, bound space, cost model, budgets, proxy.

Everything a search scores candidates with is built once here, before the controller
asks its first plan; budgets that no plan of the space can meet are refused here too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automc.plan import CompressionPlan, LayerSpec

if TYPE_CHECKING:
    from automc.config import SearchConfig
    from automc.pipeline.evaluate import Evaluator
    from automc.space import SearchSpace

SHORT_TRAIN_BATCHES = 32
"""Labelled train batches the ``short_train`` proxy cycles through (fewer when it takes fewer steps)."""
SHORT_TRAIN_BATCH_SIZE = 64

NEAR_CHANCE = 2.0
"""A model whose val accuracy is below this multiple of chance (1 / classes) is reported:
a search on it ranks noise."""


@dataclass(frozen=True)
class SearchSetup:
    """Everything a search scores candidates with: data, base model, layer table, bound
    space, cost model, resolved budget limits and the proxy (adaptive BN or short training)."""

    splits: Any
    base: Any
    base_info: Mapping[str, Any]
    example: Any
    layers: tuple[LayerSpec, ...]
    bound: Any
    cost_model: Any
    base_cost: Mapping[str, float]
    limits: Mapping[str, float]
    proxy: Any

    def cost_fn(self, plan: CompressionPlan) -> Mapping[str, float]:
        """Cost totals of ``plan`` (microseconds: layer table arithmetic, no tracing)."""
        return self.cost_model.estimate(self.layers, plan).total

    def evaluator(self, objectives: Sequence[Any], seed: int = 0) -> Evaluator:
        """The picklable one-candidate scorer of this setup."""
        from automc.pipeline.evaluate import Evaluator

        return Evaluator(
            model=self.base,
            layers=self.layers,
            example_input=self.example,
            proxy=self.proxy,
            cost_model=self.cost_model,
            limits=self.limits,
            objectives=objectives,
            seed=seed,
        )


def warn_if_near_chance(base: Any, splits: Any, model: str) -> bool:
    """Print one warning line on stderr when ``base`` is near chance on ``splits.val``."""
    from automc import train

    acc = train.evaluate(base, splits.val)["acc"]
    chance = 1.0 / splits.num_classes
    if acc >= NEAR_CHANCE * chance:
        return False
    sys.stderr.write(
        f"automc: warning: base model {model} reaches {acc:.1%} val accuracy, near chance "
        f"({chance:.1%}): the search would rank noise; train it longer (--base-epochs), at another "
        "learning rate (--base-lr) or pass trained --weights\n"
    )
    return True


def _base_model(config: SearchConfig, splits: Any, example: Any) -> tuple[Any, dict[str, Any]]:
    """The trained base model: the user's weights, or trained (and cached) with the dataset's recipe."""
    from automc import graph, models, train

    base_cfg = config.base
    if base_cfg.weights:
        net = models.create(
            base_cfg.model,
            num_classes=splits.num_classes,
            in_channels=splits.in_channels,
            weights=base_cfg.weights,
        )
        return net, {"weights": str(base_cfg.weights)}
    untrained = models.create(base_cfg.model, num_classes=splits.num_classes, in_channels=splits.in_channels)
    graph.require_modelled(untrained, example)
    return train.base_model(
        base_cfg.model,
        config.data.dataset,
        epochs=base_cfg.epochs,
        lr=base_cfg.lr,
        seed=config.seed,
        splits=splits,
        data_root=config.data.root,
        progress=config.output.progress,
    )


def _proxy(config: SearchConfig, splits: Any, base: Any, *, kl_teacher: bool, val_limit: int | None) -> Any:
    from automc.proxy import ProxyData, create

    short = config.proxy.name == "short_train"
    data = ProxyData.from_splits(
        splits,
        calib_batches=config.proxy.calib_batches,
        calib_batch_size=config.proxy.batch_size,
        val_limit=val_limit,
        train_batches=min(config.proxy.steps, SHORT_TRAIN_BATCHES) if short else 0,
        train_batch_size=SHORT_TRAIN_BATCH_SIZE,
        seed=config.seed,
    )
    if short:
        from automc.proxy import ShortTrainProxy

        return ShortTrainProxy(data=data, teacher=base, steps=config.proxy.steps)
    return create(config.proxy.name, data=data, teacher=base if kl_teacher else None)


def prepare(
    config: SearchConfig,
    *,
    space: SearchSpace,
    budgets: Sequence[Any],
    profile: Any = None,
    kl_teacher: bool = False,
    val_limit: int | None = None,
) -> SearchSetup:
    """Build the :class:`SearchSetup` of ``config``.

    Args:
        config: the run's configuration (data, base model, proxy, seed).
        space: the loaded search space, bound here to the base model's layers.
        budgets: parsed budget specs, resolved against the base model's cost; the
            cheapest plan of the space must meet them.
        profile: the loaded device profile (``None``: no latency or energy figures).
        kl_teacher: give the ``adaptive_bn`` proxy the base model as teacher (``kl`` metric).
        val_limit: score on at most this many val samples (benchmarks).
    """
    import torch

    from automc import budget as budget_mod
    from automc import cost as cost_mod
    from automc import data as data_mod
    from automc import graph

    threads = int(os.environ.get("AUTOMC_THREADS") or os.environ.get("OMP_NUM_THREADS") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    splits = data_mod.load(config.data.dataset, root=config.data.root, seed=config.seed)
    example = splits.train[0][0].unsqueeze(0)
    base, base_info = _base_model(config, splits, example)
    base.eval()
    layers = tuple(graph.layers(base, example))
    warn_if_near_chance(base, splits, config.base.model)
    bound = space.bind(layers, model=config.base.model)
    cost_model = cost_mod.CostModel(profile=profile)

    def cost_fn(plan: CompressionPlan) -> Mapping[str, float]:
        return cost_model.estimate(layers, plan).total

    base_cost = dict(cost_fn(CompressionPlan(model=config.base.model)))
    limits = budget_mod.resolve(list(budgets), base_cost)
    budget_mod.check_feasible_space(bound, cost_fn, limits)
    return SearchSetup(
        splits=splits,
        base=base,
        base_info=base_info,
        example=example,
        layers=layers,
        bound=bound,
        cost_model=cost_model,
        base_cost=base_cost,
        limits=limits,
        proxy=_proxy(config, splits, base, kl_teacher=kl_teacher, val_limit=val_limit),
    )
