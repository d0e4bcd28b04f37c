"""Structured-pruning criteria: which channels of a dependency group to keep.

``compress.apply`` builds one :class:`ChannelGroup` per dependency group to prune and
asks the plan's criterion (:func:`get`) for the indices to keep. Data-free criteria
ignore ``ctx.batches``; data-driven ones (taylor, thinet, lasso) use them and the hooks
in ``ctx``. A criterion may also rewrite the consumers' weights after pruning
(``reconstruct``), as LASSO channel selection does with least squares.

The built-in criteria, by what they measure:

* :mod:`~automc.compress.criteria.magnitude`: ``l1``, ``l2`` filter norms, ``group_l1``
  (Torch-Pruning's group magnitude) and the ``random`` baseline;
* :mod:`~automc.compress.criteria.reconstruction`: ``thinet``, ``lasso``;
* :mod:`~automc.compress.criteria.gradient`: ``taylor`` (Gate Decorator);
* :mod:`~automc.compress.criteria.clustering`: ``epruner``, ``correlation``.

:data:`REGISTRY` holds the criterion *classes* (a fresh instance per :func:`get`); the
built-in ones are declared lazily, so listing them imports no implementation module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from automc.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "REGISTRY",
    "ChannelGroup",
    "Criterion",
    "CriterionContext",
    "describe",
    "get",
    "names",
    "register",
]


@dataclass
class ChannelGroup:
    """Channels coupled by residual adds / concatenation / depthwise convs.

    Attributes:
        group: dependency-group id (``LayerSpec.group``).
        channels: number of channels in the group.
        producers: ``(name, module)`` of convs/linears whose output channels (dim 0 of
            the weight) are these channels.
        norms: ``(name, module)`` of BatchNorm layers normalising these channels.
        consumers: ``(name, module, offset)``: layers that read these channels as
            input; the group's channels are input channels ``offset .. offset+channels``
            of the consumer (times ``mult`` features each for a linear after flatten).
        mults: consumer name -> input features per channel (1 for convs).
    """

    group: int
    channels: int
    producers: list[tuple[str, nn.Module]]
    norms: list[tuple[str, nn.Module]] = field(default_factory=list)
    consumers: list[tuple[str, nn.Module, int]] = field(default_factory=list)
    mults: dict[str, int] = field(default_factory=dict)


@dataclass
class CriterionContext:
    """What a criterion may use besides the weights.

    Attributes:
        model: the (uncompressed) model being pruned, in eval mode.
        batches: calibration input batches (may be empty for data-free use).
        targets: labels for ``batches`` when known (Taylor uses the loss).
        seed: for random choices.
        capture_inputs: ``capture_inputs(module) -> Tensor`` returns the inputs that
            ``module`` sees over ``batches`` (cached), for ThiNet/LASSO.
    """

    model: nn.Module
    batches: Sequence[torch.Tensor] = ()
    targets: Sequence[torch.Tensor] = ()
    seed: int = 0
    capture_inputs: Callable[[nn.Module], torch.Tensor] | None = None


class Criterion(Protocol):
    """A channel-selection rule; ``needs_data`` when it reads ``ctx.batches``."""

    name: str
    needs_data: bool

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        """Sorted indices (into ``range(group.channels)``) of the channels to keep."""
        ...

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        """Optionally adjust consumer weights in place before the channels are removed."""
        ...


REGISTRY: Registry[Callable[[], Criterion]] = Registry(kind="pruning criterion")
REGISTRY.add(
    "l1",
    "automc.compress.criteria.magnitude:L1",
    "L1 norm of each filter summed over the group's producers (Li et al. 2017)",
)
REGISTRY.add("l2", "automc.compress.criteria.magnitude:L2", "L2 norm of the group's concatenated filters")
REGISTRY.add(
    "group_l1",
    "automc.compress.criteria.magnitude:GroupL1",
    "group magnitude: L1 of producers, BatchNorm and consumers, mean-normalised per layer, then averaged",
)
REGISTRY.add(
    "tp_l1",
    "automc.compress.criteria.magnitude:TorchPruningL1",
    "Torch-Pruning's MagnitudeImportance(p=1): the same L1s averaged as they are",
)
REGISTRY.add(
    "random",
    "automc.compress.criteria.magnitude:RandomCriterion",
    "uniformly random channels (seeded baseline)",
)
REGISTRY.add(
    "thinet",
    "automc.compress.criteria.reconstruction:ThiNet",
    "ThiNet greedy channel selection minimising the next layer's output error (data)",
)
REGISTRY.add(
    "lasso",
    "automc.compress.criteria.reconstruction:LassoCriterion",
    "LASSO channel selection + least-squares reconstruction of the next layer (He et al., data)",
)
REGISTRY.add(
    "taylor",
    "automc.compress.criteria.gradient:Taylor",
    "Gate Decorator first-order Taylor importance |phi * dL/dphi| of a per-channel gate (data)",
)
REGISTRY.add(
    "epruner",
    "automc.compress.criteria.clustering:EPruner",
    "EPruner: affinity-propagation exemplar filters (beta 0.75, damping 0.5, 200 iterations)",
)
REGISTRY.add(
    "correlation",
    "automc.compress.criteria.clustering:Correlation",
    "drop one filter of the most correlated pair (weights, Pearson) until the budget",
)
register = REGISTRY.register
names = REGISTRY.names
describe = REGISTRY.describe


def get(name: str) -> Criterion:
    """A fresh instance of the criterion registered as ``name``.

    Raises:
        AutomcError: unknown name (the message lists the known ones).
    """
    return REGISTRY.get(name)()
