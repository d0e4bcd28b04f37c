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
