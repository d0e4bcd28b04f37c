"""Proxy evaluators: cheap stand-ins for a candidate's accuracy after fine-tuning.

Build one :class:`ProxyData` per search (fixed, seeded calibration batches from the
train split and the val split in a few large batches; the test split is never read),
then one proxy object per search, and call ``proxy.evaluate(candidate, plan)`` for each
candidate. Results are cached by ``plan.digest()``. A candidate that cannot be scored
raises :class:`ProxyFailure` (see ``automc.proxy._base`` for the convention).

Proxies by name (:func:`create`):
    * ``adaptive_bn``: accuracy/loss on val after BatchNorm recalibration (EagleEye);
      with a teacher also ``kl`` in the same pass.
    * ``vanilla``: accuracy/loss on val with the candidate's stale BatchNorm statistics.
    * ``kl_teacher``: KL(teacher || candidate) on val after recalibration (label free).
    * ``short_train``: accuracy/loss on val after a few SGD steps (KD from the teacher
      if given) and BatchNorm recalibration; needs ``ProxyData`` train batches.
    * ``synflow``: SynFlow zero-cost score (data free).
"""

from __future__ import annotations

from typing import Any

from automc.errors import AutomcError
from automc.proxy._accuracy import (
    AdaptiveBNProxy,
    KLToTeacherProxy,
    ShortTrainProxy,
    VanillaProxy,
    recalibrate_bn,
    teacher_log_probs,
)
from automc.proxy._base import CachedProxy, Metric, Proxy, ProxyFailure, guarded
from automc.proxy._data import ProxyData
from automc.proxy._zero_cost import SynFlowProxy

__all__ = [
    "AdaptiveBNProxy",
    "CachedProxy",
    "KLToTeacherProxy",
    "Metric",
    "Proxy",
    "ProxyData",
    "ProxyFailure",
    "ShortTrainProxy",
    "SynFlowProxy",
    "VanillaProxy",
    "create",
    "describe",
    "guarded",
    "names",
    "recalibrate_bn",
    "teacher_log_probs",
]

_DESCRIPTIONS = {
    "adaptive_bn": "val accuracy/loss after adaptive BatchNorm recalibration (EagleEye); + kl with a teacher",
    "kl_teacher": "KL(teacher || candidate) on val after BatchNorm recalibration (label free)",
    "short_train": "val accuracy/loss after a few SGD steps (KD from the base) and BatchNorm recalibration",
    "synflow": "SynFlow zero-cost score (Tanaka et al. 2020), data free",
    "vanilla": "val accuracy/loss with the candidate's BatchNorm statistics unchanged",
}


def names() -> list[str]:
    return sorted(_DESCRIPTIONS)


def describe() -> dict[str, str]:
    return dict(sorted(_DESCRIPTIONS.items()))


def create(name: str, *, data: ProxyData, teacher: Any = None, cache_size: int = 256) -> Proxy:
    """Build a proxy by name.

    Args:
        name: one of :func:`names`.
        data: the search's ``ProxyData``.
        teacher: the base model; required by ``kl_teacher``, optional for ``adaptive_bn``
            (adds ``kl``) and ``short_train`` (distils from it, adds ``kl``), ignored by the others.
        cache_size: LRU entries kept (0 = no cache).

    Raises:
        AutomcError: unknown name, or ``kl_teacher`` without a teacher.
    """
    if name == "adaptive_bn":
        return AdaptiveBNProxy(data=data, teacher=teacher, cache_size=cache_size)
    if name == "vanilla":
        return VanillaProxy(data=data, cache_size=cache_size)
    if name == "kl_teacher":
        if teacher is None:
            raise AutomcError("proxy 'kl_teacher' needs the base model as teacher")
        return KLToTeacherProxy(data=data, teacher=teacher, cache_size=cache_size)
    if name == "short_train":
        return ShortTrainProxy(data=data, teacher=teacher, cache_size=cache_size)
    if name == "synflow":
        return SynFlowProxy(data=data, cache_size=cache_size)
    raise AutomcError(f"unknown proxy {name!r} (known: {', '.join(names())})")
