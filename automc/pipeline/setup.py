"""Setting a search up: data, base model, layer table, bound space, cost model, budgets, proxy.

Everything a search scores candidates with is built once here, before the controller
asks its first plan; budgets that no plan of the space can meet are refused here too.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automc.errors import AutomcError, one_line
from automc.plan import CompressionPlan, LayerSpec

if TYPE_CHECKING:
    from automc.config import SearchConfig
    from automc.pipeline.evaluate import Evaluator
    from automc.space import SearchSpace

Score = Callable[[Any, Any], Mapping[str, float]]
"""``(model, dataset) -> {"acc", ...}``: how a run measures a model's accuracy (:func:`scorer`)."""

SHORT_TRAIN_BATCHES = 32
"""Labelled train batches the ``short_train`` proxy cycles through (fewer when it takes fewer steps)."""
SHORT_TRAIN_BATCH_SIZE = 64

NEAR_CHANCE = 2.0
"""A model whose val accuracy is below this multiple of chance (1 / classes) is reported:
a search on it ranks noise (see :func:`near_chance`)."""


def near_chance(num_classes: int) -> float:
    """The accuracy below which a model of ``num_classes`` classes is "near chance":
    ``NEAR_CHANCE`` x chance, at most halfway from chance to 100% (with two classes 75%, not
    100%: a binary classifier at 95% is not near chance).

    Raises:
        AutomcError: fewer than two classes (a classifier needs two).
    """
    if num_classes < 2:
        raise AutomcError(f"the dataset has {num_classes} class(es); a classifier needs at least two")
    chance = 1.0 / num_classes
    return min(NEAR_CHANCE * chance, (1.0 + chance) / 2)


@dataclass(frozen=True, kw_only=True)
class UserParts:
    """What a Python-API caller brings in place of the configured parts (``None``: the configured one).

    Attributes:
        model: the user's own ``nn.Module`` as the base (``config.base.model`` names it in
            the records); used as it is unless ``base.epochs`` asks to train it.
        data: the user's own ``automc.data.Splits`` instead of loading ``config.data.dataset``
            (``config.data.augment`` still applies; the conversion fields do not).
        evaluate: the user's ``(model, dataset) -> {"acc", ...}`` for the base model's and
            the winners' accuracy (:func:`scorer`); default top-1 accuracy. The proxy that
            ranks candidates still scores top-1 accuracy on the val split.
        train_step: the user's ``(model, (inputs, targets)) -> loss`` or ``-> (loss, logits)``
            (``automc.train.TrainStep``) in place of cross-entropy wherever automc trains:
            the base model (then not cached), the ``short_train`` proxy and fine-tuning,
            distilled from the base model where the step returns logits. Checked once on
            the base model before the search (``automc.train.check_train_step``).
    """

    model: Any = None
    data: Any = None
    evaluate: Score | None = None
    train_step: Any = None


@dataclass(frozen=True)
class SearchSetup:
    """Everything a search scores candidates with: data, base model, layer table, bound
    space, cost model, resolved budget limits, the proxy (adaptive BN or short training) and
    where training and scoring run (``automc.device.Placement``; ``None``: the CPU), how it
    measures accuracy (``score``) and the user's ``train_step`` (``None``: cross-entropy)."""

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
    placement: Any = None
    score: Any = None
    train_step: Any = None

    def accuracy(self, model: Any, dataset: Any) -> Mapping[str, float]:
        """``{"acc", ...}`` of ``model`` on ``dataset`` as this run measures it (:func:`scorer`)."""
        return (self.score or scorer())(model, dataset)

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


def scorer(evaluate: Score | None = None, device: Any = None, workers: int = 0) -> Score:
    """The ``(model, dataset) -> {"acc", ...}`` accuracy function of a run.

    Default: top-1 accuracy and cross-entropy (``automc.train.evaluate``) on ``device``,
    its batches read by ``workers`` DataLoader processes.
    With the user's ``evaluate=`` (for models whose quality is not top-1 accuracy): it is
    called with the model on ``device`` (a copy when the model lives elsewhere) and must
    return a mapping with a finite number ``acc`` (higher is better; ``loss`` optional).

    Raises (from the returned function):
        AutomcError: the user's function returned no finite ``acc``.
    """
    from automc import train

    if evaluate is None:
        return lambda model, dataset: train.evaluate(model, dataset, device=device, workers=workers)
    user_evaluate = evaluate

    def checked(model: Any, dataset: Any) -> Mapping[str, float]:
        if device is not None and next(model.parameters()).device != device:
            model = copy.deepcopy(model).to(device)
        result = user_evaluate(model, dataset)
        acc = result.get("acc") if isinstance(result, Mapping) else None
        if isinstance(acc, bool) or not isinstance(acc, int | float) or not math.isfinite(acc):
            raise AutomcError(
                f"evaluate= must return a mapping with a finite number 'acc', got {str(result)[:100]}"
            )
        return {str(k): float(v) for k, v in result.items()}

    return checked


def warn_if_near_chance(base: Any, splits: Any, model: str, score: Score | None = None) -> bool:
    """Print one warning line on stderr when ``base`` is near chance on ``splits.val``
    (``score``: the run's :func:`scorer`, default top-1 accuracy where the model is)."""
    acc = (score or scorer())(base, splits.val)["acc"]
    chance = 1.0 / splits.num_classes
    if acc >= near_chance(splits.num_classes):
        return False
    sys.stderr.write(
        f"automc: warning: base model {model} reaches {acc:.1%} val accuracy, near chance "
        f"({chance:.1%}): the search would rank noise; train it longer (--base-epochs), at another "
        "learning rate (--base-lr) or pass trained --weights\n"
    )
    return True


def run_threads(config: SearchConfig) -> int | None:
    """Torch intra-op threads of the run: ``hardware.threads``, else ``$AUTOMC_THREADS``, else
    ``$OMP_NUM_THREADS`` (positive integers); ``None``: torch's own count."""
    if config.hardware.threads:
        return config.hardware.threads
    for var in ("AUTOMC_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(var, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return None


def progress_enabled(config: SearchConfig) -> bool:
    """Progress bars only when asked for and stderr is a terminal (a log gets no cursor codes)."""
    return bool(config.output.progress) and sys.stderr.isatty()


def load_splits(data_cfg: Any, *, seed: int, given: Any = None) -> Any:
    """The run's data: ``given`` (the user's ``Splits``) or ``data_cfg.dataset`` loaded with the
    config's conversion options; ``data_cfg.augment`` overrides the data's augmentation.

    :func:`announce_data` prints which split is which, the conversion, normalisation and
    augmentation in one ``automc: data:`` line.
    """
    from dataclasses import replace

    from automc import data as data_mod

    if given is not None and not isinstance(given, data_mod.Splits):
        raise AutomcError(f"data= must be an automc.data.Splits, got {type(given).__name__}")
    splits = given
    if splits is None:
        options = data_mod.DataOptions(
            in_channels=data_cfg.in_channels,
            input_size=data_cfg.input_size,
            normalize=data_cfg.normalize,
            train_subset=data_cfg.train_subset,
        )
        splits = data_mod.load(data_cfg.dataset, root=data_cfg.root, seed=seed, options=options)
    if data_cfg.augment is not None:
        splits = replace(splits, augment=data_cfg.augment)
    return splits


def announce_data(splits: Any) -> None:
    """One ``automc: data:`` line on stderr: which split is which, conversion, normalisation, augmentation.

    A search prints it once the cheap checks and the base model are through, so that a refused
    run prints its one error line and nothing else.
    """
    sys.stderr.write(f"automc: data: {splits.summary()}\n")


def _untrained(config: SearchConfig, splits: Any, model: Any = None) -> Any:
    """The base network before training (with ``base.weights``: already loaded, nothing to train).

    ``model`` is the user's own module (``model=`` / ``--model pkg.mod:factory``): a copy
    of it is the base (the user's object is never trained or moved); a config naming user
    code without it is refused (code is never imported from a data file). A zoo model is
    initialised from ``config.seed``, as ``automc.train.base_model`` initialises it.
    """
    import copy

    import torch

    from automc import models
    from automc.models import user

    base_cfg = config.base
    if model is not None:
        net = copy.deepcopy(model).cpu()
        return models.load_weights(net, base_cfg.weights) if base_cfg.weights else net
    user.refuse_from_data(base_cfg.model, "config base.model")
    torch.manual_seed(config.seed)  # the initial weights train.base_model starts from
    return models.create(
        base_cfg.model,
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        **({"weights": base_cfg.weights} if base_cfg.weights else {}),
    )


def _base_model(
    config: SearchConfig, splits: Any, net: Any, *, user: UserParts, placement: Any
) -> tuple[Any, dict[str, Any]]:
    """The trained base model: ``net`` with the user's weights, or trained (and cached) with the dataset's recipe.

    A module the ``user`` gave is used as it is, unless ``base.epochs`` asks to train it
    (with the dataset's recipe otherwise, not cached: the cache knows zoo names only). A
    zoo model trained with the user's ``train_step`` is not cached either (the cache key
    knows no user code).
    """
    from automc import train

    base_cfg = config.base
    given = user.model is not None
    options = train.FitOptions(seed=config.seed, progress=progress_enabled(config), placement=placement)
    if not base_cfg.weights and ((given and base_cfg.epochs) or (not given and user.train_step)):
        recipe = train.recipe_for(config.data.dataset, epochs=base_cfg.epochs, lr=base_cfg.lr)
        result = train.train(net, splits, recipe, options=options, train_step=user.train_step)
        net.cpu()
        return net, {"trained_epochs": result.epochs, "train_seconds": round(result.seconds, 3)}
    if base_cfg.weights:
        return net, {"weights": str(base_cfg.weights)}
    if given:
        return net, {"given": True}
    return train.base_model(
        base_cfg.model,
        config.data.dataset,
        epochs=base_cfg.epochs,
        lr=base_cfg.lr,
        splits=splits,
        data_root=config.data.root,
        options=options,
    )


def report_base_accuracy(
    base: Any, splits: Any, model: str, score: Score | None = None
) -> tuple[float, float]:
    """Print one line with the base model's val and test accuracy on stderr; returns them
    (``score``: the run's :func:`scorer`)."""
    score = score or scorer()
    val_acc = float(score(base, splits.val)["acc"])
    test_acc = float(score(base, splits.test)["acc"])
    sys.stderr.write(f"automc: base model {model}: val acc {val_acc:.4f}, test acc {test_acc:.4f}\n")
    return val_acc, test_acc


def _proxy(
    config: SearchConfig,
    splits: Any,
    base: Any,
    *,
    kl_teacher: bool,
    val_limit: int | None,
    device: Any,
    train_step: Any = None,
) -> Any:
    """The search's proxy, scoring candidates on ``device`` (its calibration batches stay on the CPU)."""
    return _cpu_proxy(
        config, splits, base, kl_teacher=kl_teacher, val_limit=val_limit, train_step=train_step
    ).to(device)


def _cpu_proxy(
    config: SearchConfig,
    splits: Any,
    base: Any,
    *,
    kl_teacher: bool,
    val_limit: int | None,
    train_step: Any = None,
) -> Any:
    from automc.proxy import ProxyBatches, ProxyData, create

    short = config.proxy.name == "short_train"
    batches = ProxyBatches(
        calib_batches=config.proxy.calib_batches,
        calib_batch_size=config.proxy.batch_size,
        val_limit=val_limit,
        train_batches=min(config.proxy.steps, SHORT_TRAIN_BATCHES) if short else 0,
        train_batch_size=SHORT_TRAIN_BATCH_SIZE,
    )
    data = ProxyData.from_splits(splits, batches, seed=config.seed)
    if short:
        from automc.proxy import ShortTrainProxy

        return ShortTrainProxy(
            data=data, teacher=base, steps=config.proxy.steps, lr=config.proxy.lr, train_step=train_step
        )
    return create(config.proxy.name, data=data, teacher=base if kl_teacher else None)


def channel_block(setting: int | None, profile: Any, metrics: set[str]) -> int:
    """Channels per block that the search aligns pruned channel counts to (1: none).

    ``setting`` is ``hardware.channel_block``; unset, it is the profile runtime's block
    (``RuntimeInfo.channel_block``) where ``metrics`` (the budgets' and objectives' cost
    keys) include ``latency_ms``: off the blocked layout a pruned network can run slower
    than the unpruned one (README, "Pruning that runs faster"), which only a latency
    budget or objective is told.
    """
    if setting is not None:
        return max(1, setting)
    if profile is None or "latency_ms" not in metrics:
        return 1
    return max(1, int(getattr(profile.runtime, "channel_block", 0)))


def check_logits(net: Any, example: Any, num_classes: int) -> None:
    """Refuse a base network whose eval-mode output is not one ``(batch, classes)`` tensor.

    automc scores (proxy, accuracy), distils and ships that tensor, so a forward returning a
    tuple or dict, or fewer outputs than the data has classes, is one error before anything
    trains, not a failure deep inside the first trial.

    Raises:
        AutomcError: the output is not a tensor, not 2-d, or narrower than ``num_classes``.
    """
    import torch

    was_training = net.training
    try:
        with torch.no_grad():
            out = net.eval()(example)
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise AutomcError(
            f"the model's forward() returns a {type(out).__name__}, not a tensor: automc scores, distils "
            f"and ships one (batch, {num_classes}) tensor of logits; wrap the model so forward() returns only that"
        )
    if out.dim() != 2 or out.shape[1] < num_classes:
        raise AutomcError(
            f"the model's forward() returns shape {tuple(out.shape)} for an input of shape "
            f"{tuple(example.shape)}: automc needs (batch, {num_classes}) logits for the data's "
            f"{num_classes} classes (is the model built for {num_classes} classes?)"
        )


def check_shippable(net: Any, example: Any, profile: Any, metrics: set[str]) -> bool:
    """Export the (untrained) base network for the profile's runtime before anything trains.

    A network the runtime cannot take (an op its exporter refuses, e.g. an adaptive pool whose
    output size does not divide its input) cannot ship there, so no winner's latency can be
    measured as it ships: with latency among ``metrics`` (budgets' and objectives' cost keys)
    that is an error; otherwise one warning line, and the search goes on.

    Returns:
        Whether the network exports (``True`` for torch eager, which needs no export).

    Raises:
        AutomcError: the network does not export and latency is a budget or an objective.
    """
    import tempfile
    from pathlib import Path

    from automc.hardware import runtimes
    from automc.pipeline.winners import runtime_of

    name, device = runtime_of(profile)
    if name == "torch":
        return True
    rt = runtimes.get(name, device=device)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rt.export(net, example, Path(tmp) / f"base{rt.suffix}")
    except Exception as e:  # noqa: BLE001 - any exporter failure is the model's, reported in one line
        reason = one_line(e, 200, first_sentence=True)
        what = f"the model cannot be exported for {name} ({reason})"
        if "latency_ms" in metrics:
            raise AutomcError(
                f"{what}, so its latency cannot be measured where it ships; search on a torch-eager "
                "profile (--profile cpu-x86-2core-torch) or replace the op"
            ) from None
        sys.stderr.write(f"automc: warning: {what}: the winners will not be shipped or timed on it\n")
        return False
    return True


def prepare(
    config: SearchConfig,
    *,
    space: SearchSpace,
    budgets: Sequence[Any],
    profile: Any = None,
    kl_teacher: bool = False,
    val_limit: int | None = None,
    user: UserParts = UserParts(),
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
        user: the caller's own base model, data, accuracy function and training step
            (:class:`UserParts`).

    Base training, accuracy evaluation, proxy scoring and fine-tuning run on
    ``config.hardware.device``; the base model stays on the CPU between them (tracing,
    compression and latency timing happen there).
    """
    from automc import budget as budget_mod
    from automc import cost as cost_mod
    from automc import graph, train
    from automc.device import Placement

    model, evaluate = user.model, user.evaluate
    hw = config.hardware
    placement = Placement.of(hw.device, amp=hw.amp, workers=hw.workers)
    splits = load_splits(config.data, seed=config.seed, given=user.data)
    example = splits.train[0][0].unsqueeze(0)
    # the cost model needs shapes, not weights: budgets are checked on the untrained network
    net = _untrained(config, splits, model).eval()
    graph.require_modelled(net, example)
    check_logits(net, example, splits.num_classes)
    layers = tuple(graph.layers(net, example))
    metrics = {b.metric for b in budgets} | {
        o.name for o in budget_mod.parse_objectives(list(config.objectives))
    }
    block = channel_block(hw.channel_block, profile, metrics)
    bound = space.bind(layers, model=config.base.model, channel_block=block)
    cost_model = cost_mod.CostModel(profile=profile)

    def cost_fn(plan: CompressionPlan) -> Mapping[str, float]:
        return cost_model.estimate(layers, plan).total

    base_cost = dict(cost_fn(CompressionPlan(model=config.base.model)))
    limits = budget_mod.resolve(list(budgets), base_cost)
    budget_mod.check_feasible_space(bound, cost_fn, limits, budgets=budgets, base_cost=base_cost)
    check_shippable(net, example, profile, metrics)
    if "latency_ms" in metrics:
        from automc.pipeline import outcome

        fix = outcome.profile_fix(config.base.model, profile=profile, input_shape=tuple(example.shape))
        outcome.warn_if_other_cpu(profile, fix=fix)
    if user.train_step is not None:
        train.check_train_step(user.train_step, net, splits, placement.device)
    base, base_info = _base_model(config, splits, net, user=user, placement=placement)
    announce_data(splits)
    if block > 1:
        sys.stderr.write(
            f"automc: pruned channel counts aligned to the runtime's blocked layout of {block} channels "
            "(--channel-block 0: not aligned)\n"
        )
    base.eval()
    device = placement.device
    score = scorer(evaluate, device, placement.workers)
    val_acc, test_acc = report_base_accuracy(base, splits, config.base.model, score)
    base_info = {**base_info, "val_acc": val_acc, "test_acc": test_acc, "device": str(device)}
    warn_if_near_chance(base, splits, config.base.model, score)
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
        proxy=_proxy(
            config,
            splits,
            base,
            kl_teacher=kl_teacher,
            val_limit=val_limit,
            device=device,
            train_step=user.train_step,
        ),
        placement=placement,
        score=score,
        train_step=user.train_step,
    )
