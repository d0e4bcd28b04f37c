"""The CPU's instruction sets that decide which kernels a runtime runs here.

ONNX Runtime's MLAS (and OpenVINO's CPU plugin) pick their kernels from the CPU's features:
the blocked NCHWc float layout is 16 channels wide with AVX-512F and 8 with AVX2, and int8
convolutions use VNNI's ``vpdpbusd`` where the CPU has it and AVX2's saturating
``vpmaddubsw`` where it does not (about half the int8 speed-up; see
``automc.hardware.runtimes.ort``). A latency profile holds for the instruction sets it was
measured with (``RuntimeInfo.isa``): :func:`isa` is what this machine has, so a run can tell
a profile measured on another kind of CPU. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import platform
from pathlib import Path
from typing import Any

__all__ = ["X86_ISA", "cpuinfo_flags", "has_vnni", "isa", "other_cpu", "x86_features"]

X86_ISA = ("avx2", "avx512f", "vnni")
"""The x86-64 features :func:`isa` reports, in order: ``vnni`` is AVX-512 VNNI, AVX-VNNI or AMX."""

_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""``/proc/cpuinfo`` flags of the instructions int8 kernels use instead of ``vpmaddubsw``."""


def x86_features() -> dict[str, bool] | None:
    """numpy's CPU-feature table on an x86-64 CPU (read from the same CPUID bits MLAS reads),
    None on any other architecture."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        umath = importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:
        umath = importlib.import_module("numpy.core._multiarray_umath")
    return dict(umath.__cpu_features__)


def cpuinfo_flags() -> list[str] | None:
    """The first CPU's ``flags`` (x86) or ``Features`` (ARM) in ``/proc/cpuinfo``, None where
    there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            return line.split(":", 1)[1].split()
    return []


def has_vnni() -> bool:
    """Whether this x86-64 CPU has AVX-512 VNNI (numpy's table), or AVX-VNNI or AMX int8
    (``/proc/cpuinfo``, where there is one). False on other architectures."""
    features = x86_features()
    if features is None:
        return False
    if features.get("AVX512VNNI"):
        return True
    flags = cpuinfo_flags()
    return flags is not None and any(flag in flags for flag in _VNNI_FLAGS)


def isa() -> tuple[str, ...]:
    """The kernel-deciding instruction sets of this CPU: on x86-64 those of :data:`X86_ISA`
    it has (e.g. ``("avx2",)`` or ``("avx2", "avx512f", "vnni")``); on ARM ``neon`` plus
    ``dotprod`` and ``i8mm`` where ``/proc/cpuinfo`` lists them; ``()`` elsewhere."""
    features = x86_features()
    if features is not None:
        have = {
            "avx2": bool(features.get("AVX2")),
            "avx512f": bool(features.get("AVX512F")),
            "vnni": has_vnni(),
        }
        return tuple(name for name in X86_ISA if have[name])
    if platform.machine().lower() in ("aarch64", "arm64"):
        flags = cpuinfo_flags() or []
        return ("neon", *(name for flag, name in (("asimddp", "dotprod"), ("i8mm", "i8mm")) if flag in flags))
    return ()


def other_cpu(profile: Any) -> str | None:
    """How the CPU a CPU ``profile`` was measured on differs from this one in the
    instruction sets that decide the runtime's kernels, or None where they agree (or the
    profile is not a CPU's, or records nothing to compare).

    A profile without ``runtime.isa`` (written before it was recorded) is compared by its
    ``channel_block``: 16 was measured with AVX-512F, 8 without.
    """
    if profile is None or profile.device.kind != "cpu":
        return None
    here = isa()
    recorded = tuple(profile.runtime.isa)
    if recorded:
        if set(recorded) == set(here):
            return None
        there = ", ".join(recorded)
    else:
        block = int(profile.runtime.channel_block)
        if block not in (8, 16) or x86_features() is None or (block == 16) == ("avx512f" in here):
            return None
        there = "avx512f (its 16-channel layout)" if block == 16 else "no avx512f (its 8-channel layout)"
    return f"profile {profile.device.id!r} was measured on a CPU with {there}; this one has {', '.join(here) or 'none of them'}"
