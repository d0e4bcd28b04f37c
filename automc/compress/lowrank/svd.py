"""Low-rank method ``svd``: truncated SVD, ``W = U S V^T`` with ``sqrt(S)`` given to both factors.

The factor shapes (also :func:`automc.cost.formats.lowrank_factors`):

* Linear ``m x n`` -> ``Linear(n -> r, no bias)`` then ``Linear(r -> m, bias)``:
  ``r (m + n)`` weights;
* Conv ``k x k``, ``m`` out, ``n`` in -> ``Conv k x k n -> r`` (same stride, padding,
  dilation; no bias) then ``Conv 1 x 1 r -> m`` (bias), from the SVD of ``W`` reshaped to
  ``m x (n k k)``: ``r n k k + r m`` weights.

The result is an ``nn.Sequential`` of the two, so the factors are named ``<name>.0`` and
``<name>.1``. Grouped and depthwise convolutions are not factorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from automc.cost import formats
from automc.errors import AutomcError

__all__ = ["SVD", "max_rank", "svd_factorize"]


def max_rank(module: nn.Module) -> int:
    """:func:`automc.cost.formats.max_rank` of a conv (``min(m, n k k)``) or a linear (``min(m, n)``)."""
    if isinstance(module, nn.Linear):
        return formats.max_rank(module.out_features, module.in_features, 1)
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return formats.max_rank(module.out_channels, module.in_channels // module.groups, kh * kw)
    raise AutomcError(f"cannot factorise a {type(module).__name__}; expected nn.Conv2d or nn.Linear")


def _factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``A @ B`` the best rank-``rank`` approximation; ``A`` is ``m x r``."""
    u, s, vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(matrix.dtype), (root[:, None] * vh[:rank]).to(matrix.dtype)


def _svd_linear(module: nn.Linear, rank: int) -> nn.Sequential:
    weight, bias = module.weight, module.bias
    a, b = _factors(weight, rank)
    first = nn.Linear(module.in_features, rank, bias=False, device=weight.device, dtype=weight.dtype)
    second = nn.Linear(
        rank, module.out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        first.weight.copy_(b)
        second.weight.copy_(a)
        if bias is not None and second.bias is not None:
            second.bias.copy_(bias)
    return nn.Sequential(first, second)


def _svd_conv(module: nn.Conv2d, rank: int) -> nn.Sequential:
    if module.groups != 1:
        raise AutomcError("grouped and depthwise convolutions cannot be factorised")
    weight, bias = module.weight, module.bias
    m, n, kh, kw = (int(v) for v in weight.shape)
    a, b = _factors(weight.reshape(m, n * kh * kw), rank)
    first = nn.Conv2d(
        n,
        rank,
        (kh, kw),
        stride=(int(module.stride[0]), int(module.stride[1])),
        padding=module.padding
        if isinstance(module.padding, str)
        else (int(module.padding[0]), int(module.padding[1])),
        dilation=(int(module.dilation[0]), int(module.dilation[1])),
        bias=False,
        padding_mode=module.padding_mode,
        device=weight.device,
        dtype=weight.dtype,
    )
    second = nn.Conv2d(rank, m, 1, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        first.weight.copy_(b.reshape(rank, n, kh, kw))
        second.weight.copy_(a.reshape(m, rank, 1, 1))
        if bias is not None and second.bias is not None:
            second.bias.copy_(bias)
    return nn.Sequential(first, second)


def svd_factorize(module: nn.Module, rank: int) -> nn.Module:
    """Replace ``module`` by the ``nn.Sequential`` of its two rank-``rank`` SVD factors.

    Raises:
        AutomcError: grouped/depthwise conv, other module types, or ``rank`` outside
            ``1..max_rank(module)``.
    """
    limit = max_rank(module)
    if not 1 <= rank <= limit:
        raise AutomcError(f"rank {rank} outside 1..{limit} for {type(module).__name__}")
    if isinstance(module, nn.Linear):
        return _svd_linear(module, rank)
    assert isinstance(module, nn.Conv2d)
    return _svd_conv(module, rank)


@dataclass(frozen=True)
class SVD:
    """Low-rank method ``svd``: ``method(module, rank)`` is :func:`svd_factorize`."""

    def __call__(self, module: nn.Module, rank: int) -> nn.Module:
        return svd_factorize(module, rank)
