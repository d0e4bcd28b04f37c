"""Structured-pruning criteria: which channels of a dependency group to keep.

A criterion is registered by name with :func:`register` and looked up with :func:`get`.
``compress.apply`` builds one :class:`ChannelGroup` per dependency group to prune and
asks the plan's criterion for the indices to keep. Data-free criteria ignore
``ctx.batches``; data-driven ones (taylor, thinet, lasso) use them and the hooks in
``ctx``. A criterion may also rewrite the consumers' weights after pruning
(``reconstruct``), as LASSO channel selection does with least squares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from automc.errors import AutomcError


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
    name: str
    needs_data: bool

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        """Sorted indices (into ``range(group.channels)``) of the channels to keep."""
        ...

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        """Optionally adjust consumer weights in place before the channels are removed."""
        ...


_REGISTRY: dict[str, Callable[[], Criterion]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str) -> Callable[[Callable[[], Criterion]], Callable[[], Criterion]]:
    def deco(factory: Callable[[], Criterion]) -> Callable[[], Criterion]:
        _REGISTRY[name] = factory
        _DESCRIPTIONS[name] = description
        return factory

    return deco


def _load_builtin() -> None:
    # Importing these modules registers the built-in criteria.
    import automc.compress.criteria_impl  # noqa: F401  (l1, l2, random)
    import automc.compress.criteria_seeds  # noqa: F401  (taylor, thinet, lasso, epruner, correlation)


def names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def describe() -> dict[str, str]:
    _load_builtin()
    return dict(sorted(_DESCRIPTIONS.items()))


def get(name: str) -> Criterion:
    _load_builtin()
    if name not in _REGISTRY:
        raise AutomcError(f"unknown pruning criterion {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]()
