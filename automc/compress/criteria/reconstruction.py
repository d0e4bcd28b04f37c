"""Pruning criteria from the seed notes: Taylor (Gate Decorator), ThiNet, LASSO, EPruner, correlation.

Each criterion answers "which channels of this dependency group to keep" (see
:mod:`automc.compress.criteria` for the protocol). The data-driven ones work on the
consumers of the group (the layers reading its channels) through
``ctx.capture_inputs``:

* ``taylor`` (Gate Decorator, Dong et al. NeurIPS 2019): a gate ``phi = 1`` multiplies each
  channel (on the output of the group's BatchNorms, else of its producers); the importance
  is ``|sum over batches of phi * dL/dphi|`` with the cross-entropy loss, summed over the
  gate sites of the group. Without targets the model's own arg-max predictions serve as
  labels (a KL to its own output would have zero gradient at ``phi = 1``).
* ``thinet`` (Luo et al. 2017): greedily removes the channel whose removal adds the least
  squared error to the consumers' outputs, on sampled output positions.
* ``lasso`` (He et al. ICCV 2017): LASSO on per-channel coefficients, the L1 penalty raised
  until at most ``n_keep`` are non-zero; ``reconstruct`` then refits the consumers' weights
  on the kept channels by least squares.
* ``epruner`` (Lin et al. TNNLS 2021): affinity propagation over the producers' filters;
  the exemplars are kept.
* ``correlation``: repeatedly drops one filter of the most correlated remaining pair
  (Pearson correlation of the producers' flattened weights; data-free by choice, so it
  is deterministic and needs no calibration set). Of the pair, the filter with the
  smaller L1 norm goes.

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

from automc.compress.criteria import ChannelGroup, CriterionContext, register
from automc.errors import AutomcError

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


def _producer_rows(group: ChannelGroup) -> torch.Tensor:
    """``channels x features``: the producers' filters side by side (float64)."""
    rows = [_weight(m).detach().double().reshape(group.channels, -1) for _, m in group.producers]
    if not rows:
        raise AutomcError(f"dependency group {group.group} has no producer layer")
    return torch.cat(rows, dim=1)


def _l1(group: ChannelGroup) -> torch.Tensor:
    return _producer_rows(group).abs().sum(dim=1)


def _top(scores: torch.Tensor, n_keep: int) -> list[int]:
    order = torch.argsort(scores, descending=True, stable=True)
    return sorted(int(i) for i in order[:n_keep])


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


def _gram(group: ChannelGroup, ctx: CriterionContext) -> torch.Tensor:
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


# --------------------------------------------------------------------------- taylor


@register(
    "taylor", "Gate Decorator first-order Taylor importance |phi * dL/dphi| of a per-channel gate (data)"
)
class Taylor:
    """Gate Decorator importance. One backward pass per batch serves every group of a model:
    the per-module gate gradients are computed for all BatchNorms (and all conv/linear
    producers) at once on the first ``select`` and cached for that context."""

    name = "taylor"
    needs_data = True

    def __init__(self) -> None:
        self._cache_key: tuple[int, int] | None = None
        self._cache: dict[int, torch.Tensor] = {}

    def _module_scores(self, ctx: CriterionContext) -> dict[int, torch.Tensor]:
        """``id(module) -> sum over batches of phi * dL/dphi`` (signed) for every gate site."""
        key = (id(ctx), id(ctx.model))
        if self._cache_key == key:
            return self._cache
        gated = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Conv2d, nn.Linear)
        sites = [m for m in ctx.model.modules() if isinstance(m, gated)]
        first = next(ctx.model.parameters())
        gates: dict[int, torch.Tensor] = {}

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            gate = gates.get(id(module))
            if gate is None:
                gate = torch.ones(
                    output.shape[1], dtype=output.dtype, device=output.device, requires_grad=True
                )
                gates[id(module)] = gate
            return output * gate.view(1, -1, *([1] * (output.dim() - 2)))

        handles = [site.register_forward_hook(hook) for site in sites]
        totals: dict[int, torch.Tensor] = {}
        try:
            with torch.enable_grad():
                for i, batch in enumerate(ctx.batches):
                    logits = ctx.model(batch.to(first.device))
                    if i < len(ctx.targets):
                        labels = ctx.targets[i].to(logits.device)
                    else:
                        labels = logits.detach().argmax(dim=1)
                    loss = F.cross_entropy(logits, labels)
                    ids = list(gates)
                    grads = torch.autograd.grad(loss, [gates[k] for k in ids], allow_unused=True)
                    for k, grad in zip(ids, grads):
                        if grad is not None:
                            totals[k] = totals.get(k, 0) + (gates[k].detach() * grad).double().cpu()
        finally:
            for h in handles:
                h.remove()
        self._cache_key, self._cache = key, totals
        return totals

    def scores(self, group: ChannelGroup, ctx: CriterionContext) -> torch.Tensor:
        """Per-channel importance ``|sum_batches phi dL/dphi|`` summed over the group's gate sites
        (its BatchNorms, or its producers when it has none)."""
        if not ctx.batches:
            raise AutomcError("pruning criterion 'taylor' needs calibration batches (data-driven criterion)")
        sites = [m for _, m in group.norms] or [m for _, m in group.producers]
        totals = self._module_scores(ctx)
        out = torch.zeros(group.channels, dtype=torch.float64)
        for site in sites:
            if id(site) in totals:
                out += totals[id(site)].abs()
        return out

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        return _top(self.scores(group, ctx), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None


# --------------------------------------------------------------------------- thinet


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


@register("thinet", "ThiNet greedy channel selection minimising the next layer's output error (data)")
class ThiNet:
    name = "thinet"
    needs_data = True

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        _need_data(self.name, ctx)
        if n_keep >= group.channels:
            return list(range(group.channels))
        return thinet_greedy(_gram(group, ctx), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None


# --------------------------------------------------------------------------- lasso


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


@register(
    "lasso", "LASSO channel selection + least-squares reconstruction of the next layer (He et al., data)"
)
class LassoCriterion:
    name = "lasso"
    needs_data = True

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        _need_data(self.name, ctx)
        return lasso_select(_gram(group, ctx), n_keep)

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


# --------------------------------------------------------------------------- epruner


def similarity_matrix(weights: torch.Tensor, beta: float) -> np.ndarray:
    """EPruner's similarities: ``-||w_i - w_j||^2``, preference ``beta * median`` (off-diagonal)."""
    w = weights.detach().double().reshape(weights.shape[0], -1)
    sim = -(torch.cdist(w, w) ** 2).numpy()
    n = sim.shape[0]
    off = sim[~np.eye(n, dtype=bool)]
    np.fill_diagonal(sim, beta * float(np.median(off)) if off.size else 0.0)
    return sim


def affinity_propagation(
    sim: np.ndarray, *, damping: float = 0.5, iterations: int = 200, convergence_iter: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """Affinity propagation (Frey & Dueck 2007), vectorised; the preference is ``diag(sim)``.

    Follows scikit-learn's update order, stopping rule and exemplar refinement (without its
    tie-breaking noise). Returns ``(exemplars, labels)``: sorted exemplar indices and, per
    point, the index into ``exemplars`` of its cluster. If no exemplar emerges every point
    is its own exemplar.
    """
    s = np.array(sim, dtype=np.float64)
    n = s.shape[0]
    if n == 1:
        return np.array([0]), np.array([0])
    r = np.zeros((n, n))
    a = np.zeros((n, n))
    ind = np.arange(n)
    history = np.zeros((n, convergence_iter), dtype=bool)
    exemplar = np.zeros(n, dtype=bool)
    for it in range(iterations):
        tmp = a + s
        best = np.argmax(tmp, axis=1)
        first = tmp[ind, best]
        tmp[ind, best] = -np.inf
        second = np.max(tmp, axis=1)
        new_r = s - first[:, None]
        new_r[ind, best] = s[ind, best] - second
        r = damping * r + (1 - damping) * new_r
        rp = np.maximum(r, 0)
        rp[ind, ind] = r[ind, ind]
        new_a = rp.sum(axis=0)[None, :] - rp
        diag_a = np.diag(new_a).copy()
        new_a = np.minimum(new_a, 0)
        new_a[ind, ind] = diag_a
        a = damping * a + (1 - damping) * new_a
        exemplar = (np.diag(a) + np.diag(r)) > 0
        history[:, it % convergence_iter] = exemplar
        if it >= convergence_iter:
            stable = history.sum(axis=1)
            if np.all((stable == convergence_iter) | (stable == 0)) and exemplar.any():
                break
    chosen = np.flatnonzero(exemplar)
    if chosen.size == 0:
        return ind.copy(), ind.copy()
    labels = np.argmax(s[:, chosen], axis=1)
    labels[chosen] = np.arange(chosen.size)
    for k in range(chosen.size):
        members = np.flatnonzero(labels == k)
        chosen[k] = members[np.argmax(s[np.ix_(members, members)].sum(axis=0))]
    labels = np.argmax(s[:, chosen], axis=1)
    labels[chosen] = np.arange(chosen.size)
    centres = np.unique(chosen[labels])
    return centres, np.searchsorted(centres, chosen[labels])


def epruner_keep_ratio(weights: torch.Tensor, *, beta: float = 0.75) -> float:
    """EPruner's adaptive keep ratio of one layer: exemplars / filters.

    Args:
        weights: the layer's filters, dim 0 = output channel.
        beta: preference factor in (0, 1]; smaller means more exemplars (less pruning).
    """
    if not 0.0 < beta <= 1.0:
        raise AutomcError(f"EPruner beta must be in (0, 1], got {beta!r}")
    exemplars, _ = affinity_propagation(similarity_matrix(weights, beta))
    return len(exemplars) / weights.shape[0]


@dataclass
class EPruner:
    """Keeps the affinity-propagation exemplars of the producers' filters.

    More exemplars than ``n_keep``: those with the largest clusters (ties: larger L1).
    Fewer: the remaining places go to the largest-L1 other filters.
    """

    beta: float = 0.75
    name: str = "epruner"
    needs_data: bool = False

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        rows = _producer_rows(group)
        exemplars, labels = affinity_propagation(similarity_matrix(rows, self.beta))
        l1 = rows.abs().sum(dim=1)
        sizes = np.bincount(labels, minlength=len(exemplars))
        big = float(l1.max()) + 1.0
        score = l1.clone()
        for k, e in enumerate(exemplars):
            score[int(e)] = big * (1 + sizes[k]) + l1[int(e)]
        return _top(score, n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None


register(
    "epruner", "EPruner: affinity-propagation exemplar filters (beta 0.75, damping 0.5, 200 iterations)"
)(EPruner)


# --------------------------------------------------------------------------- correlation


def correlation_order(rows: torch.Tensor, n_keep: int) -> list[int]:
    """Drop filters from the most correlated pair until ``n_keep`` remain; sorted kept indices.

    Of a pair the one with the smaller L1 norm goes. Constant filters have correlation 0.
    """
    x = rows.double()
    x = x - x.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    corr = ((x / norm.clamp(min=1e-30)) @ (x / norm.clamp(min=1e-30)).T).abs()
    corr.fill_diagonal_(-1.0)
    l1 = rows.double().abs().sum(dim=1)
    alive = torch.ones(rows.shape[0], dtype=torch.bool)
    while int(alive.sum()) > n_keep:
        flat = int(torch.argmax(corr))
        i, j = divmod(flat, corr.shape[1])
        drop = i if l1[i] < l1[j] or (l1[i] == l1[j] and i > j) else j
        alive[drop] = False
        corr[drop, :] = -1.0
        corr[:, drop] = -1.0
    return sorted(int(i) for i in torch.nonzero(alive).flatten())


@register("correlation", "drop one filter of the most correlated pair (weights, Pearson) until the budget")
class Correlation:
    name = "correlation"
    needs_data = False

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        if n_keep >= group.channels:
            return list(range(group.channels))
        return correlation_order(_producer_rows(group), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None
