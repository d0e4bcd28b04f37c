"""Reconstruction criteria: ThiNet and LASSO channel selection (+ least-squares refit).

Both work on the consumers of the group (the layers reading its channels) through
``ctx.capture_inputs``:

* ``thinet`` (Luo et al. 2017): greedily removes the channel whose removal adds the least
  squared error to the consumers' outputs, on sampled output positions.
* ``lasso`` (He et al. ICCV 2017): LASSO on per-channel coefficients, the L1 penalty raised
  until at most ``n_keep`` are non-zero; ``reconstruct`` then refits the consumers' weights
  on the kept channels by least squares.

Consumer errors are measured on each consumer's pre-activation output, normalised by
that output's energy so that a residual group's many consumers weigh alike. Outputs
that other groups feed (and the bias) are unchanged by this group's pruning and cancel.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automc.compress.criteria import ChannelGroup, CriterionContext
from automc.errors import AutomcError

__all__ = [
    "FIT_POSITIONS",
    "POSITIONS",
    "LassoCriterion",
    "ThiNet",
    "contribution_gram",
    "lasso_select",
    "least_squares_refit",
    "thinet_greedy",
]

POSITIONS = 1024
"""Output positions sampled per consumer for ThiNet/LASSO selection."""
FIT_POSITIONS = 4096
"""Output positions sampled per consumer for the least-squares refit."""


# --------------------------------------------------------------------------- helpers


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise AutomcError(f"{type(module).__name__} has no weight tensor")
    return weight


def _need_data(name: str, ctx: CriterionContext) -> None:
    if not ctx.batches or ctx.capture_inputs is None:
        raise AutomcError(f"pruning criterion {name!r} needs calibration batches (data-driven criterion)")


def _dense_conv_weight(conv: nn.Conv2d) -> torch.Tensor:
    """A grouped conv's weight as the equivalent dense ``out x in x kh x kw`` weight."""
    w = conv.weight.detach()
    if conv.groups == 1:
        return w
    out_g = conv.out_channels // conv.groups
    in_g = conv.in_channels // conv.groups
    dense = w.new_zeros(conv.out_channels, conv.in_channels, *w.shape[2:])
    for g in range(conv.groups):
        dense[g * out_g : (g + 1) * out_g, g * in_g : (g + 1) * in_g] = w[g * out_g : (g + 1) * out_g]
    return dense


@dataclass(frozen=True)
class _Sample:
    """Sampled inputs of one consumer, restricted to the group's channels.

    ``xg`` is ``N x C x f`` (f = kh*kw for convs, ``mult`` features per channel for
    linears), ``wg`` the matching ``out x C x f`` slice of the weight and ``full`` the
    consumer's whole output (without bias) on the same ``N`` samples.
    """

    xg: torch.Tensor
    wg: torch.Tensor
    full: torch.Tensor


def _positions(conv: nn.Conv2d, padding: tuple[int, ...], hw: tuple[int, ...]) -> int:
    """Output positions per image of ``conv`` on an ``H x W`` input."""
    out = 1
    for size, k, s, p, d in zip(hw, conv.kernel_size, conv.stride, padding, conv.dilation):
        out *= (int(size) + 2 * int(p) - int(d) * (int(k) - 1) - 1) // int(s) + 1
    return max(out, 1)


def _sample(
    name: str, module: nn.Module, offset: int, group: ChannelGroup, ctx: CriterionContext, n_pos: int
) -> _Sample | None:
    """Sample ``n_pos`` output positions of a consumer; ``None`` for a consumer type not handled.

    ``offset`` is the first input feature fed by the group (for convs: input channel);
    channel ``c`` feeds features ``offset + c*mult .. offset + (c+1)*mult``.
    """
    assert ctx.capture_inputs is not None
    inputs = ctx.capture_inputs(module).detach().cpu()
    gen = torch.Generator().manual_seed(int(ctx.seed))
    channels = group.channels
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            return None
        padding = tuple(int(p) for p in module.padding)
        if inputs.dim() == 3:
            inputs = inputs.unsqueeze(0)
        per_image = _positions(module, padding, tuple(inputs.shape[-2:]))
        n_images = min(inputs.shape[0], -(-4 * n_pos // per_image))
        if n_images < inputs.shape[0]:
            inputs = inputs[torch.randperm(inputs.shape[0], generator=gen)[:n_images]]
        cols = F.unfold(inputs.double(), module.kernel_size, module.dilation, padding, module.stride)
        b, feats, positions = cols.shape
        cols = cols.permute(0, 2, 1).reshape(b * positions, module.in_channels, feats // module.in_channels)
        w = _dense_conv_weight(module).double().cpu().reshape(module.out_channels, module.in_channels, -1)
        if cols.shape[0] > n_pos:
            cols = cols[torch.randperm(cols.shape[0], generator=gen)[:n_pos]]
        full = torch.einsum("ncf,ocf->no", cols, w)
        return _Sample(xg=cols[:, offset : offset + channels], wg=w[:, offset : offset + channels], full=full)
    if isinstance(module, nn.Linear):
        mult = int(group.mults.get(name, 1))
        cols = inputs.double().reshape(-1, module.in_features)
        if cols.shape[0] > n_pos:
            cols = cols[torch.randperm(cols.shape[0], generator=gen)[:n_pos]]
        w = module.weight.detach().double().cpu()
        span = slice(offset, offset + channels * mult)
        return _Sample(
            xg=cols[:, span].reshape(-1, channels, mult),
            wg=w[:, span].reshape(module.out_features, channels, mult),
            full=cols @ w.T,
        )
    return None


def contribution_gram(group: ChannelGroup, ctx: CriterionContext) -> torch.Tensor:
    """``C x C`` Gram matrix of the channels' normalised contributions to the consumers' outputs.

    Entry ``(c, d)`` is ``sum <Z_c, Z_d> / ||Y||^2`` over consumers, ``Z_c`` being channel
    ``c``'s contribution to the consumer's sampled outputs and ``Y`` the full output.
    """
    gram = torch.zeros(group.channels, group.channels, dtype=torch.float64)
    used = 0
    for name, module, offset in group.consumers:
        s = _sample(name, module, offset, group, ctx, POSITIONS)
        if s is None:
            continue
        z = torch.einsum("ncf,ocf->cno", s.xg, s.wg).reshape(group.channels, -1)
        energy = float((s.full**2).sum()) or 1.0
        gram += (z @ z.T) / energy
        used += 1
    if used == 0:
        raise AutomcError(
            f"dependency group {group.group}: no conv/linear consumer to measure reconstruction error on"
        )
    return gram


def thinet_greedy(gram: torch.Tensor, n_keep: int) -> list[int]:
    """ThiNet's greedy removal on a Gram matrix of channel contributions.

    Repeatedly removes the channel ``c`` minimising ``||sum_{d in removed + c} Z_d||^2`` (=
    the added output error); returns the sorted kept channels.
    """
    channels = gram.shape[0]
    removed: list[int] = []
    cross = torch.zeros(channels, dtype=gram.dtype)
    alive = torch.ones(channels, dtype=torch.bool)
    diag = torch.diagonal(gram)
    while len(removed) < channels - n_keep:
        cost = 2 * cross + diag
        cost[~alive] = float("inf")
        c = int(torch.argmin(cost))
        removed.append(c)
        alive[c] = False
        cross += gram[:, c]
    return sorted(int(i) for i in torch.nonzero(alive).flatten())


class ThiNet:
    name = "thinet"
    needs_data = True

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        _need_data(self.name, ctx)
        if n_keep >= group.channels:
            return list(range(group.channels))
        return thinet_greedy(contribution_gram(group, ctx), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None


def lasso_select(gram: torch.Tensor, n_keep: int, *, steps: int = 40) -> list[int]:
    """LASSO channel selection (He et al. 2017) from the contribution Gram matrix.

    Solves ``min_b ||Y - sum_c b_c Z_c||^2 / 2n + alpha ||b||_1`` (``Y = sum_c Z_c``) through
    the equivalent ``C``-row problem ``X = L^T`` with ``G = L L^T`` (Cholesky) and
    ``y = X 1``, bisecting ``alpha`` (log scale) for the smallest penalty with at most
    ``n_keep`` non-zeros. Channels non-zero there are kept; the rest are filled by
    ``|b|`` at the largest penalty that still had more than ``n_keep`` non-zeros.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    channels = gram.shape[0]
    if n_keep >= channels:
        return list(range(channels))
    g = gram.double().numpy()
    jitter = 1e-10 * max(float(np.trace(g)) / channels, 1e-30)
    chol = np.linalg.cholesky(g + jitter * np.eye(channels))
    x = chol.T
    y = x @ np.ones(channels)
    alpha_max = float(np.abs(x.T @ y).max()) / channels
    lo, hi = np.log(alpha_max * 1e-7), np.log(alpha_max)
    beta_lo = np.ones(channels)
    beta_hi = np.zeros(channels)

    def fit(alpha: float) -> np.ndarray:
        model = Lasso(alpha=alpha, fit_intercept=False, max_iter=20000, tol=1e-8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        return np.asarray(model.coef_, dtype=np.float64)

    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        beta = fit(float(np.exp(mid)))
        if np.count_nonzero(beta) <= n_keep:
            hi, beta_hi = mid, beta
        else:
            lo, beta_lo = mid, beta
        if np.count_nonzero(beta_hi) == n_keep:
            break
    rank = np.lexsort((-np.abs(beta_lo), -(beta_hi != 0).astype(np.int64)))
    return sorted(int(i) for i in rank[:n_keep])


def least_squares_refit(x_kept: torch.Tensor, target: torch.Tensor, *, ridge: float = 1e-8) -> torch.Tensor:
    """``argmin_W ||x_kept W^T - target||^2 + ridge * tr(x^T x)/p ||W||^2``; returns ``out x p``."""
    gram = x_kept.T @ x_kept
    p = gram.shape[0]
    reg = ridge * max(float(torch.trace(gram)) / max(p, 1), 1e-30)
    return torch.linalg.solve(gram + reg * torch.eye(p, dtype=gram.dtype), x_kept.T @ target).T


class LassoCriterion:
    name = "lasso"
    needs_data = True

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        _need_data(self.name, ctx)
        return lasso_select(contribution_gram(group, ctx), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        """Refit each dense conv/linear consumer on the kept channels (grouped convs are left alone).

        The target is the group's original contribution to the consumer's output, so the
        other input channels and the bias stay as they are. Removed channels' weights
        are zeroed (they are removed right after).
        """
        _need_data(self.name, ctx)
        keep = torch.tensor(sorted(kept), dtype=torch.long)
        for name, module, offset in group.consumers:
            if isinstance(module, nn.Conv2d) and module.groups != 1:
                continue
            s = _sample(name, module, offset, group, ctx, FIT_POSITIONS)
            if s is None:
                continue
            target = torch.einsum("ncf,ocf->no", s.xg, s.wg)
            x_kept = s.xg[:, keep].reshape(s.xg.shape[0], -1)
            w_kept = least_squares_refit(x_kept, target).reshape(s.wg.shape[0], len(kept), -1)
            new = torch.zeros_like(s.wg)
            new[:, keep] = w_kept
            channels = group.channels
            with torch.no_grad():
                weight = _weight(module)
                if isinstance(module, nn.Conv2d):
                    weight[:, offset : offset + channels] = new.reshape(
                        weight[:, offset : offset + channels].shape
                    ).to(weight)
                else:
                    span = slice(offset, offset + new.shape[1] * new.shape[2])
                    weight[:, span] = new.reshape(weight.shape[0], -1).to(weight)
