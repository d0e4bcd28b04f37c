"""The timing protocol: how every latency in a device profile, and of a search's winners, is measured.

``torch.set_num_threads`` pinned for the measurement (:func:`pinned_threads`; the previous
count is restored afterwards), eval mode, ``torch.inference_mode()``, warm-up calls, then
``repeats`` samples taken in interleaved rounds (every configuration once per round,
shuffled, so slow drifts of the machine hit all alike); each sample averages enough
back-to-back calls to last ~``sample_ms``; the spread is the inter-quartile range. A
profile's statistic is either the median or the minimum of the samples; both are recorded
for every table entry. ``min`` is the profiles' default because it is the reproducible one
on a shared machine: on the 2-core VM this project runs on, the median latency of the same
network drifts by a CV of ~15% between processes (other tenants slow some periods down, by
up to 3x), the minimum by ~6% (measured: 6 processes x 10 networks, resnet20 and
mobilenetv2, 2 threads). On CUDA, samples are timed with CUDA events. Networks are timed
as deployed: BatchNorm folded into the preceding conv (:func:`fold_bn`).

A runtime's artifacts (:mod:`automc.hardware.runtimes`) are timed by the same protocol as
session callables on one numpy batch (:func:`measure_artifacts_ms`). This module imports
torch only where a function needs it, so timing an ONNX artifact imports no torch.

tqdm is used for the progress bar when present.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automc.hardware.runtimes import Runtime
    from automc.schema.hw_profile import HwProfile


@dataclass(frozen=True)
class Timing:
    """Median, minimum and inter-quartile range (ms) of ``count`` samples."""

    median_ms: float
    spread_ms: float
    count: int
    min_ms: float

    def value(self, statistic: str) -> float:
        """The sample statistic a profile uses (``median`` or ``min``)."""
        return self.min_ms if statistic == "min" else self.median_ms


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` and restore the previous count after it.

    Args:
        threads: intra-op threads while the block runs; ``None`` leaves the count as it is.
    """
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _sample_ms(fn: Callable[[], Any], inner: int, device: str) -> float:
    if device.startswith("cuda"):
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / inner
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) * 1e3 / inner


@dataclass(frozen=True, kw_only=True)
class TimingProtocol:
    """How a workload is timed (see the module docstring).

    Attributes:
        warmup: untimed calls per callable before sampling.
        repeats: samples per callable.
        statistic: ``median`` or ``min``: the sample statistic a latency means
            (:meth:`Timing.value`).
        threads: intra-op threads the workload runs with (pinned for torch, the thread count
            of a runtime's session); ``None`` leaves torch's count as it is, and a runtime's
            session then gets one thread.
        sample_ms: target duration of one sample (back-to-back calls are averaged).
        rewarm: untimed calls right before each sample, so every sample is taken with the
            workload's weights and activations in cache, as when a deployed model runs
            alone (interleaving alone would time cold caches and overstate latency).
        seed: shuffling seed of the interleaved rounds.
    """

    warmup: int = 5
    repeats: int = 30
    statistic: str = "median"
    threads: int | None = None
    sample_ms: float = 0.25
    rewarm: int = 2
    seed: int = 0

    @classmethod
    def as_profiled(cls, profile: HwProfile) -> TimingProtocol:
        """``profile``'s threads, warm-up, repeats and statistic (other fields at their defaults)."""
        m = profile.measurement
        return cls(warmup=m.warmup, repeats=m.repeats, statistic=m.statistic, threads=profile.runtime.threads)

    @property
    def session_threads(self) -> int:
        """Intra-op threads of a runtime's session: ``threads``, one when ``None``."""
        return 1 if self.threads is None else self.threads


DEFAULT_TIMING = TimingProtocol()
"""The protocol's defaults: 5 warm-up calls, 30 samples of ~0.25 ms, the median."""


def time_callables(
    fns: Sequence[Callable[[], Any]],
    protocol: TimingProtocol = DEFAULT_TIMING,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "timing",
) -> list[Timing]:
    """Time zero-argument callables with interleaved, shuffled rounds (see the module docstring).

    Args:
        fns: the callables; each call runs the workload once.
        protocol: warm-up, repeats, sample duration, re-warm calls and shuffling seed; its
            ``threads`` and ``statistic`` are the callers' to apply (the callables run as given
            and every statistic is returned).
        device: where they run (``cuda`` is timed with CUDA events; callables that return
            host arrays, like runtime sessions, are timed as ``cpu``).
        progress: show a progress bar.
        desc: progress bar label.

    Returns:
        One :class:`Timing` per callable, in order.
    """
    warmup, repeats, sample_ms = protocol.warmup, protocol.repeats, protocol.sample_ms
    dev = str(device)
    inner: list[int] = []
    bar = _progress(len(fns) * (1 + repeats), desc, progress)
    # torch callables run without autograd; a torch-free workload (an ONNX session) needs no torch
    torch_mod = sys.modules.get("torch")
    grad_off = torch_mod.inference_mode() if torch_mod is not None else contextlib.nullcontext()
    with grad_off:
        for fn in fns:
            for _ in range(max(1, warmup)):
                fn()
            _sync(dev)
            t = _sample_ms(fn, 1, dev)
            inner.append(max(1, min(1000, int(math.ceil(sample_ms / max(t, 1e-6))))))
            if bar is not None:
                bar.update(1)
        samples: list[list[float]] = [[] for _ in fns]
        order = list(range(len(fns)))
        rng = random.Random(protocol.seed)
        for _ in range(repeats):
            rng.shuffle(order)
            for i in order:
                for _ in range(protocol.rewarm):
                    fns[i]()
                samples[i].append(_sample_ms(fns[i], inner[i], dev))
            if bar is not None:
                bar.update(len(fns))
    if bar is not None:
        bar.close()
    out = []
    for s in samples:
        q1, med, q3 = np.percentile(np.asarray(s), [25, 50, 75])
        out.append(Timing(median_ms=float(med), spread_ms=float(q3 - q1), count=len(s), min_ms=min(s)))
    return out


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm2d folded into the conv feeding it.

    Uses ``torch.fx`` to find conv -> BN pairs where the BN is the conv's only consumer;
    the BN becomes ``nn.Identity`` and the conv gets the folded weight and bias, keeping
    the model's own ``forward``. A model ``torch.fx`` cannot trace is returned unfolded
    (eval-mode copy): its BNs are then timed, which overstates deployed latency.
    """
    import torch
    from torch import nn
    from torch.fx import symbolic_trace
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = copy.deepcopy(model).eval()
    try:
        gm = symbolic_trace(out)
    except Exception:  # noqa: BLE001 - any tracing failure means "cannot fold", not an error
        return out
    modules = dict(out.named_modules())
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        prev = node.args[0] if node.args else None
        if not isinstance(prev, torch.fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        conv = modules.get(prev.target)
        if type(conv) is not nn.Conv2d:
            continue
        bn = modules[node.target]
        _set_module(out, str(prev.target), fuse_conv_bn_eval(conv, bn))
        _set_module(out, str(node.target), nn.Identity())
    return out


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


NETWORK_SAMPLE_MS = 2.0
"""Target duration (ms) of one sample of a whole network, whatever a protocol's ``sample_ms``
(which is sized for single layers): the profile's fit and held-out networks
(``automc.hardware.variants.measure_variants``), a search's winners and base model, and
:func:`measure_models_ms` are all timed with it, so their latencies compare."""


def measure_models_ms(
    models: Sequence[nn.Module],
    example_input: torch.Tensor,
    *,
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 30,
    fold: bool = True,
    statistic: str = "median",
) -> list[float]:
    """End-to-end latency (ms, ``statistic`` of the samples) of one forward pass of each model.

    The models are timed in one interleaved run (:func:`time_callables`), so a slow period of
    the machine hits them all alike and their samples are spread over the whole run instead
    of each model's own second. Each is timed as deployed (BatchNorm folded unless ``fold``
    is false), in eval mode under ``torch.inference_mode()``, on the device of ``example_input``,
    with ``threads`` intra-op threads when given (:func:`pinned_threads`).
    """
    x = example_input
    with pinned_threads(threads):
        nets = [(fold_bn(m) if fold else copy.deepcopy(m).eval()).to(x.device) for m in models]
        fns: list[Callable[[], Any]] = [functools.partial(net, x) for net in nets]
        timings = time_callables(
            fns,
            TimingProtocol(warmup=warmup, repeats=repeats, sample_ms=NETWORK_SAMPLE_MS),
            device=str(x.device),
        )
    return [t.value(statistic) for t in timings]


def measure_model_ms(model: nn.Module, example_input: torch.Tensor, **kwargs: Any) -> float:
    """:func:`measure_models_ms` of one model."""
    return measure_models_ms([model], example_input, **kwargs)[0]


def measure_as_profiled(
    profile: HwProfile, models: Sequence[nn.Module], example_input: torch.Tensor
) -> list[float]:
    """:func:`measure_models_ms` with ``profile``'s threads, warm-up, repeats and statistic, so the
    figures compare with its predictions (a minimum over more samples is lower)."""
    m = profile.measurement
    return measure_models_ms(
        models,
        example_input,
        threads=profile.runtime.threads,
        warmup=m.warmup,
        repeats=m.repeats,
        statistic=m.statistic,
    )


def time_artifacts(
    runtime: Runtime,
    artifacts: Sequence[Path],
    example: np.ndarray,
    *,
    threads: int,
    warmup: int = 10,
    repeats: int = 30,
) -> list[Timing]:
    """:class:`Timing` of one batch ``example`` through each of ``runtime``'s ``artifacts``,
    timed in one interleaved run (:func:`time_callables`, samples of :data:`NETWORK_SAMPLE_MS`).

    Each artifact is loaded as a session with ``threads`` intra-op threads. Imports torch only
    when the runtime does (the torch runtime; its thread count is restored afterwards).
    """
    x = np.ascontiguousarray(example, dtype=np.float32)
    before = _torch_threads()
    try:
        fns: list[Callable[[], Any]] = [
            functools.partial(runtime.session(Path(a), threads=threads), x) for a in artifacts
        ]
        return time_callables(
            fns, TimingProtocol(warmup=warmup, repeats=repeats, sample_ms=NETWORK_SAMPLE_MS)
        )
    finally:
        if before is not None:
            sys.modules["torch"].set_num_threads(before)


def measure_artifacts_ms(
    runtime: Runtime,
    artifacts: Sequence[Path],
    example: np.ndarray,
    *,
    threads: int,
    warmup: int = 10,
    repeats: int = 30,
    statistic: str = "median",
) -> list[float]:
    """End-to-end latency (ms, ``statistic`` of the samples) of each artifact (:func:`time_artifacts`)."""
    timings = time_artifacts(runtime, artifacts, example, threads=threads, warmup=warmup, repeats=repeats)
    return [t.value(statistic) for t in timings]


def _torch_threads() -> int | None:
    torch_mod = sys.modules.get("torch")
    return int(torch_mod.get_num_threads()) if torch_mod is not None else None


def measure_artifacts_as_profiled(
    profile: HwProfile, runtime: Runtime, artifacts: Sequence[Path], example: np.ndarray
) -> list[float]:
    """:func:`measure_artifacts_ms` with ``profile``'s threads, warm-up, repeats and statistic."""
    m = profile.measurement
    return measure_artifacts_ms(
        runtime,
        artifacts,
        example,
        threads=profile.runtime.threads,
        warmup=m.warmup,
        repeats=m.repeats,
        statistic=m.statistic,
    )
