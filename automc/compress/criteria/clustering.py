"""Clustering criteria: EPruner's affinity-propagation exemplars and filter correlation.

* ``epruner`` (Lin et al. TNNLS 2021): affinity propagation over the producers' filters;
  the exemplars are kept.
* ``correlation``: repeatedly drops one filter of the most correlated remaining pair
  (Pearson correlation of the producers' flattened weights; data-free by choice, so it
  is deterministic and needs no calibration set). Of the pair, the filter with the
  smaller L1 norm goes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from automc.compress.criteria import ChannelGroup, CriterionContext
from automc.compress.criteria.magnitude import producer_rows, top_k
from automc.errors import AutomcError

__all__ = [
    "Correlation",
    "EPruner",
    "affinity_propagation",
    "correlation_order",
    "epruner_keep_ratio",
    "similarity_matrix",
]


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
        rows = producer_rows(group, dtype=torch.float64)
        exemplars, labels = affinity_propagation(similarity_matrix(rows, self.beta))
        l1 = rows.abs().sum(dim=1)
        sizes = np.bincount(labels, minlength=len(exemplars))
        big = float(l1.max()) + 1.0
        score = l1.clone()
        for k, e in enumerate(exemplars):
            score[int(e)] = big * (1 + sizes[k]) + l1[int(e)]
        return top_k(score, n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None


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


class Correlation:
    name = "correlation"
    needs_data = False

    def select(self, group: ChannelGroup, n_keep: int, ctx: CriterionContext) -> list[int]:
        if n_keep >= group.channels:
            return list(range(group.channels))
        return correlation_order(producer_rows(group, dtype=torch.float64), n_keep)

    def reconstruct(self, group: ChannelGroup, kept: list[int], ctx: CriterionContext) -> None:
        return None
