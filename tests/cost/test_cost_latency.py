"""Latency predictor: table lookups, interpolation, low rank, roofline fallback, speed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from automc.cost import latency as lat
from automc.cost.latency import (
    FLAG_NO_SHAPE,
    FLAG_ROOFLINE,
    LatencyPredictor,
    channel_grid,
    fidelity,
    layer_stages,
    predict_latency,
    spearman,
)
from automc.plan import CompressionPlan, LayerChoice, LayerSpec
from automc.schema.hw_profile import parse_hw_profile

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def conv(
    name: str,
    cin: int,
    cout: int,
    *,
    hw: int = 8,
    k: int = 3,
    group: int = 0,
    in_group: int = -1,
    kind: str = "conv2d",
    index: int = 0,
) -> LayerSpec:
    return LayerSpec(
        name=name,
        kind=kind,
        in_channels=cin,
        out_channels=cout,
        kernel=(k, k),
        stride=(1, 1),
        padding=(k // 2, k // 2),
        groups=cin if kind == "dwconv2d" else 1,
        in_shape=(cin, hw, hw),
        out_shape=(cout, hw, hw),
        macs=hw * hw * cout * cin * k * k,
        group=group,
        in_segments=((in_group, cin, 1),),
        index=index,
    )


def toy_layers() -> list[LayerSpec]:
    """stem (input not prunable) -> conv -> depthwise -> linear classifier."""
    return [
        conv("stem", 3, 16, group=0, in_group=-1, index=0),
        conv("body", 16, 32, group=1, in_group=0, index=1),
        conv("dw", 32, 32, group=1, in_group=1, kind="dwconv2d", index=2),
        LayerSpec(
            name="fc",
            kind="linear",
            in_channels=32,
            out_channels=10,
            in_shape=(32,),
            out_shape=(10,),
            macs=320,
            group=-1,
            in_segments=((1, 32, 1),),
            index=3,
        ),
    ]


def cost_fn(n: int, m: int, k: int, hw: int) -> float:
    """Synthetic 'measured' latency with a MAC term and a non-bilinear wiggle."""
    return 0.002 + 1e-7 * n * m * k * k * hw * hw + 0.0005 * ((n + m) % 3)


def toy_profile(
    layers: list[LayerSpec], *, extra_table: list[dict] | None = None, overhead: float = 0.05
) -> object:
    keys = set()
    for spec in layers:
        plain, factors = layer_stages(spec, FRACTIONS, FRACTIONS)
        for st in [plain, *(factors or ())]:
            for n, m in st.grid_points():
                keys.add(st.key(n, m, 32, 1))
    table = []
    for kind, ih, iw, n, m, kh, kw, sh, sw, ph, pw, groups, bits, batch in sorted(keys):
        table.append(
            {
                "kind": kind,
                "in_size": [ih, iw],
                "in_channels": n,
                "out_channels": m,
                "kernel": [kh, kw],
                "stride": [sh, sw],
                "padding": [ph, pw],
                "groups": groups,
                "bits": bits,
                "batch": batch,
                "median_ms": cost_fn(n if kind != "dwconv2d" else 1, m, kh, ih),
                "spread_ms": 0.0,
                "count": 3,
            }
        )
    table += extra_table or []
    data = {
        "schema": "automc/hw-profile",
        "version": 1,
        "device": {"id": "toy", "kind": "cpu", "description": ""},
        "runtime": {"framework": "torch", "version": "2", "threads": 1, "batch": 1, "dtype": "float32"},
        "measurement": {"warmup": 1, "repeats": 3, "statistic": "median", "date": "2026-01-01"},
        "roofline": {
            "peak_macs_per_s": {"fp32": 1e9},
            "memory_bandwidth_bytes_per_s": 1e10,
            "launch_overhead_ms": 0.01,
        },
        "energy": {"table": "energy-45nm", "onchip_buffer_bytes": 65536},
        "latency": {
            "network_overhead_ms": overhead,
            "layer_overhead_ms": 0.001,
            "elementwise_ns_per_element": 1.0,
            "grid": {"channel_fractions": list(FRACTIONS), "rank_fractions": list(FRACTIONS)},
            "table": table,
        },
    }
    return parse_hw_profile(data, "toy.yaml")


def test_channel_grid_uses_kept_channels() -> None:
    assert channel_grid(16, FRACTIONS) == (4, 8, 12, 16)
    assert channel_grid(3, FRACTIONS) == (1, 2, 3)


def test_identity_plan_is_table_sum_plus_overheads() -> None:
    layers = toy_layers()
    prof = toy_profile(layers)
    est = predict_latency(layers, CompressionPlan(), prof)
    assert not est.flags and not est.unsupported
    expected_stem = cost_fn(3, 16, 3, 8) + 0.001 + 1e-6 * 16 * 64
    assert est.per_layer_ms["stem"] == pytest.approx(expected_stem)
    assert est.per_layer_ms["dw"] == pytest.approx(cost_fn(1, 32, 3, 8) + 0.001 + 1e-6 * 32 * 64)
    assert est.total_ms == pytest.approx(0.05 + sum(est.per_layer_ms.values()))


def test_interpolation_lies_between_neighbours() -> None:
    layers = toy_layers()
    prof = toy_profile(layers)
    # group 0 keep 0.6 -> stem out 10 channels (between grid 8 and 12), body in 10.
    plan = CompressionPlan(layers={"stem": LayerChoice(keep_ratio=0.6), "body": LayerChoice(keep_ratio=1.0)})
    est = predict_latency(layers, plan, prof)
    table_body = est.per_layer_ms["body"] - 0.001 - 1e-6 * 32 * 64
    lo, hi = sorted([cost_fn(8, 32, 3, 8), cost_fn(12, 32, 3, 8)])
    assert lo < table_body < hi
    assert table_body == pytest.approx((cost_fn(8, 32, 3, 8) + cost_fn(12, 32, 3, 8)) / 2)
    assert not est.flags


def test_bilinear_weights_match_the_formula() -> None:
    layers = toy_layers()
    prof = toy_profile(layers)
    pred = LatencyPredictor(prof)
    st, _ = layer_stages(layers[1], FRACTIONS, FRACTIONS)
    # (10, 28) sits halfway between the grid points 8/12 (in) and 24/32 (out)
    n, m = 10, 28
    got = pred._stage_ms(st, n, m, 32)
    corners = {(a, b): cost_fn(a, b, 3, 8) for a in (8, 12) for b in (24, 32)}
    tn, tm = 0.5, 0.5
    manual = (1 - tn) * ((1 - tm) * corners[8, 24] + tm * corners[8, 32]) + tn * (
        (1 - tm) * corners[12, 24] + tm * corners[12, 32]
    )
    assert got == pytest.approx(manual)


def test_pruning_lowers_latency() -> None:
    layers = toy_layers()
    prof = toy_profile(layers)
    base = predict_latency(layers, CompressionPlan(), prof).total_ms
    prev = base
    for keep in (0.9, 0.7, 0.5, 0.3):
        plan = CompressionPlan(layers={s.name: LayerChoice(keep_ratio=keep) for s in layers if s.prunable})
        est = predict_latency(layers, plan, prof)
        assert est.total_ms < prev
        prev = est.total_ms
        assert not est.flags


def test_low_rank_prices_two_factors() -> None:
    layers = toy_layers()
    prof = toy_profile(layers)
    plan = CompressionPlan(layers={"body": LayerChoice(rank=8)})
    est = predict_latency(layers, plan, prof)
    # two table stages, the per-call overhead twice (two convs), elementwise on the output
    expected = cost_fn(16, 8, 3, 8) + cost_fn(8, 32, 1, 8) + 2 * 0.001 + 1e-6 * 32 * 64
    assert est.per_layer_ms["body"] == pytest.approx(expected)
    assert not est.flags


def test_out_of_table_falls_back_to_roofline_and_is_flagged() -> None:
    layers = toy_layers()
    prof = toy_profile(layers)
    # keep 0.1 of 16 -> 2 channels, below the smallest grid point (4)
    plan = CompressionPlan(layers={"stem": LayerChoice(keep_ratio=0.1), "body": LayerChoice(keep_ratio=1.0)})
    est = predict_latency(layers, plan, prof)
    assert est.flags["stem"] == FLAG_ROOFLINE and est.flags["body"] == FLAG_ROOFLINE
    macs = 8 * 8 * 2 * 3 * 9
    roofline_stem = max(macs / 1e9, (2 * 27 * 4 + 3 * 64 * 4 + 2 * 64 * 4) / 1e10) * 1e3 + 0.01
    assert est.per_layer_ms["stem"] == pytest.approx(roofline_stem + 0.001 + 1e-6 * 2 * 64)
    # a layer shape the profile never measured
    other = [conv("big", 16, 16, hw=32, group=0, in_group=-1)]
    est2 = predict_latency(other, CompressionPlan(), prof)
    assert est2.flags == {"big": FLAG_NO_SHAPE}
    assert est2.per_layer_ms["big"] > 0


def test_unsupported_layers_are_reported() -> None:
    layers = toy_layers()
    prof = toy_profile(layers)
    weird = LayerSpec(name="attn", kind="attention", in_channels=4, out_channels=4)
    est = predict_latency([*layers, weird], CompressionPlan(layers={"dw": LayerChoice(rank=4)}), prof)
    assert set(est.unsupported) == {"attn", "dw"}
    assert "dw" not in est.per_layer_ms


def test_quantized_layers_use_available_bits() -> None:
    layers = toy_layers()
    prof = toy_profile(layers)
    fp = predict_latency(layers, CompressionPlan(), prof)
    q8 = predict_latency(
        layers, CompressionPlan(layers={s.name: LayerChoice(w_bits=8, a_bits=8) for s in layers}), prof
    )
    # this profile has only 32-bit entries: deployment is priced at fp32, no roofline fallback
    assert q8.total_ms == pytest.approx(fp.total_ms)
    assert not q8.flags
    int8_entry = {
        "kind": "conv2d",
        "in_size": 8,
        "in_channels": 3,
        "out_channels": 16,
        "kernel": 3,
        "stride": 1,
        "padding": 1,
        "groups": 1,
        "bits": 8,
        "batch": 1,
        "median_ms": 0.0001,
        "spread_ms": 0.0,
        "count": 3,
    }
    prof8 = toy_profile(layers, extra_table=[int8_entry])
    est = predict_latency(layers, CompressionPlan(layers={"stem": LayerChoice(w_bits=8, a_bits=8)}), prof8)
    assert est.per_layer_ms["stem"] == pytest.approx(0.0001 + 0.001 + 1e-6 * 16 * 64)


def test_prediction_is_fast_and_cached() -> None:
    layers = [conv(f"l{i}", 16, 16, group=i, in_group=i - 1, index=i) for i in range(22)]
    prof = toy_profile(layers)
    plans = [
        CompressionPlan(layers={s.name: LayerChoice(keep_ratio=0.25 + 0.05 * (i % 10)) for s in layers})
        for i in range(10)
    ]
    for p in plans:
        predict_latency(layers, p, prof)
    reps = 200
    t0 = time.perf_counter()
    for i in range(reps):
        predict_latency(layers, plans[i % 10], prof)
    per_call_us = (time.perf_counter() - t0) / reps * 1e6
    assert per_call_us < 1000  # ~50 us on an idle core; generous for loaded CI machines
    assert lat.predictor_for(prof) is lat.predictor_for(prof)


def test_fidelity_and_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0
    f = fidelity([1.05, 2.0, 3.6], [1.0, 2.0, 3.0], macs=[3, 2, 1])
    assert f["n"] == 3
    assert f["within_10pct"] == pytest.approx(2 / 3)
    assert f["rmspe"] == pytest.approx(((0.05**2 + 0 + 0.2**2) / 3) ** 0.5)
    assert f["spearman"] == pytest.approx(1.0) and f["flops_spearman"] == pytest.approx(-1.0)


def test_cost_package_does_not_import_torch(tmp_path: Path) -> None:
    import subprocess

    code = "import sys; import automc.cost.latency, automc.schema.hw_profile; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "False"
