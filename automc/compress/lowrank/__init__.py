"""Low-rank factorisation of conv/linear layers: the method protocol and registry.

A method is a callable ``method(module, rank) -> nn.Module`` returning the replacement
of a (possibly pruned) ``nn.Conv2d`` / ``nn.Linear``; the replacement must map the same
input to the same output shape. The built-in methods:

* :mod:`~automc.compress.lowrank.svd`: ``svd``, truncated SVD into two thin layers;
* :mod:`~automc.compress.lowrank.sparse_lowrank`: ``sparse_lowrank``, ADMM sparse + low
  rank (the two SVD factors plus a masked sparse residual).

The factor shapes of each method are stated once in :mod:`automc.cost.formats`
(:func:`~automc.cost.formats.lowrank_factors`), which the cost model reads.
:data:`REGISTRY` holds the method *classes* (a fresh instance per :func:`get`); the
built-in ones are declared lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from automc.registry import Registry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["REGISTRY", "LowRankMethod", "describe", "get", "names", "register"]


class LowRankMethod(Protocol):
    """Replaces a conv/linear by a factorised module of rank ``rank``."""

    def __call__(self, module: nn.Module, rank: int) -> nn.Module:
        """The replacement of ``module`` (same input and output shapes)."""
        ...


REGISTRY: Registry[Callable[[], LowRankMethod]] = Registry(kind="low-rank method")
REGISTRY.add(
    "svd",
    "automc.compress.lowrank.svd:SVD",
    "truncated SVD into two thin layers (k x k to r channels, then 1 x 1 to m)",
)
REGISTRY.add(
    "sparse_lowrank",
    "automc.compress.lowrank.sparse_lowrank:SparseLowRankMethod",
    "ADMM sparse + low-rank: rank-r factor pair plus a 5%-dense masked residual (Ma et al. 2018)",
)
register = REGISTRY.register
names = REGISTRY.names
describe = REGISTRY.describe


def get(name: str) -> LowRankMethod:
    """A fresh instance of the low-rank method registered as ``name``.

    Raises:
        AutomcError: unknown name (the message lists the known ones).
    """
    return REGISTRY.get(name)()
