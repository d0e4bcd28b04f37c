"""The CPU's kernel-deciding instruction sets and its model: recorded in a profile, compared with this
machine, and ``--profile auto`` choosing the shipped profile measured on such a CPU."""

from __future__ import annotations

import dataclasses

import pytest

from automc.errors import AutomcError
from automc.hardware import cpu
from automc.pipeline import outcome
from automc.schema import hw_profile
from automc.schema.hw_profile import auto_profile, dump_hw_profile, load_hw_profile, resolve_profile


@pytest.fixture
def machine(monkeypatch):
    """Make this machine an x86-64 CPU with the given numpy features and /proc/cpuinfo flags."""

    def set_to(features, flags=None, model=None):
        monkeypatch.setattr(cpu, "x86_features", lambda: features)
        monkeypatch.setattr(cpu, "cpuinfo_flags", lambda: flags)
        monkeypatch.setattr(cpu, "cpu_model", lambda: model)
        hw_profile._auto.cache_clear()

    yield set_to
    hw_profile._auto.cache_clear()


AVX2 = {"AVX2": True, "AVX512F": False, "AVX512VNNI": False}
AVX512 = {"AVX2": True, "AVX512F": True, "AVX512VNNI": True}
ZEN1 = "AuthenticAMD family 23 model 1"
ZEN3 = "AuthenticAMD family 25 model 1"
ZEN5 = "AuthenticAMD family 26 model 2"


def _with_runtime(profile, **changes):
    return dataclasses.replace(profile, runtime=dataclasses.replace(profile.runtime, **changes))


def test_the_shipped_cpu_profiles_record_the_instruction_sets_they_were_measured_with():
    assert resolve_profile("cpu-x86-2core-ort").runtime.isa == ("avx2", "avx512f", "vnni")
    assert resolve_profile("cpu-x86-2core-avx2-ort").runtime.isa == ("avx2",)
    assert resolve_profile("cpu-x86-2core-avx2-ort").runtime.channel_block == 8
    zen1 = resolve_profile("cpu-x86-2core-zen1-ort").runtime
    assert (zen1.isa, zen1.cpu, zen1.channel_block) == (("avx2",), ZEN1, 8)
    zen5 = resolve_profile("cpu-x86-2core-zen5-ort").runtime
    assert (zen5.isa, zen5.cpu, zen5.channel_block) == (("avx2", "avx512f", "vnni"), ZEN5, 16)


X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2

processor\t: 1
vendor_id\t: GenuineIntel
"""

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd0c

Hardware\t: some board
"""


@pytest.mark.parametrize(
    ("text", "model", "flags"),
    [
        (X86_CPUINFO, ZEN1, ["fpu", "sse2", "avx2"]),
        (ARM_CPUINFO, "ARM implementer 0x41 architecture 8 part 0xd0c", ["fp", "asimd", "asimddp"]),
        ("processor\t: 0\nmodel name\t: something\n", None, []),
    ],
)
def test_the_cpu_model_and_flags_are_read_from_the_first_processor(monkeypatch, tmp_path, text, model, flags):
    (tmp_path / "cpuinfo").write_text(text)
    monkeypatch.setattr(cpu, "CPUINFO", tmp_path / "cpuinfo")
    assert cpu.cpu_model() == model
    assert cpu.cpuinfo_flags() == flags
    monkeypatch.setattr(cpu, "CPUINFO", tmp_path / "missing")
    assert cpu.cpu_model() is None and cpu.cpuinfo_flags() is None


def test_auto_is_the_shipped_profile_measured_with_this_cpus_instruction_sets(machine):
    machine(AVX2, model=ZEN1)
    assert auto_profile() == "cpu-x86-2core-zen1-ort"
    assert resolve_profile("auto").device.id == "cpu-x86-2core-zen1-ort"
    # another AVX2 model: the AVX2 profile that records no model before one of another model
    machine(AVX2, model=ZEN3)
    assert auto_profile() == "cpu-x86-2core-avx2-ort"
    machine(AVX2)
    assert auto_profile() == "cpu-x86-2core-avx2-ort"
    assert resolve_profile("auto").device.id == "cpu-x86-2core-avx2-ort"
    machine(AVX512)
    assert auto_profile() == "cpu-x86-2core-ort"
    machine(AVX512, model=ZEN5)
    assert auto_profile() == "cpu-x86-2core-zen5-ort"
    machine(AVX512, model=ZEN3)  # another AVX-512 model: the profile that records no model
    assert auto_profile() == "cpu-x86-2core-ort"
    machine(None, ["fp", "asimd"])  # an ARM CPU: none matches, the first is taken
    assert auto_profile() == "cpu-x86-2core-ort"


def test_a_profile_from_another_kind_of_cpu_is_named_with_both_instruction_sets(machine):
    avx512 = resolve_profile("cpu-x86-2core-ort")
    machine(AVX2, ["avx2"])
    reason = cpu.other_cpu(avx512)
    assert reason == (
        "profile 'cpu-x86-2core-ort' was measured on a CPU with avx2, avx512f, vnni; this one has avx2"
    )
    machine(AVX512)
    assert cpu.other_cpu(avx512) is None
    # a profile written before the instruction sets were recorded is judged by its layout block
    legacy = _with_runtime(avx512, isa=())
    assert cpu.other_cpu(legacy) is None
    machine(AVX2)
    assert "avx512f (its 16-channel layout)" in cpu.other_cpu(legacy)
    assert cpu.other_cpu(_with_runtime(legacy, channel_block=0)) is None  # nothing to compare
    eager = resolve_profile("cpu-x86-2core-torch")
    assert (
        cpu.other_cpu(dataclasses.replace(eager, device=dataclasses.replace(eager.device, kind="cuda")))
        is None
    )


def test_a_profile_from_another_cpu_model_with_the_same_instruction_sets_is_named(machine):
    zen1 = resolve_profile("cpu-x86-2core-zen1-ort")
    machine(AVX2, ["avx2"], model=ZEN3)
    assert cpu.other_cpu(zen1) == (
        f"profile 'cpu-x86-2core-zen1-ort' was measured on another CPU model ({ZEN1}); "
        f"this one is {ZEN3}, with the same instruction sets (avx2)"
    )
    machine(AVX2, ["avx2"], model=ZEN1)
    assert cpu.other_cpu(zen1) is None
    machine(AVX2, ["avx2"])  # this CPU's model unknown: nothing to compare
    assert cpu.other_cpu(zen1) is None
    machine(AVX2, ["avx2"], model=ZEN3)  # the profile records no model: nothing to compare
    assert cpu.other_cpu(resolve_profile("cpu-x86-2core-avx2-ort")) is None
    machine(AVX512, model=ZEN1)  # the instruction sets differ: they are what is named
    assert "measured on a CPU with avx2; this one has avx2, avx512f, vnni" in cpu.other_cpu(zen1)


def test_the_search_warns_before_training_when_the_profile_is_another_cpus(machine, capsys):
    machine(AVX2)
    profile = resolve_profile("cpu-x86-2core-ort")
    fix = outcome.profile_fix("resnet20", profile=profile, input_shape=(1, 3, 32, 32))
    assert outcome.warn_if_other_cpu(profile, fix=fix)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("automc: warning: profile 'cpu-x86-2core-ort'")
    assert "automc profile --runtime onnxruntime --device cpu --threads 2 --model resnet20" in err
    assert not outcome.warn_if_other_cpu(resolve_profile("cpu-x86-2core-avx2-ort"), fix=fix)


def test_isa_and_cpu_round_trip_and_a_bad_one_names_the_field(tmp_path):
    profile = resolve_profile("cpu-x86-2core-zen1-ort")
    again = load_hw_profile(dump_hw_profile(profile, tmp_path / "p.yaml"))
    assert (again.runtime.isa, again.runtime.cpu) == (("avx2",), ZEN1)
    text = (tmp_path / "p.yaml").read_text(encoding="utf-8")
    for old, new, field in [
        ("isa: [avx2]", "isa: avx2", r"runtime\.isa: must be a list of instruction-set names"),
        (f"cpu: {ZEN1}", "cpu: 23", r"runtime\.cpu: must be a non-empty string, got 23"),
    ]:
        assert old in text
        (tmp_path / "bad.yaml").write_text(text.replace(old, new), encoding="utf-8")
        with pytest.raises(AutomcError, match=field):
            load_hw_profile(tmp_path / "bad.yaml")
    assert "cpu" not in resolve_profile("cpu-x86-2core-avx2-ort").to_dict()["runtime"]


def test_benchmarks_record_the_name_auto_resolved_to(machine):
    machine(AVX2)
    assert hw_profile.profile_name("auto") == "cpu-x86-2core-avx2-ort"
    assert hw_profile.profile_name("my-device.yaml") == "my-device.yaml"
