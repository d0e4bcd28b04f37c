"""Zero-cost proxy: SynFlow (Tanaka et al., NeurIPS 2020), data free."""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from automc.errors import AutomcError
from automc.proxy._base import CachedProxy, Metric
from automc.proxy._data import ProxyData


class SynFlowProxy(CachedProxy):
    """Synaptic flow: ``sum |theta * dR/dtheta|`` with ``R = sum(f_|theta|(1))``.

    As in the paper's reference code, every floating-point parameter *and buffer*
    (BatchNorm running statistics included) is replaced by its absolute value, the
    network runs in eval mode on one all-ones input in double precision, and the
    score sums ``|theta * grad|`` over all parameters. It needs no data and no labels,
    and grows with the number and magnitude of surviving weights, so it mainly ranks
    candidates by capacity; it knows nothing about accuracy.

    The candidate is deep-copied (the score needs absolute, double-precision weights)
    and left untouched. Fake-quant modules run in double precision too; a module that
    cannot is reported as a ``ProxyFailure``. Activation fake-quant clips the (large,
    all-positive) SynFlow activations to its calibrated range, where the straight-through
    gradient is zero, so scores of candidates with quantized activations are not
    comparable with float ones. Returns ``{"score"}``.
    """

    name = "synflow"
    metrics: tuple[Metric, ...] = (Metric("score", "maximize"),)

    def __init__(
        self,
        *,
        data: ProxyData | None = None,
        input_shape: tuple[int, ...] | None = None,
        cache_size: int = 256,
    ) -> None:
        super().__init__(cache_size=cache_size)
        if input_shape is None and data is None:
            raise AutomcError(
                "SynFlowProxy needs data= or input_shape= (one sample's shape, e.g. (3, 32, 32))"
            )
        self._input_shape = tuple(input_shape) if input_shape is not None else data.input_shape  # type: ignore[union-attr]

    def _compute(self, model: nn.Module) -> dict[str, float]:
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        device = first.device if first is not None else torch.device("cpu")
        net = copy.deepcopy(model).to(dtype=torch.float64).eval()
        with torch.no_grad():
            for t in itertools.chain(net.parameters(), net.buffers()):
                if t.is_floating_point():
                    t.abs_()
        params = [p for p in net.parameters() if p.is_floating_point()]
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        x = torch.ones((1, *self._input_shape), dtype=torch.float64, device=device)
        with torch.enable_grad():
            net(x).sum().backward()
        score = torch.zeros((), dtype=torch.float64, device=device)
        for p in params:
            if p.grad is not None:
                score += (p.grad * p.detach()).abs().sum()
        return {"score": float(score)}
