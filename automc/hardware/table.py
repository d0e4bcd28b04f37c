"""The device profile's layer table and roofline, measured on this machine.

The table holds every layer configuration the models and their compressed variants can
take (:func:`table_configs`: each layer's shape x a grid of channel counts, plus the two
low-rank factors), each timed as a standalone ``Conv2d``/``Linear`` with a bias
(deployment folds BatchNorm into it). The roofline is the attainable MAC/s (large matmul),
memory bandwidth (large copy) and the launch overhead of a trivial conv.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import MappingProxyType

import torch
from torch import nn

from automc.cost.latency import DEFAULT_CHANNEL_FRACTIONS, layer_stages
from automc.hardware.timing import time_callables
from automc.plan import LayerSpec
from automc.schema.hw_profile import ConfigKey, LatencyEntry, Roofline


def table_configs(
    layer_lists: Iterable[Sequence[LayerSpec]],
    *,
    channel_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS,
    rank_fractions: Sequence[float] = DEFAULT_CHANNEL_FRACTIONS,
    batch: int = 1,
    bits: int = 32,
    lowrank: bool = True,
) -> list[ConfigKey]:
    """Every table configuration the models and their compressed variants can take (sorted)."""
    keys: set[ConfigKey] = set()
    for layers in layer_lists:
        for spec in layers:
            plain, factors = layer_stages(spec, channel_fractions, rank_fractions)
            stages = [plain] + (list(factors) if factors is not None and lowrank else [])
            for st in stages:
                for n, m in st.grid_points():
                    keys.add(st.key(n, m, bits, batch))
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


def measure_table(
    keys: Sequence[ConfigKey],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 5,
    repeats: int = 30,
    sample_ms: float = 0.25,
    seed: int = 0,
    progress: bool = False,
) -> list[LatencyEntry]:
    """Time each configuration as a standalone layer; return the table entries.

    Only float (32-bit) entries are measured: a fake-quantized layer runs at float speed.
    """
    dev = torch.device(device)
    fns = []
    for key in keys:
        mod, x = _module_for(key, dev)
        fns.append(lambda mod=mod, x=x: mod(x))
    timings = time_callables(
        fns,
        device=dev,
        warmup=warmup,
        repeats=repeats,
        sample_ms=sample_ms,
        seed=seed,
        progress=progress,
        desc="layer table",
    )
    entries = []
    for key, t in zip(keys, timings):
        kind, ih, iw, n, m, kh, kw, sh, sw, ph, pw, groups, bits, batch = key
        entries.append(
            LatencyEntry(
                kind=kind,
                in_size=(ih, iw),
                in_channels=n,
                out_channels=m,
                kernel=(kh, kw),
                stride=(sh, sw),
                padding=(ph, pw),
                groups=groups,
                bits=bits,
                batch=batch,
                median_ms=max(t.median_ms, 1e-6),
                spread_ms=t.spread_ms,
                count=t.count,
                min_ms=max(t.min_ms, 1e-6),
            )
        )
    return entries


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
        device=dev,
        warmup=2,
        repeats=repeats,
        sample_ms=2.0,
    )
    peak = size**3 / (t_mm.median_ms * 1e-3)
    bandwidth = 2 * src.numel() * 4 / (t_copy.median_ms * 1e-3)
    return Roofline(
        peak_macs_per_s=MappingProxyType({"fp32": peak}),
        memory_bandwidth_bytes_per_s=bandwidth,
        launch_overhead_ms=t_tiny.median_ms,
    )
