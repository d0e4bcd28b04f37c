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

from automc.registry import Registry


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


_REGISTRY: Registry[Callable[[], Criterion]] = Registry(
    kind="pruning criterion",
    plugins=("automc.compress.criteria_impl", "automc.compress.criteria_seeds"),
)
register = _REGISTRY.register
names = _REGISTRY.names
describe = _REGISTRY.describe


def get(name: str) -> Criterion:
    """A fresh instance of the criterion registered as ``name``."""
    return _REGISTRY.get(name)()
