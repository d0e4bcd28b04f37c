"""scripts/bench_runtime.py's keep sweep: fp32 and int8 uniform plans timed on the real runtime."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")


def test_the_keep_sweep_times_every_keep_ratio_at_fp32_and_int8(load_script) -> None:
    from automc import graph
    from automc.hardware import ProfileCase
    from automc.hardware.runtimes import get
    from automc.schema.hw_profile import resolve_profile

    bench = load_script("bench_runtime")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    case = ProfileCase(name="tiny", model=net, example_input=x, layers=tuple(graph.layers(net, x)))
    profile = resolve_profile("cpu-x86-2core-ort")
    sweep = bench._keep_sweep(case, profile, get("onnxruntime"), threads=1, repeats=3, seed=0)
    fp32, int8 = sweep["points"], sweep["int8"]["points"]
    assert [p["keep"] for p in fp32] == [p["keep"] for p in int8]
    assert fp32[0]["keep"] == 1.0 and fp32[0]["measured"] == 1.0 and fp32[0]["predicted"] == 1.0
    assert min(p["keep"] for p in fp32) >= 0.25 and len(fp32) > 5
    assert all(p["measured"] > 0 and p["predicted"] > 0 for p in fp32 + int8)
    n = len(fp32)
    for key in ("int8_pays_measured", "int8_pays_predicted", "int8_pays_agree"):
        assert 0 <= sweep["int8"][key] <= n
    pays = [i8["predicted"] < f["predicted"] for f, i8 in zip(fp32, int8)]
    assert sweep["int8"]["int8_pays_predicted"] == sum(pays)


def test_another_profile_is_scored_on_the_same_timed_variants(load_script) -> None:
    from automc import models
    from automc.cost.latency import predict_latency
    from automc.graph import layers
    from automc.hardware import ProfileCase, Variant
    from automc.plan import CompressionPlan, LayerChoice
    from automc.schema.hw_profile import resolve_profile

    bench = load_script("bench_runtime")
    net, x = models.create("resnet20").eval(), torch.randn(1, 3, 32, 32)
    case = ProfileCase(name="resnet20", model=net, example_input=x, layers=tuple(layers(net, x)))
    profile = resolve_profile("cpu-x86-2core-avx2-ort")
    conv = next(s.name for s in case.layers if s.kind == "conv2d")
    plans = [CompressionPlan(layers={conv: LayerChoice(w_bits=8, a_bits=8)}), CompressionPlan()]
    truth = [predict_latency(case.layers, p, profile).total_ms for p in plans]
    # "measured" at 2x what this profile predicts: it is off by half, and exactly half the base
    variants = [Variant(model="resnet20", plan=p, macs=0, measured_ms=2 * t) for p, t in zip(plans, truth)]
    base = Variant(model="resnet20", plan=CompressionPlan(), macs=0, measured_ms=2 * truth[1])
    row = bench._compared_row(case, variants, base, profile)
    assert row["within_10pct"] == 0.0 and row["relative_within_10pct"] == 1.0
    assert row["base_predicted_over_measured"] == 0.5 and row["rmspe"] == pytest.approx(0.5, abs=1e-3)
