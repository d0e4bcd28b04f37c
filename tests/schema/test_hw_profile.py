"""Strict validation, round trip and name resolution of device profiles (``automc/hw-profile``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from automc.errors import AutomcError, ConfigError
from automc.schema.hw_profile import dump_hw_profile, load_hw_profile, parse_hw_profile, resolve_profile


def profile_dict() -> dict[str, Any]:
    """A small valid profile: one 3x3 conv shape on a 2x2 channel grid plus one linear."""
    table = []
    for n in (4, 8):
        for m in (4, 8):
            table.append(
                {
                    "kind": "conv2d",
                    "in_size": 8,
                    "in_channels": n,
                    "out_channels": m,
                    "kernel": 3,
                    "stride": 1,
                    "padding": 1,
                    "groups": 1,
                    "bits": 32,
                    "batch": 1,
                    "median_ms": 0.01 + 0.001 * n * m,
                    "spread_ms": 0.0005,
                    "count": 5,
                }
            )
    table.append(
        {
            "kind": "linear",
            "in_size": 1,
            "in_channels": 8,
            "out_channels": 10,
            "kernel": 1,
            "stride": 1,
            "groups": 1,
            "bits": 32,
            "batch": 1,
            "median_ms": 0.004,
            "spread_ms": 0.0,
            "count": 5,
        }
    )
    return {
        "schema": "automc/hw-profile",
        "version": 1,
        "device": {"id": "toy", "kind": "cpu", "description": "hand-written"},
        "runtime": {"framework": "torch", "version": "2.5", "threads": 1, "batch": 1, "dtype": "float32"},
        "measurement": {"warmup": 2, "repeats": 5, "statistic": "median", "date": "2026-01-01"},
        "roofline": {
            "peak_macs_per_s": {"fp32": 1.0e9},
            "memory_bandwidth_bytes_per_s": 1.0e9,
            "launch_overhead_ms": 0.01,
        },
        "energy": {"table": "energy-45nm", "onchip_buffer_bytes": 1048576},
        "latency": {
            "network_overhead_ms": 0.05,
            "layer_overhead_ms": 0.001,
            "elementwise_ns_per_element": 0.5,
            "grid": {"channel_fractions": [0.5, 1.0], "rank_fractions": [0.5, 1.0]},
            "table": table,
        },
        "validation": {
            "models": ["toy"],
            "n": 3,
            "within_10pct": 1.0,
            "rmspe": 0.02,
            "spearman": 1.0,
            "flops_spearman": 0.5,
        },
    }


def write(tmp_path: Path, data: dict[str, Any], name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_valid_profile_loads(tmp_path: Path) -> None:
    prof = load_hw_profile(write(tmp_path, profile_dict()))
    assert prof.device.id == "toy" and prof.device.kind == "cpu"
    assert prof.runtime.threads == 1 and prof.runtime.batch == 1
    assert len(prof.latency.entries) == 5
    first = prof.latency.entries[0]
    assert first.in_size == (8, 8) and first.kernel == (3, 3) and first.padding == (1, 1)
    linear = prof.latency.entries[-1]
    assert linear.padding == (0, 0)  # default padding = kernel // 2
    assert prof.latency.grid["channel_fractions"] == (0.5, 1.0)
    assert prof.validation is not None and prof.validation.flops_spearman == 0.5
    assert prof.has_latency


NET = {"model": "toy", "fingerprint": "abc", "table_scale": 1.2, "network_overhead_ms": 0.1}


def test_network_fit_stage_cost_is_optional(tmp_path: Path) -> None:
    """Profiles measured before ``extra_stage_ms`` existed load with it at 0; a new one round-trips."""
    data = profile_dict()
    data["latency"]["networks"] = [dict(NET), dict(NET, fingerprint="def", extra_stage_ms=0.02)]
    old, new = load_hw_profile(write(tmp_path, data)).latency.networks
    assert old.extra_stage_ms == 0.0 and new.extra_stage_ms == 0.02
    assert new.to_dict()["extra_stage_ms"] == 0.02
    data["latency"]["networks"] = [dict(NET, extra_stage_ms=-0.003)]  # a session call the table overprices
    assert load_hw_profile(write(tmp_path, data)).latency.networks[0].extra_stage_ms == -0.003
    data["latency"]["networks"] = [dict(NET, network_overhead_ms=-0.2)]  # each layer's session call
    assert load_hw_profile(write(tmp_path, data)).latency.networks[0].network_overhead_ms == -0.2


def test_network_fit_transition_cost_is_optional(tmp_path: Path) -> None:
    """Profiles measured before ``transition_ms`` existed load with it at 0 (and write none);
    a new one round-trips."""
    data = profile_dict()
    data["latency"]["networks"] = [dict(NET), dict(NET, fingerprint="def", transition_ms=0.015)]
    old, new = load_hw_profile(write(tmp_path, data)).latency.networks
    assert old.transition_ms == 0.0 and "transition_ms" not in old.to_dict()
    assert new.transition_ms == 0.015 and new.to_dict()["transition_ms"] == 0.015
    data["latency"]["networks"] = [dict(NET, transition_ms=-0.01)]
    with pytest.raises(ConfigError, match=r"latency.networks\[0\].transition_ms: must be >= 0"):
        load_hw_profile(write(tmp_path, data))


def test_network_fit_off_layout_int8_scale_and_per_element_transition_are_optional(tmp_path: Path) -> None:
    """Profiles measured before ``int8_generic_table_scale``, ``transition_ns_per_element`` and
    ``int8_add_ns_per_element`` existed load without them (and write none); new ones round-trip."""
    data = profile_dict()
    new_terms = {
        "int8_generic_table_scale": 0.47,
        "transition_ns_per_element": 2.6,
        "int8_add_ns_per_element": 6.5,
    }
    data["latency"]["networks"] = [dict(NET), dict(NET, fingerprint="def", **new_terms)]
    old, new = load_hw_profile(write(tmp_path, data)).latency.networks
    assert old.int8_generic_table_scale is None and old.transition_ns_per_element == 0.0
    assert old.int8_add_ns_per_element == 0.0
    assert not set(new_terms) & set(old.to_dict())
    assert {k: new.to_dict()[k] for k in new_terms} == new_terms
    data["latency"]["networks"] = [dict(NET, int8_generic_table_scale=0)]
    with pytest.raises(ConfigError, match=r"latency.networks\[0\].int8_generic_table_scale"):
        load_hw_profile(write(tmp_path, data))


def test_unquoted_date_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(profile_dict()).replace("'2026-01-01'", "2026-01-01"), encoding="utf-8")
    assert load_hw_profile(path).measurement.date == "2026-01-01"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["device"].update(colour="red"), "device.colour: unknown key"),
        (lambda d: d.update(extra=1), "extra: unknown key"),
        (lambda d: d["runtime"].pop("threads"), "runtime.threads: missing"),
        (
            lambda d: d["roofline"].update(memory_bandwidth_bytes_per_s=float("nan")),
            "memory_bandwidth_bytes_per_s",
        ),
        (
            lambda d: d["latency"].update(network_overhead_ms=-1.0),
            "latency.network_overhead_ms: must be >= 0",
        ),
        (
            lambda d: d["latency"].update(networks=[dict(NET, transition_ns_per_element=-0.5)]),
            "latency.networks[0].transition_ns_per_element: must be >= 0",
        ),
        (
            lambda d: d["latency"].update(networks=[dict(NET, int8_add_ns_per_element="fast")]),
            "latency.networks[0].int8_add_ns_per_element",
        ),
        (lambda d: d["latency"]["table"][0].update(median_ms=-0.1), "latency.table[0].median_ms"),
        (lambda d: d["latency"]["table"][1].update(kind="conv3d"), "latency.table[1].kind"),
        (lambda d: d["latency"]["table"][2].update(bits=9), "latency.table[2].bits"),
        (lambda d: d["latency"]["table"][0].update(kernel="3"), "latency.table[0].kernel"),
        (
            lambda d: d["latency"]["table"].append(dict(d["latency"]["table"][0])),
            "duplicate of latency.table[0]",
        ),
        (lambda d: d["measurement"].update(statistic="mean"), "measurement.statistic"),
        (
            lambda d: d["measurement"].update(statistic="min"),
            "latency.table[0].min_ms: required when measurement.statistic is 'min'",
        ),
        (lambda d: d["latency"]["table"][1].update(min_ms=0.0), "latency.table[1].min_ms"),
        (
            lambda d: d["roofline"]["peak_macs_per_s"].update(int3=1.0),
            "peak_macs_per_s.int3: unknown precision",
        ),
        (lambda d: d["device"].update(kind="toaster"), "device.kind"),
        (lambda d: d["validation"].update(within_10pct=1.5), "validation.within_10pct"),
        (
            lambda d: d["latency"]["grid"].update(channel_fractions=[0.0, 1.0]),
            "latency.grid.channel_fractions",
        ),
        (lambda d: d["runtime"].update(batch=True), "runtime.batch: must be a number"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, mutate: Any, field: str) -> None:
    data = copy.deepcopy(profile_dict())
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_hw_profile(path)
    msg = str(err.value)
    assert str(path) in msg and field in msg
    assert "\n" not in msg


def test_wrong_version_and_schema(tmp_path: Path) -> None:
    data = profile_dict()
    data["version"] = 2
    with pytest.raises(ConfigError, match="version"):
        load_hw_profile(write(tmp_path, data))
    data["version"], data["schema"] = 1, "automc/energy-table"
    with pytest.raises(ConfigError, match="schema"):
        load_hw_profile(write(tmp_path, data))


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    data = profile_dict()
    data["device"]["colour"] = "red"
    data["runtime"].pop("dtype")
    data["latency"]["table"][3]["median_ms"] = float("nan")
    data["energy"]["onchip_buffer_bytes"] = -5
    with pytest.raises(ConfigError) as err:
        load_hw_profile(write(tmp_path, data))
    msg = str(err.value)
    for field in (
        "device.colour",
        "runtime.dtype",
        "latency.table[3].median_ms",
        "energy.onchip_buffer_bytes",
    ):
        assert field in msg


def test_round_trip(tmp_path: Path) -> None:
    prof = load_hw_profile(write(tmp_path, profile_dict()))
    out = dump_hw_profile(prof, tmp_path / "again.yaml")
    back = load_hw_profile(out)
    assert back.to_dict() == prof.to_dict()
    assert [e.key for e in back.latency.entries] == [e.key for e in prof.latency.entries]
    assert [e.median_ms for e in back.latency.entries] == pytest.approx(
        [e.median_ms for e in prof.latency.entries], rel=1e-4
    )
    # one table entry per line keeps shipped profiles small and diffable
    table_lines = [ln for ln in out.read_text().splitlines() if ln.lstrip().startswith("- {kind:")]
    assert len(table_lines) == len(prof.latency.entries)


def test_validation_section_is_optional(tmp_path: Path) -> None:
    data = profile_dict()
    del data["validation"]
    assert load_hw_profile(write(tmp_path, data)).validation is None


def test_resolve_by_name_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hw_profiles").mkdir()
    write(tmp_path / "hw_profiles", profile_dict(), "toy-device.yaml")
    monkeypatch.chdir(tmp_path)
    assert resolve_profile("toy-device").device.id == "toy"
    assert resolve_profile(tmp_path / "hw_profiles" / "toy-device.yaml").device.id == "toy"
    with pytest.raises(AutomcError) as err:
        resolve_profile("no-such-device")
    assert "toy-device" in str(err.value) and "no-such-device" in str(err.value)
    with pytest.raises(ConfigError, match="file not found"):
        resolve_profile("missing/profile.yaml")


def test_parse_rejects_non_mapping() -> None:
    with pytest.raises(ConfigError, match="top level"):
        parse_hw_profile([1, 2], "inline")
