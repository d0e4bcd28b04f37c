"""Unstructured magnitude pruning (Han et al. 2015, "Learning both weights and connections").

:func:`apply_sparsity` zeroes the smallest-magnitude fraction of a layer's weight and
keeps a ``weight_mask`` buffer next to it. A forward pre-hook multiplies the weight by the
mask before every forward pass, so the pruned weights stay at zero while fine-tuning. The
hook is a module-level function (it receives the module it is attached to), so masks
survive ``copy.deepcopy`` and pickling; the mask is a buffer, so it is in ``state_dict``.
To load such a state dict into a fresh model, call :func:`apply_sparsity` on it first (or
:func:`restore_masks`).

Caveats: sparsity saves storage and memory traffic (see
:func:`automc.cost.formats.sparse_storage_bits`), not dense compute; the forward pass is
still a dense conv/linear. Gradients of masked weights are not zeroed: the optimiser
may move them, and the next forward pass zeroes them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import torch
from torch import nn

from automc.cost.formats import sparse_entries, sparse_nnz, sparse_storage_bits
from automc.errors import AutomcError

MASK = "weight_mask"
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _weight(module: nn.Module) -> torch.Tensor:
    return cast(torch.Tensor, module.weight)


def _mask_weight(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    mask = getattr(module, MASK)
    with torch.no_grad():
        _weight(module).mul_(mask)


def _leaves(module: nn.Module) -> Iterator[nn.Module]:
    if isinstance(module, _WEIGHTED):
        yield module
        return
    for sub in module.modules():
        if isinstance(sub, _WEIGHTED):
            yield sub


def is_masked(module: nn.Module) -> bool:
    """Whether ``module`` (a conv/linear) carries a sparsity mask."""
    return isinstance(getattr(module, MASK, None), torch.Tensor)


def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Attach (or replace) a 0/1 mask on a conv/linear and zero the masked weights now."""
    if not isinstance(module, _WEIGHTED):
        raise AutomcError(f"cannot mask a {type(module).__name__}; expected a conv or linear layer")
    if mask.shape != module.weight.shape:
        raise AutomcError(
            f"mask shape {tuple(mask.shape)} does not match weight {tuple(module.weight.shape)}"
        )
    mask = mask.to(dtype=module.weight.dtype, device=module.weight.device)
    if is_masked(module):
        getattr(module, MASK).copy_(mask)
    else:
        module.register_buffer(MASK, mask.clone())
        module.register_forward_pre_hook(_mask_weight)
    with torch.no_grad():
        module.weight.mul_(getattr(module, MASK))


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """0/1 mask zeroing exactly ``round(n * sparsity)`` smallest-|w| entries (ties by position)."""
    n = weight.numel()
    n_zero = n - sparse_nnz(n, float(sparsity))
    mask = torch.ones(n, dtype=weight.dtype, device=weight.device)
    if n_zero > 0:
        order = torch.argsort(weight.detach().abs().flatten(), stable=True)
        mask[order[:n_zero]] = 0
    return mask.view_as(weight)


def apply_sparsity(module: nn.Module, sparsity: float) -> nn.Module:
    """Zero the smallest-magnitude ``sparsity`` fraction of each weight, in place.

    Args:
        module: a conv/linear, or any module holding them (e.g. the ``nn.Sequential`` of
            a low-rank factor pair): each conv/linear inside is pruned to ``sparsity``
            on its own.
        sparsity: fraction of weights to zero, in [0, 1). Already-masked weights count
            towards it (the new mask never revives a pruned weight).

    Returns:
        ``module`` itself.
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float) or not 0.0 <= sparsity < 1.0:
        raise AutomcError(f"sparsity must be in [0, 1), got {sparsity!r}")
    leaves = list(_leaves(module))
    if not leaves:
        raise AutomcError(f"{type(module).__name__} has no conv or linear weight to sparsify")
    if sparsity == 0.0:
        return module
    for leaf in leaves:
        weight = _weight(leaf).detach()
        if is_masked(leaf):
            weight = weight * getattr(leaf, MASK)
        set_mask(leaf, magnitude_mask(weight, sparsity))
    return module


def restore_masks(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Attach the masks named in ``state_dict`` (``<layer>.weight_mask``) to ``model``'s layers.

    Use before ``model.load_state_dict(state_dict)`` when the model was saved sparse.
    """
    modules = dict(model.named_modules())
    for key, value in state_dict.items():
        if not key.endswith("." + MASK) and key != MASK:
            continue
        name = key[: -len(MASK) - 1] if key != MASK else ""
        if name not in modules:
            raise AutomcError(f"state dict names mask {key!r} but the model has no layer {name!r}")
        set_mask(modules[name], value)


def density(module: nn.Module) -> float:
    """Fraction of non-zero weights over all conv/linear layers in ``module``."""
    total = 0
    nonzero = 0
    for leaf in _leaves(module):
        total += _weight(leaf).numel()
        nonzero += int(torch.count_nonzero(_weight(leaf).detach()))
    if total == 0:
        raise AutomcError(f"{type(module).__name__} has no conv or linear weight")
    return nonzero / total


def sparse_storage_bytes(n_weights: int, density: float, w_bits: int, *, index_bits: int = 4) -> int:
    """Bytes of a sparse weight in Deep Compression's relative-index format.

    ``ceil(sparse_storage_bits(...) / 8)``; see :mod:`automc.cost.formats` for the format
    and the expected filler count.
    """
    return -(-sparse_storage_bits(n_weights, density, w_bits, index_bits=index_bits) // 8)


def exact_entries(weight: torch.Tensor, *, index_bits: int = 4) -> int:
    """Stored entries (non-zeros + fillers) of ``weight`` in the relative-index format, counted.

    A gap of ``g`` zeros before a non-zero needs ``g // 2**index_bits`` fillers; trailing
    zeros need no entry. Compare with :func:`automc.cost.formats.sparse_entries`, the
    expectation the cost model uses.
    """
    flat = weight.detach().flatten()
    positions = torch.nonzero(flat, as_tuple=False).flatten()
    if positions.numel() == 0:
        return 0
    previous = torch.cat([positions.new_tensor([-1]), positions[:-1]])
    zeros_before = positions - previous - 1
    return int(positions.numel() + torch.div(zeros_before, 2**index_bits, rounding_mode="floor").sum())


def expected_entries(weight: torch.Tensor, *, index_bits: int = 4) -> int:
    """:func:`automc.cost.formats.sparse_entries` for ``weight``'s size and non-zero count."""
    return sparse_entries(weight.numel(), int(torch.count_nonzero(weight.detach())), index_bits=index_bits)
