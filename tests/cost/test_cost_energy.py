"""Energy model and energy-table schema: seed figures, scaling rules, buffer/tiling, strict validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from automc.cost import CostModel, estimate, load_energy_table
from automc.cost.energy import (
    EnergyModel,
    accumulator_bits,
    add_energy_pj,
    dram_power_w,
    dram_traffic,
    mac_energy_pj,
    mac_precision,
    mult_energy_pj,
)
from automc.errors import AutomcError, ConfigError
from automc.plan import CompressionPlan, LayerChoice, LayerSpec
from automc.schema.energy import load_energy_table_file, parse_energy_table

TABLE_PATH = Path(__file__).resolve().parents[2] / "hw_profiles" / "energy-45nm.yaml"


@pytest.fixture(scope="module")
def table():
    return load_energy_table("energy-45nm")


def test_shipped_table_has_seed_and_horowitz_figures(table):
    ops = {(e.op, e.dtype, e.bits): e for e in table.compute}
    assert ops[("add", "int", 32)].energy_pj == 0.1
    assert ops[("add", "float", 32)].energy_pj == 0.9
    assert ops[("mult", "int", 32)].energy_pj == 3.1
    assert ops[("mult", "float", 32)].energy_pj == 3.7
    assert ops[("mult", "int", 8)].energy_pj == 0.2 and "Horowitz" in ops[("mult", "int", 8)].source
    assert ops[("add", "int", 8)].energy_pj == 0.03
    assert ops[("mult", "float", 16)].energy_pj == 1.1
    assert ops[("add", "float", 16)].energy_pj == 0.4
    assert table.level("sram").energy_pj == 5.0
    assert table.level("dram").energy_pj == 640.0
    assert table.level("register_file").energy_pj == 1.0
    assert "w_bits*a_bits" in table.rules
    assert table.path.endswith("energy-45nm.yaml")


def test_deep_compression_dram_power_figure(table):
    # 1G connections at 20 Hz, one 32-bit DRAM access (640 pJ) each: 12.8 W (Han et al., Deep Compression).
    assert dram_power_w(1e9, 20, table=table) == 12.8
    assert dram_power_w(1e9, 20) == 12.8


def test_multiply_scaling_rule(table):
    assert mult_energy_pj(table, "int", 8, 8) == 0.2  # exactly the table entry
    assert mult_energy_pj(table, "int", 4, 8) == pytest.approx(0.1)  # half the bit product
    assert mult_energy_pj(table, "int", 2, 2) == pytest.approx(0.2 * 4 / 64)
    assert mult_energy_pj(table, "int", 32, 32) == 3.1
    assert mult_energy_pj(table, "int", 16, 16) == pytest.approx(3.1 * 256 / 1024)  # from the 32-bit entry
    assert mult_energy_pj(table, "float", 32, 32) == 3.7
    assert mult_energy_pj(table, "float", 16, 16) == 1.1


def test_add_scaling_rule(table):
    assert add_energy_pj(table, "int", 8) == 0.03
    assert add_energy_pj(table, "int", 32) == 0.1
    assert add_energy_pj(table, "int", 26) == pytest.approx(0.1 * 26 / 32)
    assert add_energy_pj(table, "int", 4) == pytest.approx(0.015)
    assert add_energy_pj(table, "float", 16) == 0.4


def test_mac_precision_and_accumulator():
    assert mac_precision(32, 32) == ("float", 32, 32)
    assert mac_precision(8, 32) == ("float", 32, 32)  # weight-only quantization dequantizes
    assert mac_precision(16, 8) == ("float", 16, 16)
    assert mac_precision(4, 8) == ("int", 4, 8)
    assert mac_precision(4, 8, codebook=True) == ("float", 32, 32)
    assert accumulator_bits("int", 8, 8, 576) == 16 + 10
    assert accumulator_bits("int", 8, 8, 1) == 16
    assert accumulator_bits("int", 16, 16, 1 << 20) == 32
    assert accumulator_bits("float", 16, 16, 576) == 16


def test_mac_energy_int8_vs_float(table):
    assert mac_energy_pj(table, 32, 32, 576) == pytest.approx(3.7 + 0.9)
    assert mac_energy_pj(table, 8, 8, 576) == pytest.approx(0.2 + 0.1 * 26 / 32)


def test_tiling_chooses_the_cheaper_strategy():
    half_bits = 8 * 1000 // 2
    fits = dram_traffic(weight_bits=100, input_bits=200, output_bits=300, buffer_bytes=1000)
    assert fits.strategy == "fits" and fits.dram_bits == 600
    # weights 10 half-buffers, inputs 3: input-stationary re-reads weights 3 times
    ws_cost = 10 * half_bits + 10 * 3 * half_bits + 7
    is_cost = 3 * half_bits + 3 * 10 * half_bits + 7
    t = dram_traffic(weight_bits=10 * half_bits, input_bits=3 * half_bits, output_bits=7, buffer_bytes=1000)
    assert t.strategy == "input_stationary" and t.dram_bits == is_cost < ws_cost and t.refetches == 3
    t = dram_traffic(weight_bits=3 * half_bits, input_bits=10 * half_bits, output_bits=7, buffer_bytes=1000)
    assert t.strategy == "weight_stationary" and t.dram_bits == is_cost and t.refetches == 3
    # one operand fits in half the buffer: it stays, the other streams once
    t = dram_traffic(weight_bits=half_bits, input_bits=50 * half_bits, output_bits=7, buffer_bytes=1000)
    assert t.dram_bits == 51 * half_bits + 7


def big_conv() -> LayerSpec:
    return LayerSpec(
        name="c",
        kind="conv2d",
        in_channels=256,
        out_channels=256,
        kernel=(3, 3),
        padding=(1, 1),
        in_shape=(256, 32, 32),
        out_shape=(256, 32, 32),
        macs=32 * 32 * 256 * 256 * 9,
        params=256 * 256 * 9,
        group=0,
    )


def test_layer_energy_compute_and_memory(table):
    spec = big_conv()
    plan = CompressionPlan()
    small = CostModel(energy_table=table).estimate([spec], plan)
    model = EnergyModel(table=table, onchip_buffer_bytes=64 << 20)
    assert model.buffer_bytes == 64 << 20
    row = small.per_layer["c"]
    assert row["energy_compute_mj"] == pytest.approx(spec.macs * (3.7 + 0.9) / 1e9)
    assert row["energy_mj"] == pytest.approx(row["energy_compute_mj"] + row["energy_memory_mj"])
    # Everything fits in a 64 MiB buffer: DRAM moves each datum once; SRAM serves every use.
    w, i, o = spec.params * 32, 256 * 1024 * 32, 256 * 1024 * 32
    sram = spec.macs * (32 + 32) + o
    expected = (w + i + o) * 640 / 32 + sram * 5 / 32
    big = model.memory_pj(
        macs=spec.macs,
        weights=spec.params,
        weight_bits=w,
        bias_bits=0,
        input_bits=i,
        output_bits=o,
        a_bits=32,
    )
    assert big == pytest.approx(expected)
    assert row["energy_memory_mj"] * 1e9 > big  # the 128 KiB default buffer re-fetches


def test_quantization_lowers_energy(table):
    spec = big_conv()
    fp = estimate([spec], CompressionPlan(), energy_table=table).total
    q8 = estimate(
        [spec], CompressionPlan(layers={"c": LayerChoice(w_bits=8, a_bits=8)}), energy_table=table
    ).total
    q4 = estimate(
        [spec], CompressionPlan(layers={"c": LayerChoice(w_bits=4, a_bits=8)}), energy_table=table
    ).total
    assert fp["energy_compute_mj"] > q8["energy_compute_mj"] > q4["energy_compute_mj"]
    assert fp["energy_memory_mj"] > q8["energy_memory_mj"] > q4["energy_memory_mj"]
    assert q8["energy_compute_mj"] == pytest.approx(spec.macs * (0.2 + 0.1 * 28 / 32) / 1e9)


def test_profile_buffer_is_used(table):
    class Energy:
        table = "energy-45nm"
        onchip_buffer_bytes = 64 << 20

    class Profile:
        energy = Energy()

    spec = big_conv()
    default = CostModel(energy_table=table).estimate([spec], CompressionPlan()).total
    roomy = CostModel(profile=Profile(), latency=False).estimate([spec], CompressionPlan()).total
    assert roomy["energy_memory_mj"] < default["energy_memory_mj"]
    assert roomy["energy_compute_mj"] == pytest.approx(default["energy_compute_mj"])


def test_missing_entry_makes_layer_unsupported(tmp_path, table):
    data = yaml.safe_load(TABLE_PATH.read_text())
    data["compute"] = [e for e in data["compute"] if e["dtype"] == "float"]
    path = tmp_path / "float-only.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = big_conv()
    report = estimate(
        [spec], CompressionPlan(layers={"c": LayerChoice(w_bits=8, a_bits=8)}), energy_table=path
    )
    assert "c" in report.unsupported and "int mult" in report.unsupported["c"]
    assert report.per_layer["c"]["macs"] == spec.macs
    assert "energy_mj" not in report.per_layer["c"]


# --- schema ---------------------------------------------------------------------------------


def write(tmp_path: Path, data, name: str = "table.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def base() -> dict:
    return yaml.safe_load(TABLE_PATH.read_text())


def test_valid_table_round_trip(tmp_path):
    table = load_energy_table_file(write(tmp_path, base()))
    assert table.name == "energy-45nm" and table.onchip_buffer_bytes == 131072 and len(table.memory) == 3


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda d: d.update(colour="red"), ["colour: unknown key"]),
        (lambda d: d.pop("memory"), ["memory: missing"]),
        (lambda d: d["compute"][0].update(energy_pj=float("nan")), ["compute[0].energy_pj: must be finite"]),
        (lambda d: d["compute"][1].update(energy_pj=-1.0), ["compute[1].energy_pj: must be > 0"]),
        (lambda d: d["memory"][0].pop("source"), ["memory[0].source: missing"]),
        (lambda d: d["memory"][1].update(level="l3"), ["memory[1].level: must be one of"]),
        (lambda d: d.update(onchip_buffer_bytes=0), ["onchip_buffer_bytes: must be > 0"]),
        (lambda d: d["compute"].append(dict(d["compute"][0])), ["duplicate entry add/int/32"]),
        (
            lambda d: (d.update(colour=1), d["compute"][0].update(bits="8"), d["memory"].pop(2)),
            ["colour: unknown key", "compute[0].bits: must be a number", "memory: needs a 'dram' entry"],
        ),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path, mutate, fragments):
    data = base()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_energy_table_file(path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [("schema", "automc/hw-profile", "schema: expected"), ("version", 2, "version: unsupported version 2")],
)
def test_wrong_schema_or_version(tmp_path, key, value, fragment):
    data = base()
    data[key] = value
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=fragment):
        load_energy_table(path)


def test_unknown_table_name_lists_available():
    with pytest.raises(AutomcError, match="unknown energy table 'energy-7nm'.*energy-45nm"):
        load_energy_table("energy-7nm")


def test_not_yaml_and_not_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_energy_table(write(tmp_path, "a: [1, 2", "broken.yaml"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_energy_table([1, 2], source="list.yaml")
