"""The CPU's instruction sets that decide which kernels a runtime runs here.

ONNX Runtime's MLAS (and OpenVINO's CPU plugin) pick their kernels from the CPU's features:
the blocked NCHWc float layout is 16 channels wide with AVX-512F and 8 with AVX2, and int8
convolutions use VNNI's ``vpdpbusd`` where the CPU has it and AVX2's saturating
``vpmaddubsw`` where it does not (about half the int8 speed-up; see
``automc.hardware.runtimes.ort``). A latency profile holds for the instruction sets it was
measured with (``RuntimeInfo.isa``): :func:`isa` is what this machine has, so a run can tell
a profile measured on another kind of CPU.

The same instruction sets do not make the same speed: on an AMD EPYC of family 23 model 1
(AVX2, 128-bit wide AVX units), the AVX2 profile measured on another AVX2 EPYC predicted
resnet20 and mobilenetv2 at 0.61x / 0.60x of their measured latency, and int8 ran slower than
fp32 there (``reports/bench/runtime_zen1.json``). A profile also records the CPU's model
(``RuntimeInfo.cpu``, :func:`cpu_model`), and a run compares both. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import platform
from pathlib import Path
from typing import Any

__all__ = ["CPUINFO", "X86_ISA", "cpu_model", "cpuinfo_flags", "has_vnni", "isa", "other_cpu", "x86_features"]

X86_ISA = ("avx2", "avx512f", "vnni")
"""The x86-64 features :func:`isa` reports, in order: ``vnni`` is AVX-512 VNNI, AVX-VNNI or AMX."""

CPUINFO = Path("/proc/cpuinfo")
"""Where Linux describes the CPU (:func:`cpuinfo_flags`, :func:`cpu_model`)."""

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


def _cpuinfo() -> dict[str, str] | None:
    """The first processor's fields in :data:`CPUINFO`, None where there is no such file."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() and fields:
            break
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpuinfo_flags() -> list[str] | None:
    """The first CPU's ``flags`` (x86) or ``Features`` (ARM) in ``/proc/cpuinfo``, None where
    there is no such file."""
    fields = _cpuinfo()
    if fields is None:
        return None
    return (fields.get("flags") or fields.get("Features") or "").split()


def cpu_model() -> str | None:
    """This CPU's model as ``/proc/cpuinfo`` numbers it, e.g. ``AuthenticAMD family 23 model 1``
    or ``ARM implementer 0x41 architecture 8 part 0xd0c``; None where there is no such file or
    it names none (the marketing name, e.g. ``AMD EPYC`` under a hypervisor, tells models apart
    less well)."""
    f = _cpuinfo() or {}
    if all(f.get(k) for k in ("vendor_id", "cpu family", "model")):
        return f"{f['vendor_id']} family {f['cpu family']} model {f['model']}"
    if all(f.get(k) for k in ("CPU implementer", "CPU architecture", "CPU part")):
        return f"ARM implementer {f['CPU implementer']} architecture {f['CPU architecture']} part {f['CPU part']}"
    return None


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
    """How the CPU a CPU ``profile`` was measured on differs from this one: in the
    instruction sets that decide the runtime's kernels, else in its model
    (:func:`cpu_model`, where the profile records one); None where they agree (or the
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
            model, recorded_model = cpu_model(), profile.runtime.cpu
            if not recorded_model or not model or model == recorded_model:
                return None
            return (
                f"profile {profile.device.id!r} was measured on another CPU model ({recorded_model}); "
                f"this one is {model}, with the same instruction sets ({', '.join(here)})"
            )
        there = ", ".join(recorded)
    else:
        block = int(profile.runtime.channel_block)
        if block not in (8, 16) or x86_features() is None or (block == 16) == ("avx512f" in here):
            return None
        there = "avx512f (its 16-channel layout)" if block == 16 else "no avx512f (its 8-channel layout)"
    return f"profile {profile.device.id!r} was measured on a CPU with {there}; this one has {', '.join(here) or 'none of them'}"
