"""Base-model training, evaluation and fine-tuning with knowledge distillation.

* :func:`train`: SGD (momentum 0.9, Nesterov) with a per-step cosine schedule after a
  short linear warm-up, the dataset's augmentation (``Splits.augment``: random shifts
  and/or horizontal flips, or none), deterministic for a given seed on CPU. Progress is
  a bar on a terminal, else one ``automc: train: epoch i/n`` line per epoch on stderr.
* :func:`finetune`: the same loop with the distillation loss of Hinton et al. (2015)
  when a teacher is given; works on models holding fake-quant modules.
* Both take the user's ``train_step`` (:data:`TrainStep`) in place of cross-entropy,
  checked by :func:`step_loss`; :func:`check_train_step` runs it once before a search.
* Both re-estimate BatchNorm running statistics over the training set after the last
  epoch when they are stale (a slow momentum, :func:`_stale_bn`).
* Their batches come from ``automc.data.loader`` with the placement's DataLoader
  workers (pinned on CUDA); the same seed gives the same batches whatever the count.
* :func:`evaluate`: top-1 accuracy and mean cross-entropy under ``torch.inference_mode``.
* :func:`base_model`: train a zoo model on a dataset once and cache it under
  ``$AUTOMC_HOME/base_models`` (see ``automc.cli.common.automc_home``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import Dataset

from automc.data import Splits, loader
from automc.device import Placement
from automc.errors import AutomcError, one_line

RECIPE_VERSION = 3
BN_STALE_LIMIT = 0.01
"""Largest share of its pre-training value a BatchNorm running statistic may keep after
training before :func:`_fit` re-estimates the statistics over the training set."""
BN_RECALIBRATION_BATCHES = 200
WARMUP_FRACTION = 0.05
SHIFT_PIXELS = 4

TrainStep = Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], Any]
"""``train_step(model, (inputs, targets)) -> loss`` or ``-> (loss, logits)``: the user's
training loss of one batch, for models whose loss is not plain cross-entropy (label
smoothing, auxiliary heads, a model whose train-mode output is not one logits tensor).

It is called with the model in train mode and a batch on the training device (after
automc's augmentation, under autocast when mixed precision is on) and must return a
finite scalar loss tensor that depends on the model's parameters; automc runs the
backward pass and the optimiser. Where automc distills from a teacher (fine-tuning the
winners, the ``short_train`` proxy), a step that also returns the student's
``(batch, classes)`` logits gets the distillation term added (:func:`distilled`: the
step's loss takes the place of the cross-entropy term); a step returning the loss alone
is used as it is, without distillation. See :func:`step_loss`."""


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """Hyper-parameters of a training run (of a base model: part of the cache key).

    Attributes:
        epochs: passes over the training set.
        lr: peak learning rate.
        batch_size: training batch size.
        weight_decay: SGD weight decay.
    """

    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 5e-4


@dataclass(frozen=True, kw_only=True)
class FitOptions:
    """How a training run is carried out (not what it learns from).

    Attributes:
        seed: ``torch.manual_seed``, batch order and augmentation draws.
        progress: progress on stderr: a bar on a terminal, else one line per epoch.
        placement: where to train (``automc.device.Placement``); ``None`` = where the
            model's parameters are, in full precision.
    """

    seed: int = 0
    progress: bool = True
    placement: Placement | None = None


@dataclass(frozen=True, kw_only=True)
class Distillation:
    """Knowledge distillation from a teacher (:func:`kd_loss`).

    Attributes:
        teacher: the model distilled from (eval mode, no gradients; not moved).
        temperature: softmax temperature, positive.
        alpha: weight of the distillation term in [0, 1] (``1 - alpha``: the labels).

    Raises:
        AutomcError: a temperature or alpha out of range.
    """

    teacher: nn.Module
    temperature: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise AutomcError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if not self.temperature > 0:
            raise AutomcError(f"temperature must be positive, got {self.temperature!r}")


DEFAULT_RECIPES: dict[str, Recipe] = {
    "digits": Recipe(epochs=15, lr=0.1, batch_size=64, weight_decay=5e-4),
    "synthetic": Recipe(epochs=8, lr=0.05, batch_size=32, weight_decay=5e-4),
    "cifar10": Recipe(epochs=160, lr=0.1, batch_size=128, weight_decay=5e-4),
    "fashion-mnist": Recipe(epochs=15, lr=0.1, batch_size=128, weight_decay=5e-4),
    "mnist": Recipe(epochs=10, lr=0.1, batch_size=128, weight_decay=5e-4),
}
FALLBACK_RECIPE = Recipe(epochs=30, lr=0.05, batch_size=64, weight_decay=5e-4)
FINETUNE_RECIPE = Recipe(epochs=5, lr=0.01, batch_size=64, weight_decay=5e-4)
"""The default recipe of :func:`finetune`."""


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train` / :func:`finetune`.

    Attributes:
        epochs: epochs run.
        train_loss: mean training loss of each epoch (the distillation loss when
            fine-tuning with a teacher).
        val_acc: top-1 accuracy on ``splits.val`` after the last epoch, in [0, 1].
        val_loss: mean cross-entropy on ``splits.val`` after the last epoch.
        seconds: wall-clock time of the run.
        cpu_seconds: CPU time of this process during the run (all threads); on a
            busy machine it is a steadier measure of the work than ``seconds``.
        bn_recalibrated: BatchNorm layers whose running statistics were re-estimated
            over the training set after the last epoch because they were stale
            (:func:`_stale_bn`); 0 when none was.
    """

    epochs: int
    train_loss: tuple[float, ...]
    val_acc: float
    val_loss: float
    seconds: float
    cpu_seconds: float
    bn_recalibrated: int = 0


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads``, else ``$OMP_NUM_THREADS``, else the usable
    cores; return it. For a command's whole process (``automc train``); library code scopes
    its thread settings (``automc.hardware.pinned_threads``)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    n = threads or (int(env) if env.isdigit() and int(env) > 0 else len(os.sched_getaffinity(0)))
    torch.set_num_threads(n)
    return n


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 256,
    *,
    device: str | torch.device | None = None,
    workers: int = 0,
) -> dict[str, float]:
    """Top-1 accuracy (``acc``, in [0, 1]) and mean cross-entropy (``loss``) on ``dataset``.

    Runs in eval mode under ``torch.inference_mode``; the model's train/eval mode is
    restored afterwards. With ``device``, it runs there (on a copy when the model lives
    elsewhere: the model itself is not moved); by default where the model's parameters are.
    ``workers``: DataLoader worker processes reading the batches (pinned on CUDA).
    """
    if device is not None and _device_of(model) != torch.device(device):
        return evaluate(_teacher_on(model, torch.device(device)), dataset, batch_size, workers=workers)
    device = _device_of(model)
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    batches = loader(dataset, batch_size, shuffle=False, workers=workers, pin_memory=device.type == "cuda")
    with torch.inference_mode():
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x).float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
            total += int(y.numel())
    model.train(was_training)
    if total == 0:
        raise AutomcError("cannot evaluate on an empty dataset")
    return {"acc": correct / total, "loss": loss_sum / total}


def _augment(x: torch.Tensor, *, crop: bool, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per sample: random shifts of up to ``SHIFT_PIXELS`` (border replicated) when ``crop``,
    random horizontal flips when ``hflip``."""
    n, _, h, w = x.shape
    padded = F.pad(x, (SHIFT_PIXELS,) * 4, mode="replicate").permute(0, 2, 3, 1)
    offsets = torch.randint(0, 2 * SHIFT_PIXELS + 1, (n, 2), generator=generator)
    if not crop:
        offsets = torch.full_like(offsets, SHIFT_PIXELS)
    rows = offsets[:, :1] + torch.arange(h)
    cols = offsets[:, 1:] + torch.arange(w)
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def _augmentations(augment: bool | str, splits: Splits) -> tuple[bool, bool]:
    """``(crop, flip)`` of ``augment``: ``True`` = the splits' own choice, ``False`` = none,
    or one of ``automc.data.options.AUGMENTS``."""
    from automc.data.options import canonical_augment

    if augment is True:
        augment = splits.augment
    elif augment is False:
        augment = "none"
    try:
        parts = set(canonical_augment(augment).split("+"))
    except ValueError as e:
        raise AutomcError(str(e)) from None
    return "crop" in parts, "flip" in parts


def kd_loss(
    student_logits: torch.Tensor,
    target: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss.

    ``alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(student, y)`` with
    ``p = softmax(logits / T)``; the ``T^2`` factor keeps the soft-target gradients on
    the scale of the hard-target ones.
    """
    hard = F.cross_entropy(student_logits, target)
    return distilled(hard, student_logits, teacher_logits, temperature=temperature, alpha=alpha)


def distilled(
    loss: torch.Tensor,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * loss``: the distillation term of
    :func:`kd_loss` around any hard-target ``loss`` (a user's ``train_step`` loss).

    Raises:
        AutomcError: the student's and the teacher's logits differ in shape.
    """
    if student_logits.shape != teacher_logits.shape:
        raise AutomcError(
            f"train_step=: the logits it returns have shape {tuple(student_logits.shape)}, "
            f"the teacher's {tuple(teacher_logits.shape)}"
        )
    t = float(temperature)
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    return alpha * t * t * soft + (1.0 - alpha) * loss


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def step_loss(
    train_step: TrainStep, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(loss, logits or None)`` of the user's :data:`TrainStep` on ``batch``, checked.

    Raises:
        AutomcError: the step raised (naming the exception; running out of memory is
            re-raised as it is), returned no scalar floating-point tensor (or ``(loss,
            logits)`` pair), a loss without a gradient, or logits that are not ``(batch,
            classes)``. A non-finite loss is the caller's to judge (divergence, or a broken step).
    """
    try:
        out = train_step(model, batch)
    except (AutomcError, MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of user code is reported in one line
        raise AutomcError(f"train_step= raised {one_line(e, 200)}") from None
    loss, logits = (out[0], out[1]) if isinstance(out, tuple | list) and len(out) == 2 else (out, None)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        raise AutomcError(
            f"train_step= must return a scalar loss tensor or (loss, logits), got {_describe(out)}"
        )
    if not loss.requires_grad:
        raise AutomcError(
            "train_step= returned a loss without gradient: compute it from model(inputs) "
            "(not under torch.no_grad, not detached)"
        )
    n = int(batch[0].shape[0])
    if logits is not None and (not isinstance(logits, torch.Tensor) or logits.dim() != 2 or len(logits) != n):
        raise AutomcError(
            f"train_step=: the logits of (loss, logits) must be a ({n}, classes) tensor, got {_describe(logits)}"
        )
    return loss.reshape(()).float(), None if logits is None else logits.float()


def check_train_step(train_step: TrainStep, model: nn.Module, splits: Splits, device: Any = None) -> float:
    """Run the user's step once on a copy of ``model`` (train mode, first train batch, on
    ``device``) before a search relies on it; returns the loss.

    Raises:
        AutomcError: not callable, it raised (naming the exception), returned a bad value
            (:func:`step_loss`) or a non-finite loss.
    """
    import copy

    if not callable(train_step):
        raise AutomcError(
            f"train_step= must be a function (model, batch) -> loss, got {_describe(train_step)}"
        )
    net = copy.deepcopy(model)
    if device is not None:
        net.to(device)
    net.train()
    x, y = next(iter(loader(splits.train, FINETUNE_RECIPE.batch_size, shuffle=False)))
    target = _device_of(net)
    with torch.enable_grad():
        loss, _ = step_loss(train_step, net, (x.to(target), y.to(target)))
    if not torch.isfinite(loss):
        raise AutomcError(
            f"train_step= returned a non-finite loss ({float(loss.detach())}) on the first train batch"
        )
    return float(loss.detach())


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm's running statistics from ``batches`` (in place).

    Running statistics are reset and accumulated as a cumulative average
    (``momentum=None``) over forward passes in which *only* the BatchNorm layers are
    in train mode: dropout stays off and fake-quant modules keep their calibrated ranges.
    Momentum is restored afterwards and the model is left in eval mode. BatchNorms that
    do not track running statistics are left alone.

    Returns:
        The number of BatchNorm layers recalibrated.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    model.eval()
    if not norms:
        return 0
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.eval()
    return len(norms)


def _teacher_on(teacher: Any, device: torch.device) -> Any:
    """``teacher`` itself when it is on ``device``, else a copy moved there (the caller's stays put)."""
    if teacher is None or _device_of(teacher) == device:
        return teacher
    import copy

    return copy.deepcopy(teacher).to(device)


def _stale_bn(model: nn.Module, steps: int) -> bool:
    """Whether some BatchNorm's running statistics still hold more than
    :data:`BN_STALE_LIMIT` of what they were before ``steps`` training steps.

    An exponential average with momentum ``m`` keeps ``(1 - m) ** steps`` of its start;
    torchvision's MobileNetV3 and EfficientNet (``m = 0.01``) and MNASNet (``m = 3e-4``)
    trained a few hundred steps are far from their weights' statistics, and their
    eval-mode accuracy is near chance. A cumulative average (``momentum=None``) mixes in
    every step's weights and counts as stale too.
    """
    return any(
        m.momentum is None or (1.0 - m.momentum) ** steps > BN_STALE_LIMIT
        for m in model.modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
    )


@dataclass(frozen=True)
class _Objective:
    """What :func:`_fit` minimises: cross-entropy, or the user's ``train_step``; distilled
    from ``distillation.teacher`` when given (:func:`_batch_loss`)."""

    distillation: Distillation | None = None
    train_step: TrainStep | None = None


def _batch_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, teacher: nn.Module | None, objective: _Objective
) -> torch.Tensor:
    """The training loss of one batch (``teacher``: the distillation teacher on the batch's device)."""
    kd = objective.distillation
    if objective.train_step is None:
        teacher_logits = None
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher(x).float()
        logits = model(x).float()
        if teacher_logits is None or kd is None:
            return F.cross_entropy(logits, y)
        return kd_loss(logits, y, teacher_logits, temperature=kd.temperature, alpha=kd.alpha)
    loss, logits = step_loss(objective.train_step, model, (x, y))
    if teacher is None or kd is None or logits is None:
        return loss
    with torch.no_grad():
        teacher_logits = teacher(x).float()
    return distilled(loss, logits, teacher_logits, temperature=kd.temperature, alpha=kd.alpha)


def _fit(
    model: nn.Module,
    splits: Splits,
    *,
    recipe: Recipe,
    options: FitOptions,
    augment: bool | str,
    objective: _Objective,
    desc: str,
) -> TrainResult:
    from tqdm.auto import tqdm

    epochs, lr, batch_size = recipe.epochs, recipe.lr, recipe.batch_size
    seed, progress, placement = options.seed, options.progress, options.placement

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise AutomcError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not lr > 0:
        raise AutomcError(f"learning rate must be positive, got {lr!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AutomcError(f"batch size must be a positive integer, got {batch_size!r}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if placement is not None:
        model.to(placement.device)
    device = _device_of(model)
    kd = objective.distillation
    teacher = _teacher_on(kd.teacher if kd is not None else None, device)
    amp_dtype = placement.autocast_dtype() if placement is not None else None
    reading = placement.loader_options() if placement is not None else {}
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    params = [p for p in model.parameters() if p.requires_grad]
    start, cpu_start = time.perf_counter(), time.process_time()
    losses: list[float] = []
    bn_recalibrated = 0
    if epochs > 0 and params:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay)
        steps_per_epoch = math.ceil(len(splits.train) / batch_size)  # type: ignore[arg-type]
        total = max(1, epochs * steps_per_epoch)
        warmup = max(1, int(WARMUP_FRACTION * total))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        if teacher is not None:
            teacher.eval()
        crop, hflip = _augmentations(augment, splits)
        on_terminal = sys.stderr.isatty()
        bar = tqdm(
            range(epochs), desc=desc, unit="epoch", disable=not (progress and on_terminal), leave=False
        )
        for epoch in bar:
            model.train()
            loss_sum, seen = 0.0, 0
            for x, y in loader(splits.train, batch_size, shuffle=True, seed=seed * 1000 + epoch, **reading):
                if crop or hflip:
                    x = _augment(x, crop=crop, hflip=hflip, generator=generator)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = _batch_loss(model, x, y, teacher, objective)
                if not torch.isfinite(loss):
                    fix = "check train_step= or lower the lr" if objective.train_step else "lower the lr"
                    raise AutomcError(
                        f"{desc}: training diverged (loss {float(loss.detach())}) at epoch {epoch + 1}; {fix}"
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                loss_sum += float(loss.detach()) * int(y.numel())
                seen += int(y.numel())
            losses.append(loss_sum / max(1, seen))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if progress and not on_terminal:
                sys.stderr.write(
                    f"automc: {desc}: epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f} "
                    f"({time.perf_counter() - start:.1f} s)\n"
                )
        bar.close()
        if _stale_bn(model, total):
            shuffled = loader(splits.train, batch_size, shuffle=True, seed=seed, **reading)
            batches = (x.to(device, non_blocking=True) for x, _ in shuffled)
            bn_recalibrated = recalibrate_bn(model, itertools.islice(batches, BN_RECALIBRATION_BATCHES))
    model.eval()
    val = evaluate(model, splits.val, workers=placement.workers if placement is not None else 0)
    return TrainResult(
        epochs=epochs,
        train_loss=tuple(losses),
        val_acc=val["acc"],
        val_loss=val["loss"],
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
        bn_recalibrated=bn_recalibrated,
    )


def train(
    model: nn.Module,
    splits: Splits,
    recipe: Recipe,
    *,
    augment: bool | str = True,
    options: FitOptions = FitOptions(),
    train_step: TrainStep | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``splits.train`` with cross-entropy (or the user's
    ``train_step``, :data:`TrainStep`); returns in eval mode.

    SGD with momentum 0.9 (Nesterov) and the ``recipe``'s epochs, peak lr, batch size and
    weight decay; linear warm-up over the first 5% of steps, then a per-step cosine decay
    to zero. ``augment``: ``True`` = ``splits.augment``, ``False``
    = none, or ``none``/``crop`` (random shifts of up to 4 pixels)/``flip`` (random
    horizontal flips)/``crop+flip``. Seeded with ``torch.manual_seed(options.seed)``
    and a seeded loader; bit-for-bit repeatable on CPU with the same thread count.
    ``options.placement`` (``automc.device.Placement``) moves the model to its device (in
    place; it stays there) and autocasts on CUDA when it asks for mixed precision; by
    default the model trains where its parameters are, in full precision.

    Raises:
        AutomcError: bad hyper-parameters, or a non-finite loss (divergence).
    """
    return _fit(
        model,
        splits,
        recipe=recipe,
        options=options,
        augment=augment,
        objective=_Objective(train_step=train_step),
        desc="train",
    )


def finetune(
    student: nn.Module,
    splits: Splits,
    recipe: Recipe = FINETUNE_RECIPE,
    *,
    distillation: Distillation | None = None,
    augment: bool | str = True,
    options: FitOptions = FitOptions(),
    train_step: TrainStep | None = None,
) -> TrainResult:
    """Fine-tune a compressed ``student`` in place, distilling from a teacher if given.

    With a ``distillation`` the loss is :func:`kd_loss` (teacher in eval mode, no
    gradients; a copy on the student's device when it lives elsewhere, the teacher itself
    is not moved); without one it is plain cross-entropy. With the user's ``train_step``
    (:data:`TrainStep`) its loss replaces the cross-entropy: distilled (:func:`distilled`)
    when the step also returns the student's logits, as it is otherwise. Same optimiser,
    schedule and ``options`` as :func:`train`.
    Fake-quant modules are ordinary modules with straight-through estimators, so
    quantized students train as is. Returns with the student in eval mode.
    """
    return _fit(
        student,
        splits,
        recipe=recipe,
        options=options,
        augment=augment,
        objective=_Objective(distillation=distillation, train_step=train_step),
        desc="finetune",
    )


def check_lr(lr: float | None, flag: str) -> None:
    """Refuse a learning-rate override (``flag`` names it in the message) that is not a positive finite number."""
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise AutomcError(f"{flag} must be a positive number, got {lr}")


def recipe_for(dataset_name: str, *, epochs: int | None = None, lr: float | None = None) -> Recipe:
    """The default base-training recipe for a dataset, optionally with another epoch count
    or learning rate."""
    recipe = DEFAULT_RECIPES.get(dataset_name, FALLBACK_RECIPE)
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    if lr is not None:
        recipe = replace(recipe, lr=float(lr))
    return recipe


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:limit] or "x"


def cache_key(
    model_name: str,
    dataset_name: str,
    *,
    seed: int,
    recipe: Recipe,
    data_identity: str = "",
    augment: str = "",
) -> dict[str, Any]:
    """What a cached base model is keyed by: model, dataset name, seed, recipe, recipe
    version, the data's content hash (``Splits.identity``) and the training augmentation."""
    return {
        "model": model_name,
        "dataset": dataset_name,
        "seed": seed,
        "recipe": asdict(recipe),
        "v": RECIPE_VERSION,
        "data": data_identity,
        "augment": augment,
    }


def cache_paths(key: dict[str, Any], *, cache_dir: Path) -> tuple[Path, Path]:
    """``(weights .pt, info .json)`` paths of the cached base model of :func:`cache_key` ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    stem = f"{_slug(key['model'])}-{_slug(key['dataset'])}-s{key['seed']}-{digest}"
    folder = cache_dir / "base_models"
    return folder / f"{stem}.pt", folder / f"{stem}.json"


_KEY_WORDS = {
    "data": "data content",
    "augment": "augmentation",
    "seed": "seed",
    "recipe": "recipe",
    "v": "recipe version",
}


def _key_change(part: str, old: Any, new: Any) -> str:
    if part == "data":
        return f"data content ({str(old)[:12] or 'unknown'} -> {str(new)[:12]})"
    if part == "recipe" and isinstance(old, dict):
        changed = [f"{k} {old.get(k)} -> {v}" for k, v in new.items() if old.get(k) != v]
        return f"recipe ({', '.join(changed)})"
    return f"{_KEY_WORDS[part]} ({old} -> {new})"


def why_retrain(key: dict[str, Any], cache_dir: Path) -> str:
    """Why no cached base model fits ``key``: the key parts in which the newest cached model of
    the same model and dataset differs, or that there is none."""
    folder = cache_dir / "base_models"
    infos = sorted(
        folder.glob(f"{_slug(key['model'])}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for path in infos:
        try:
            info = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(info, dict) or (info.get("model"), info.get("dataset")) != (
            key["model"],
            key["dataset"],
        ):
            continue
        old = info.get("key")
        if not isinstance(old, dict):
            return f"the cached {path.name} predates content-keyed caching (recipe version {info.get('recipe_version')})"
        changes = [
            _key_change(part, old.get(part), key[part]) for part in _KEY_WORDS if old.get(part) != key[part]
        ]
        return f"the cached {path.name} differs in " + "; ".join(changes)
    return f"no cached {key['model']} on {key['dataset']}"


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _load_cached(model: nn.Module, weights_path: Path, info_path: Path) -> dict[str, Any] | None:
    from automc.models import load_weights

    if not weights_path.exists() and not info_path.exists():
        return None
    try:
        info = json.loads(info_path.read_text())
        if not isinstance(info, dict) or "test_acc" not in info:
            raise AutomcError(f"{info_path}: not a base-model info file")
        load_weights(model, weights_path)
    except (AutomcError, OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        warnings.warn(f"base-model cache is unreadable, retraining: {e}", RuntimeWarning, stacklevel=3)
        return None
    return info


def base_model(
    model_name: str,
    dataset_name: str,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    splits: Splits | None = None,
    options: FitOptions = FitOptions(),
) -> tuple[nn.Module, dict[str, Any]]:
    """A trained base model, from the cache or trained now and cached.

    The cache key (:func:`cache_key`) is model, dataset name, seed, the recipe (epochs,
    lr, batch size, weight decay, recipe version), the data's content hash
    (``Splits.identity``: a dataset regenerated at the same path gets a new model) and the
    augmentation. Training a new model is announced in one stderr line saying which key
    part differs from the newest cached model of the same model and dataset
    (:func:`why_retrain`); a dataset without a recipe of its own is announced with the
    default recipe it gets. Weights are stored as a plain state_dict and loaded
    with ``weights_only=True``; an unreadable cache entry is reported with one
    ``RuntimeWarning`` and retrained (and overwritten).

    Args:
        model_name: zoo name (``automc list models``) or ``tv:<name>``.
        dataset_name: dataset name (``automc list datasets``).
        epochs: overrides the dataset's default recipe epochs.
        lr: overrides the recipe's peak learning rate (e.g. 0.02 for ``tv:efficientnet_b0``
            on digits, which does not learn at the default 0.1).
        data_root: folder of on-disk datasets (cifar10, fashion-mnist, mnist, imagefolder).
        cache_dir: cache root; default ``automc_home()``.
        splits: already loaded data for ``dataset_name`` (skips loading it again).
        options: the training seed (weights init, batch order, augmentation; also the
            data seed and part of the cache key), progress on stderr, and where to train
            (``placement``; default the CPU).

    Returns:
        ``(model in eval mode on the CPU, info)``; info holds ``test_acc``, ``test_loss``,
        ``val_acc``, ``train_seconds``, ``recipe``, ``bn_recalibrated``,
        ``weights_path``, and ``cached`` (True when loaded from the cache).
    """
    from automc.cli.common import automc_home
    from automc.data import load
    from automc.models import create

    seed = options.seed
    if splits is None:
        splits = load(dataset_name, data_root, seed=seed)
    recipe = recipe_for(dataset_name, epochs=epochs, lr=lr)
    root = Path(cache_dir) if cache_dir is not None else automc_home()
    key = cache_key(
        model_name,
        dataset_name,
        seed=seed,
        recipe=recipe,
        data_identity=splits.identity,
        augment=splits.augment,
    )
    weights_path, info_path = cache_paths(key, cache_dir=root)
    torch.manual_seed(seed)
    model = create(model_name, num_classes=splits.num_classes, in_channels=splits.in_channels)
    info = _load_cached(model, weights_path, info_path)
    if info is not None:
        model.eval()
        return model, {**info, "cached": True, "weights_path": str(weights_path)}
    if dataset_name not in DEFAULT_RECIPES:
        r = FALLBACK_RECIPE
        sys.stderr.write(
            f"automc: base model: no recipe for dataset {dataset_name!r}: default recipe {r.epochs} epochs, "
            f"lr {r.lr:g}, batch {r.batch_size}, weight decay {r.weight_decay:g} (--base-epochs/--base-lr change it)\n"
        )
    sys.stderr.write(
        f"automc: base model: training {model_name} on {dataset_name} (seed {seed}, {recipe.epochs} epochs, "
        f"lr {recipe.lr:g}, augment {splits.augment}): {why_retrain(key, root)}\n"
    )
    result = train(model, splits, recipe, options=options)
    test = evaluate(model, splits.test)
    model.cpu()
    info = {
        "model": model_name,
        "dataset": dataset_name,
        "seed": seed,
        "recipe": asdict(recipe),
        "recipe_version": RECIPE_VERSION,
        "key": key,
        "data": splits.facts(),
        "num_classes": splits.num_classes,
        "in_channels": splits.in_channels,
        "input_size": list(splits.input_size),
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "val_acc": result.val_acc,
        "val_loss": result.val_loss,
        "train_seconds": round(result.seconds, 3),
        "train_cpu_seconds": round(result.cpu_seconds, 3),
        "bn_recalibrated": result.bn_recalibrated,
        "threads": torch.get_num_threads(),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_write(weights_path, lambda p: torch.save(state, p))
    _atomic_write(info_path, lambda p: p.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n"))
    return model, {**info, "cached": False, "weights_path": str(weights_path)}
