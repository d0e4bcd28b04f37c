"""Proxy evaluators: cheap stand-ins for a candidate's accuracy after fine-tuning.

Build one :class:`ProxyData` per search (fixed, seeded calibration batches from the
train split and the val split in a few large batches; the test split is never read),
then one proxy object per search, and call ``proxy.evaluate(candidate, plan)`` for each
candidate. Results are cached by ``plan.digest()``. A candidate that cannot be scored
raises :class:`ProxyFailure` (see ``automc.proxy._base`` for the convention).

Proxies by name (:data:`REGISTRY`, :func:`create`):
    * ``adaptive_bn``: accuracy/loss on val after BatchNorm recalibration (EagleEye);
      with a teacher also ``kl`` in the same pass.
    * ``vanilla``: accuracy/loss on val with the candidate's stale BatchNorm statistics.
    * ``kl_teacher``: KL(teacher || candidate) on val after recalibration (label free).
    * ``short_train``: accuracy/loss on val after a few SGD steps (KD from the teacher
      if given) and BatchNorm recalibration; needs ``ProxyData`` train batches.
    * ``synflow``: SynFlow zero-cost score (data free).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automc.errors import AutomcError
from automc.proxy._accuracy import (
    SHORT_TRAIN_LR,
    AdaptiveBNProxy,
    KLToTeacherProxy,
    ShortTrainProxy,
    VanillaProxy,
    recalibrate_bn,
    teacher_log_probs,
)
from automc.proxy._base import CachedProxy, Metric, Proxy, ProxyFailure, guarded
from automc.proxy._data import ProxyBatches, ProxyData
from automc.proxy._zero_cost import SynFlowProxy
from automc.registry import Registry

__all__ = [
    "REGISTRY",
    "SHORT_TRAIN_LR",
    "AdaptiveBNProxy",
    "CachedProxy",
    "KLToTeacherProxy",
    "Metric",
    "Proxy",
    "ProxyBatches",
    "ProxyData",
    "ProxyFactory",
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

ProxyFactory = Callable[..., Proxy]
"""``factory(data=, teacher=, cache_size=) -> Proxy``; a factory ignores a teacher it does not use."""

REGISTRY: Registry[ProxyFactory] = Registry(kind="proxy")
"""Proxy name -> factory (see :func:`create`)."""


@REGISTRY.register(
    "adaptive_bn", "val accuracy/loss after adaptive BatchNorm recalibration (EagleEye); + kl with a teacher"
)
def _adaptive_bn(*, data: ProxyData, teacher: Any, cache_size: int) -> Proxy:
    return AdaptiveBNProxy(data=data, teacher=teacher, cache_size=cache_size)


@REGISTRY.register("kl_teacher", "KL(teacher || candidate) on val after BatchNorm recalibration (label free)")
def _kl_teacher(*, data: ProxyData, teacher: Any, cache_size: int) -> Proxy:
    if teacher is None:
        raise AutomcError("proxy 'kl_teacher' needs the base model as teacher")
    return KLToTeacherProxy(data=data, teacher=teacher, cache_size=cache_size)


@REGISTRY.register(
    "short_train", "val accuracy/loss after a few SGD steps (KD from the base) and BatchNorm recalibration"
)
def _short_train(*, data: ProxyData, teacher: Any, cache_size: int) -> Proxy:
    return ShortTrainProxy(data=data, teacher=teacher, cache_size=cache_size)


@REGISTRY.register("synflow", "SynFlow zero-cost score (Tanaka et al. 2020), data free")
def _synflow(*, data: ProxyData, teacher: Any, cache_size: int) -> Proxy:
    return SynFlowProxy(data=data, cache_size=cache_size)


@REGISTRY.register("vanilla", "val accuracy/loss with the candidate's BatchNorm statistics unchanged")
def _vanilla(*, data: ProxyData, teacher: Any, cache_size: int) -> Proxy:
    return VanillaProxy(data=data, cache_size=cache_size)


def names() -> list[str]:
    """Registered proxy names, sorted."""
    return REGISTRY.names()


def describe() -> dict[str, str]:
    """Proxy name -> one-line description."""
    return REGISTRY.describe()


def create(name: str, *, data: ProxyData, teacher: Any = None, cache_size: int = 256) -> Proxy:
    """Build a proxy by name.

    Args:
        name: one of :func:`names`.
        data: the search's ``ProxyData``.
        teacher: the base model; required by ``kl_teacher``, optional for ``adaptive_bn``
            (adds ``kl``) and ``short_train`` (distils from it, adds ``kl``), ignored by the others.
        cache_size: LRU entries kept (0 = no cache).

    Raises:
        AutomcError: unknown name (the message lists the known ones), or ``kl_teacher``
            without a teacher.
    """
    return REGISTRY.get(name)(data=data, teacher=teacher, cache_size=cache_size)
