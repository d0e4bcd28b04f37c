"""The device profile's layer table and roofline, measured on this machine.

The table holds every layer configuration the models and their compressed variants can
take (:func:`table_configs`: each layer's shape x a grid of channel counts, plus the two
low-rank factors), at every precision the runtime executes, each timed as a standalone
``Conv2d``/``Linear`` with a bias (deployment folds BatchNorm into it). On torch eager the
layer module itself is called; on another runtime (``automc.hardware.runtimes``) each
configuration is exported through the runtime as a single-layer model (fp32, or int8 QDQ
for an 8-bit entry) and its session is timed, batch as profiled. The roofline is the
attainable fp32 MAC/s (large matmul), memory bandwidth (large copy) and the launch
overhead of a trivial conv, measured in torch: it only prices configurations outside the
table.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from automc.cost.latency import DEFAULT_CHANNEL_FRACTIONS, layer_stages
from automc.hardware.timing import DEFAULT_TIMING, Timing, TimingProtocol, time_callables
from automc.plan import LayerSpec
from automc.schema.hw_profile import ConfigKey, LatencyEntry, Roofline

if TYPE_CHECKING:
    from automc.hardware.runtimes import Runtime

SESSIONS_PER_ROUND = 64
"""Table configurations whose runtime sessions are alive (and timed interleaved) at once. Their
workers do not spin (``automc.hardware.runtimes.ort_session.SPINNING``), so live sessions
leave the cores to the one being timed; rounds bound the memory that many sessions hold."""


def table_configs(
    layer_lists: Iterable[Sequence[LayerSpec]],
    *,
    channel_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS,
    rank_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS,
    batch: int = 1,
    bits: int | Sequence[int] = 32,
    lowrank: bool = True,
    block: int = 0,
) -> list[ConfigKey]:
    """Every table configuration the models and their compressed variants can take (sorted),
    at each of ``bits`` (one width or several: ``(32, 8)`` for fp32 and int8), with the conv
    grids on a blocked layout of ``block`` channels (``automc.cost.latency.layer_stages``)."""
    widths = (bits,) if isinstance(bits, int) else tuple(bits)
    keys: set[ConfigKey] = set()
    for layers in layer_lists:
        for spec in layers:
            plain, factors = layer_stages(spec, channel_fractions, rank_fractions, block)
            stages = [plain] + (list(factors) if factors is not None and lowrank else [])
            for st in stages:
                for n, m in st.grid_points():
                    keys.update(st.key(n, m, b, batch) for b in widths)
    return sorted(keys)


def _module_for(key: ConfigKey, device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    kind, ih, iw, n, m, kh, kw, sh, sw, ph, pw, groups, _bits, batch = key
    if kind == "linear":
        mod: nn.Module = nn.Linear(n, m, bias=True)
        x = torch.randn(batch, n)
    else:
        mod = nn.Conv2d(n, m, (kh, kw), stride=(sh, sw), padding=(ph, pw), groups=groups, bias=True)
        x = torch.randn(batch, n, ih, iw)
    return mod.eval().to(device), x.to(device)


def _runtime_fns(
    keys: Sequence[ConfigKey], runtime: Runtime, threads: int, workdir: Path
) -> list[Callable[[], Any]]:
    """One session call per configuration: the layer exported alone through ``runtime``."""
    fns: list[Callable[[], Any]] = []
    for i, key in enumerate(keys):
        mod, x = _module_for(key, torch.device("cpu"))
        int8 = ("0",) if key[12] <= 8 else ()
        artifact = runtime.export(
            nn.Sequential(mod),
            x,
            workdir / f"layer{i}{runtime.suffix}",
            int8_layers=int8,
            calib=[x] if int8 else (),
        )
        fns.append(functools.partial(runtime.session(artifact, threads=threads), x.numpy()))
    return fns


def measure_table(
    keys: Sequence[ConfigKey],
    protocol: TimingProtocol = DEFAULT_TIMING,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
    runtime: Runtime | None = None,
) -> list[LatencyEntry]:
    """Time each configuration as a standalone layer; return the table entries.

    Args:
        keys: the configurations (:func:`table_configs`).
        protocol: how each configuration is timed; its ``session_threads`` are the intra-op
            threads of the runtime's sessions, its ``seed`` shuffles the interleaved rounds.
        device: where torch eager runs them.
        progress: show a progress bar.
        runtime: a non-torch runtime times each configuration exported through it (8-bit
            keys as int8) in rounds of :data:`SESSIONS_PER_ROUND` sessions; ``None`` or the
            torch runtime call the layer module (32-bit keys only: a fake-quantized layer
            runs at float speed there).
    """
    dev = torch.device(device)
    timings: list[Timing] = []
    if runtime is None or runtime.name == "torch":
        fns = []
        for key in keys:
            mod, x = _module_for(key, dev)
            fns.append(lambda mod=mod, x=x: mod(x))
        timings = time_callables(fns, protocol, device=dev, progress=progress, desc="layer table")
    else:
        with tempfile.TemporaryDirectory(prefix="automc-table-") as tmp:
            for start in range(0, len(keys), SESSIONS_PER_ROUND):
                chunk = keys[start : start + SESSIONS_PER_ROUND]
                timings += time_callables(
                    _runtime_fns(chunk, runtime, protocol.session_threads, Path(tmp)),
                    replace(protocol, seed=protocol.seed + start),
                    progress=progress,
                    desc=f"layer table {start + len(chunk)}/{len(keys)}",
                )
    return [
        LatencyEntry.from_key(
            key,
            median_ms=max(t.median_ms, 1e-6),
            spread_ms=t.spread_ms,
            count=t.count,
            min_ms=max(t.min_ms, 1e-6),
        )
        for key, t in zip(keys, timings)
    ]


def measure_roofline(*, device: torch.device | str = "cpu", repeats: int = 5) -> Roofline:
    """Attainable fp32 MAC/s (matmul), memory bandwidth (copy) and launch overhead (tiny conv)."""
    dev = torch.device(device)
    size = 512
    a, b = torch.randn(size, size, device=dev), torch.randn(size, size, device=dev)
    src = torch.randn(16 * 1024 * 1024, device=dev)
    dst = torch.empty_like(src)
    tiny, tx = _module_for(("conv2d", 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 32, 1), dev)
    t_mm, t_copy, t_tiny = time_callables(
        [lambda: torch.mm(a, b), lambda: dst.copy_(src), lambda: tiny(tx)],
        TimingProtocol(warmup=2, repeats=repeats, sample_ms=2.0),
        device=dev,
    )
    peak = size**3 / (t_mm.median_ms * 1e-3)
    bandwidth = 2 * src.numel() * 4 / (t_copy.median_ms * 1e-3)
    return Roofline(
        peak_macs_per_s=MappingProxyType({"fp32": peak}),
        memory_bandwidth_bytes_per_s=bandwidth,
        launch_overhead_ms=t_tiny.median_ms,
    )
