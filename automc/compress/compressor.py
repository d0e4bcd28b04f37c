"""``apply(model, plan)`` and the saved compressed-model format (re-exported by :mod:`automc.compress`)."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automc.compress import lowrank, quantizers
from automc.compress.criteria import CriterionContext
from automc.compress.lowrank.svd import max_rank
from automc.compress.prune import InputCapture, expected_channels, prune_groups, verify_channels
from automc.compress.quant import QuantConv2d, QuantLinear, calibrate, quantize_module
from automc.compress.sparsity import apply_sparsity
from automc.errors import AutomcError, one_line
from automc.graph import trace
from automc.plan import CompressionPlan, LayerSpec

__all__ = ["QuantConv2d", "QuantLinear", "apply", "load_compressed", "save_compressed"]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, module)


def _leaves(module: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(module, nn.Conv2d | nn.Linear):
        return [("", module)]
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _check_plan(plan: CompressionPlan, layers: Sequence[LayerSpec]) -> None:
    plan.validate_for(layers)
    by_name = {s.name: s for s in layers}
    for name, choice in plan.layers.items():
        if choice.rank is not None and by_name[name].kind == "grouped":
            raise AutomcError(
                f"layer {name!r}: grouped convolutions cannot be factorised (rank must be null)"
            )
        if choice.rank is not None:
            lowrank.get(choice.lowrank)
        if choice.w_bits < 16:
            quantizers.get(choice.quantizer)


def apply(
    model: nn.Module,
    plan: CompressionPlan,
    example_input: torch.Tensor,
    *,
    calib_batches: Sequence[torch.Tensor] | None = None,
    calib_targets: Sequence[torch.Tensor] | None = None,
    seed: int = 0,
) -> nn.Module:
    """Compress a copy of ``model`` as ``plan`` says.

    Args:
        model: the float model (left untouched).
        plan: per-layer choices; validated against the model's traced layers first.
        example_input: one input batch (e.g. ``torch.zeros(1, 3, 32, 32)``) used for
            tracing, and for calibration when ``calib_batches`` is empty.
        calib_batches: input batches for data-driven criteria and activation ranges.
        calib_targets: labels of ``calib_batches`` (used by the Taylor criterion).
        seed: seed for random choices (the ``random`` criterion).

    Returns:
        A new module in the same train/eval mode as ``model``.

    Raises:
        AutomcError: the plan does not fit the model (unknown layer, other model's
            fingerprint, coupled layers with different keep ratios, rank too large,
            unknown criterion/quantizer/low-rank method).
        UnsupportedLayerError: pruning gave shapes other than the plan predicts.
    """
    was_training = model.training
    new = copy.deepcopy(model)
    new.eval()
    info = trace(new, example_input)
    layers = info.layers
    _check_plan(plan, layers)
    batches = list(calib_batches) if calib_batches else [example_input]

    ctx = CriterionContext(
        model=new,
        batches=batches,
        targets=list(calib_targets or ()),
        seed=seed,
        capture_inputs=InputCapture(model=new, batches=batches),
    )
    prune_groups(info, plan, ctx)
    verify_channels(new, expected_channels(layers, plan))

    for spec in layers:
        choice = plan.choice(spec.name)
        if choice.rank is None:
            continue
        module = new.get_submodule(spec.name)
        rank = min(choice.rank, max_rank(module))
        _set_submodule(new, spec.name, lowrank.get(choice.lowrank)(module, rank))

    quantized = False
    for spec in layers:
        choice = plan.choice(spec.name)
        if choice.w_bits >= 32 and choice.a_bits >= 32:
            continue
        holder = new.get_submodule(spec.name)
        for sub, leaf in _leaves(holder):
            q = quantize_module(leaf, w_bits=choice.w_bits, a_bits=choice.a_bits, quantizer=choice.quantizer)
            _set_submodule(new, f"{spec.name}.{sub}" if sub else spec.name, q)
        quantized = True

    sparse = [
        (spec.name, plan.choice(spec.name).sparsity) for spec in layers if plan.choice(spec.name).sparsity > 0
    ]
    for name, fraction in sparse:
        apply_sparsity(new.get_submodule(name), fraction)

    if quantized:
        calibrate(new, batches)
    new.train(was_training)
    return new


def save_compressed(
    path: str | Path,
    model: nn.Module,
    plan: CompressionPlan,
    *,
    model_name: str,
    input_shape: Sequence[int],
    num_classes: int,
    in_channels: int = 3,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write ``{"state_dict", "plan", "model", "input_shape", "num_classes", "in_channels", "meta"}``.

    Plain types and tensors only, so :func:`load_compressed` reads it with
    ``torch.load(..., weights_only=True)``. ``meta`` (JSON-like: strings, numbers, lists,
    dicts) describes where the model came from, e.g. the base model's identity and the
    automc version.
    """
    payload: dict[str, Any] = {
        "meta": dict(meta or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "plan": plan.to_json(),
        "model": model_name,
        "input_shape": [int(s) for s in input_shape],
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
    }
    torch.save(payload, str(path))


def load_compressed(path: str | Path) -> nn.Module:
    """Rebuild a model saved by :func:`save_compressed` (or ``automc compress``).

    Creates the named model with ``automc.models.create``, re-applies the plan (with the
    ``l1`` criterion: only the shapes matter, the saved weights replace the rest) and
    loads the saved ``state_dict``. The result is in eval mode.

    Raises:
        AutomcError: unreadable file, pickled objects, missing keys, or a state dict that does not fit.
    """
    from automc import models

    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise AutomcError(
            f"{path}: not an automc compressed model (it holds pickled objects, not plain tensors and "
            "types; automc never loads those)"
        ) from None
    except (OSError, RuntimeError, EOFError) as e:
        raise AutomcError(f"{path}: cannot read compressed model ({one_line(e, 200, named=False)})") from None
    missing = {"state_dict", "plan", "model", "input_shape", "num_classes"} - set(
        payload if isinstance(payload, dict) else ()
    )
    if missing:
        raise AutomcError(f"{path}: not an automc compressed model (missing {', '.join(sorted(missing))})")
    plan = replace(CompressionPlan.from_json(payload["plan"], where=str(path)), criterion="l1")
    # rebuilt with autograd on: tracing needs it, even when the caller runs under inference_mode
    with torch.inference_mode(False):
        base = models.create(
            payload["model"],
            num_classes=int(payload["num_classes"]),
            in_channels=int(payload.get("in_channels", 3)),
        )
        base.eval()
        example = torch.zeros(*[int(s) for s in payload["input_shape"]])
        compressed = apply(base, plan, example)
        try:
            compressed.load_state_dict(payload["state_dict"])
        except RuntimeError as e:
            raise AutomcError(
                f"{path}: saved weights do not fit the rebuilt model ({str(e).splitlines()[0]})"
            ) from None
    return compressed.eval()
