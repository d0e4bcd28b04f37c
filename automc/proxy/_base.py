"""The ``Proxy`` protocol, the failure convention and the shared caching base class.

Failure convention (one, everywhere): ``Proxy.evaluate`` either returns a mapping of
finite floats or raises :class:`ProxyFailure` with a one-line ``reason``. Exceptions
raised while a candidate is evaluated, non-finite outputs or metrics, and running out of
memory are all turned into ``ProxyFailure``; the engine records the trial as failed
with the reason and the search goes on. ``KeyboardInterrupt`` and other
``BaseException`` subclasses are not caught.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from automc.errors import AutomcError
from automc.plan import CompressionPlan

DIRECTIONS = ("maximize", "minimize")


class ProxyFailure(RuntimeError):
    """A candidate could not be scored; ``reason`` is one line for the trial record."""

    def __init__(self, reason: str) -> None:
        self.reason = " ".join(str(reason).split()) or "unknown failure"
        super().__init__(self.reason)


@dataclass(frozen=True)
class Metric:
    """One key a proxy returns and which direction is better.

    Attributes:
        key: key in the mapping returned by ``evaluate``.
        direction: ``"maximize"`` or ``"minimize"`` (Optuna's spelling).
    """

    key: str
    direction: str

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise AutomcError(
                f"metric {self.key!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}"
            )


@runtime_checkable
class Proxy(Protocol):
    """Scores a compressed candidate cheaply, as a stand-in for accuracy after fine-tuning."""

    name: str
    metrics: tuple[Metric, ...]

    def evaluate(self, model: nn.Module, plan: CompressionPlan) -> Mapping[str, float]:
        """Score ``model`` (the candidate built from ``plan``); raise ``ProxyFailure`` if it cannot."""
        ...


def _is_oom(error: BaseException) -> bool:
    if isinstance(error, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:300] if first else type(error).__name__


class CachedProxy:
    """Base class: LRU cache keyed by ``plan.digest()`` plus the failure convention.

    Subclasses set ``name`` and ``metrics`` and implement ``_compute(model)``. A proxy
    object belongs to one search (one base model, one ``ProxyData``): the cache key is
    the plan alone, so the same plan evaluated on another model returns the cached
    value. Failures are not cached (an out-of-memory may be transient).

    Attributes:
        evaluations: number of times ``_compute`` ran (cache misses, failures included).
        cache_hits: number of ``evaluate`` calls answered from the cache.
    """

    name: str = ""
    metrics: tuple[Metric, ...] = ()

    def __init__(self, *, cache_size: int = 256) -> None:
        if cache_size < 0:
            raise AutomcError(f"cache_size must be >= 0, got {cache_size}")
        self._cache_size = cache_size
        self._cache: OrderedDict[str, dict[str, float]] = OrderedDict()
        self.evaluations = 0
        self.cache_hits = 0

    def evaluate(self, model: nn.Module, plan: CompressionPlan) -> Mapping[str, float]:
        """Score ``model``; results are cached by ``plan.digest()``.

        Raises:
            ProxyFailure: the candidate raised, produced non-finite values or ran out of memory.
        """
        key = plan.digest()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return dict(cached)
        self.evaluations += 1
        result = guarded(lambda: self._compute(model))
        if self._cache_size:
            self._cache[key] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return dict(result)

    def clear_cache(self) -> None:
        self._cache.clear()

    def _compute(self, model: nn.Module) -> dict[str, float]:
        raise NotImplementedError


def guarded(compute: Callable[[], Mapping[str, float]]) -> dict[str, float]:
    """Run ``compute`` and apply the failure convention to what it raises or returns."""
    try:
        result = compute()
    except ProxyFailure:
        raise
    except Exception as e:
        if _is_oom(e):
            raise ProxyFailure("out of memory") from e
        raise ProxyFailure(_one_line(e)) from e
    out: dict[str, float] = {}
    for key, value in result.items():
        v = float(value)
        if not math.isfinite(v):
            raise ProxyFailure(f"non-finite {key} ({v})")
        out[key] = v
    return out
