"""A user's own training step and accuracy function, as ``--train-step`` / ``--evaluate`` name them.

``shifted_labels`` trains a model to predict ``(label + 1) % classes``: a loss no
cross-entropy run would give, so a test can tell from the model's predictions that the
step was used. ``shifted_accuracy`` is the matching ``evaluate=``. Every call of
``shifted_labels`` appends to ``CALLS`` where in automc it ran (``stage``).
"""

from __future__ import annotations

import traceback
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CALLS: list[dict[str, Any]] = []

_STAGES = (
    ("check_train_step", "check"),
    ("_step_loss", "proxy"),
    ("finish", "finetune"),
    ("_base_model", "base"),
)


def stage() -> str:
    """Which part of automc is calling: the check, base training, the proxy or fine-tuning."""
    names = {frame.name for frame in traceback.extract_stack()}
    return next((label for name, label in _STAGES if name in names), "other")


def shifted(y: torch.Tensor, classes: int) -> torch.Tensor:
    return (y + 1) % classes


def shifted_labels(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[Any, Any]:
    """Label-smoothed cross-entropy against the shifted labels; returns ``(loss, logits)``."""
    x, y = batch
    logits = model(x)
    CALLS.append({"stage": stage(), "training": model.training, "batch": len(y)})
    return F.cross_entropy(logits, shifted(y, logits.shape[1]), label_smoothing=0.1), logits


def shifted_loss_only(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """:func:`shifted_labels` without the logits (automc does not distill it)."""
    return shifted_labels(model, batch)[0]


def shifted_accuracy(model: nn.Module, dataset: Any) -> dict[str, float]:
    """Top-1 accuracy against the shifted labels."""
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        logits = model(x.to(device)).cpu()
    return {"acc": float((logits.argmax(1) == shifted(y, logits.shape[1])).float().mean())}


def returns_a_float(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    """A broken step: a Python number, not a loss tensor."""
    return 1.0


def returns_nan(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """A broken step: a non-finite loss."""
    return model(batch[0]).sum() * float("nan")
