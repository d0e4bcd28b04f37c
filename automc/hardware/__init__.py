"""Device measurement: the timing protocol, a device profile's layer table, fit and validation.

``automc profile`` measures a profile with :func:`build_profile`; a search's winners are
timed with :func:`measure_as_profiled`, so their figures compare with the profile's
predictions. Modules, in the order a profile is built:

    * :mod:`~automc.hardware.timing`: warm-up, interleaved repeats, statistic, thread pinning.
    * :mod:`~automc.hardware.table`: the roofline and the per-layer latency table.
    * :mod:`~automc.hardware.variants`: random compressed variants timed end to end, validation.
    * :mod:`~automc.hardware.fitting`: the network-level terms fitted to those variants.
    * :mod:`~automc.hardware.build`: the whole profile, and its recheck against the machine.
"""

from automc.hardware.build import PHASE_SLOWDOWN_TOLERANCE, build_profile, recheck
from automc.hardware.fitting import fit_network, fit_overhead, refit_loo_ms, table_only
from automc.hardware.table import measure_roofline, measure_table, table_configs
from automc.hardware.timing import (
    Timing,
    fold_bn,
    measure_as_profiled,
    measure_model_ms,
    measure_models_ms,
    pinned_threads,
    time_callables,
)
from automc.hardware.variants import (
    LEVEL_JITTER,
    RANK_SHARE,
    CompressFn,
    ProfileCase,
    Variant,
    measure_variants,
    plan_macs,
    random_plan,
    validation_info,
)

__all__ = [
    "LEVEL_JITTER",
    "PHASE_SLOWDOWN_TOLERANCE",
    "RANK_SHARE",
    "CompressFn",
    "ProfileCase",
    "Timing",
    "Variant",
    "build_profile",
    "fit_network",
    "fit_overhead",
    "fold_bn",
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
    "time_callables",
    "validation_info",
]
