"""The CPU's kernel-deciding instruction sets: recorded in a profile, compared with this machine, and
``--profile auto`` choosing the shipped profile measured with them."""

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

    def set_to(features, flags=None):
        monkeypatch.setattr(cpu, "x86_features", lambda: features)
        monkeypatch.setattr(cpu, "cpuinfo_flags", lambda: flags)
        hw_profile._auto.cache_clear()

    yield set_to
    hw_profile._auto.cache_clear()


AVX2 = {"AVX2": True, "AVX512F": False, "AVX512VNNI": False}
AVX512 = {"AVX2": True, "AVX512F": True, "AVX512VNNI": True}


def _with_runtime(profile, **changes):
    return dataclasses.replace(profile, runtime=dataclasses.replace(profile.runtime, **changes))


def test_the_shipped_cpu_profiles_record_the_instruction_sets_they_were_measured_with():
    assert resolve_profile("cpu-x86-2core-ort").runtime.isa == ("avx2", "avx512f", "vnni")
    assert resolve_profile("cpu-x86-2core-avx2-ort").runtime.isa == ("avx2",)
    assert resolve_profile("cpu-x86-2core-avx2-ort").runtime.channel_block == 8


def test_auto_is_the_shipped_profile_measured_with_this_cpus_instruction_sets(machine):
    machine(AVX2)
    assert auto_profile() == "cpu-x86-2core-avx2-ort"
    assert resolve_profile("auto").device.id == "cpu-x86-2core-avx2-ort"
    machine(AVX512)
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


def test_the_search_warns_before_training_when_the_profile_is_another_cpus(machine, capsys):
    machine(AVX2)
    profile = resolve_profile("cpu-x86-2core-ort")
    fix = outcome.profile_fix("resnet20", profile=profile, input_shape=(1, 3, 32, 32))
    assert outcome.warn_if_other_cpu(profile, fix=fix)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("automc: warning: profile 'cpu-x86-2core-ort'")
    assert "automc profile --runtime onnxruntime --device cpu --threads 2 --model resnet20" in err
    assert not outcome.warn_if_other_cpu(resolve_profile("cpu-x86-2core-avx2-ort"), fix=fix)


def test_isa_round_trips_and_a_bad_one_names_the_field(tmp_path):
    profile = resolve_profile("cpu-x86-2core-avx2-ort")
    again = load_hw_profile(dump_hw_profile(profile, tmp_path / "p.yaml"))
    assert again.runtime.isa == ("avx2",)
    text = (tmp_path / "p.yaml").read_text(encoding="utf-8").replace("isa: [avx2]", "isa: avx2")
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(AutomcError, match=r"runtime\.isa: must be a list of instruction-set names"):
        load_hw_profile(tmp_path / "bad.yaml")


def test_benchmarks_record_the_name_auto_resolved_to(machine):
    machine(AVX2)
    assert hw_profile.profile_name("auto") == "cpu-x86-2core-avx2-ort"
    assert hw_profile.profile_name("my-device.yaml") == "my-device.yaml"
