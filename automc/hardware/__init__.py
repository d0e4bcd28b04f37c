"""Device measurement: the timing protocol, a device profile's layer table, fit and validation.

``automc profile`` measures a profile with :func:`build_profile`; a search's winners are
timed with :func:`measure_as_profiled`, so their figures compare with the profile's
predictions. Modules, in the order a profile is built:

    * :mod:`~automc.hardware.timing`: warm-up, interleaved repeats, statistic, thread pinning.
    * :mod:`~automc.hardware.table`: the roofline and the per-layer latency table.
    * :mod:`~automc.hardware.variants`: random compressed variants timed end to end, validation.
    * :mod:`~automc.hardware.fitting`: the network-level terms fitted to those variants.
    * :mod:`~automc.hardware.build`: the whole profile, and its recheck against the machine.
    * :mod:`~automc.hardware.runtimes`: the deployment runtimes (torch, onnxruntime) whose
      artifacts are timed and evaluated.

Names are imported on first use, so importing the package imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CompressFn": "automc.hardware.variants",
    "LEVEL_JITTER": "automc.hardware.variants",
    "PHASE_SLOWDOWN_TOLERANCE": "automc.hardware.build",
    "ProfileCase": "automc.hardware.variants",
    "ProfileSettings": "automc.hardware.build",
    "RANK_SHARE": "automc.hardware.variants",
    "Timing": "automc.hardware.timing",
    "TimingProtocol": "automc.hardware.timing",
    "Variant": "automc.hardware.variants",
    "build_profile": "automc.hardware.build",
    "fit_network": "automc.hardware.fitting",
    "fit_overhead": "automc.hardware.fitting",
    "fold_bn": "automc.hardware.timing",
    "measure_artifacts_as_profiled": "automc.hardware.timing",
    "measure_artifacts_ms": "automc.hardware.timing",
    "measure_as_profiled": "automc.hardware.timing",
    "measure_model_ms": "automc.hardware.timing",
    "measure_models_ms": "automc.hardware.timing",
    "measure_roofline": "automc.hardware.table",
    "measure_table": "automc.hardware.table",
    "measure_variants": "automc.hardware.variants",
    "pinned_threads": "automc.hardware.timing",
    "plan_macs": "automc.hardware.variants",
    "random_plan": "automc.hardware.variants",
    "recheck": "automc.hardware.build",
    "refit_loo_ms": "automc.hardware.fitting",
    "table_configs": "automc.hardware.table",
    "table_only": "automc.hardware.fitting",
    "time_artifacts": "automc.hardware.timing",
    "time_callables": "automc.hardware.timing",
    "validation_info": "automc.hardware.variants",
}
"""Public name → the module defining it, imported on first use (PEP 562), so that
``automc.hardware.runtimes`` and torch-free timing do not import torch."""


__all__ = [
    "LEVEL_JITTER",
    "PHASE_SLOWDOWN_TOLERANCE",
    "RANK_SHARE",
    "CompressFn",
    "ProfileCase",
    "ProfileSettings",
    "Timing",
    "TimingProtocol",
    "Variant",
    "build_profile",
    "fit_network",
    "fit_overhead",
    "fold_bn",
    "measure_artifacts_as_profiled",
    "measure_artifacts_ms",
    "measure_as_profiled",
    "measure_model_ms",
    "measure_models_ms",
    "measure_roofline",
    "measure_table",
    "measure_variants",
    "pinned_threads",
    "plan_macs",
    "random_plan",
    "recheck",
    "refit_loo_ms",
    "table_configs",
    "table_only",
    "time_artifacts",
    "time_callables",
    "validation_info",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
