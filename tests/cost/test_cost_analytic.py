"""Closed-form checks of the analytic cost model (MACs, params, size, peak activation); no torch."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from automc.cost import CostModel, estimate
from automc.cost.flops import layer_geometry
from automc.cost.formats import SPARSE_LOWRANK_DENSITY, sparse_storage_bits, weight_storage_bits
from automc.errors import UnsupportedLayerError
from automc.plan import CompressionPlan, LayerChoice, LayerSpec, kept_channels


def conv(
    name: str,
    n: int,
    m: int,
    hw: int,
    *,
    k: int = 3,
    stride: int = 1,
    groups: int = 1,
    kind: str = "conv2d",
    group: int = -1,
    segments: tuple[tuple[int, int, int], ...] = (),
    bias: bool = False,
    index: int = 0,
) -> LayerSpec:
    out_hw = hw // stride
    macs = out_hw * out_hw * m * (n // groups) * k * k
    params = m * (n // groups) * k * k + (m if bias else 0)
    return LayerSpec(
        name=name,
        kind=kind,
        in_channels=n,
        out_channels=m,
        kernel=(k, k),
        stride=(stride, stride),
        padding=(k // 2, k // 2),
        groups=groups,
        in_shape=(n, hw, hw),
        out_shape=(m, out_hw, out_hw),
        macs=macs,
        params=params,
        bias=bias,
        group=group,
        in_segments=segments or ((-1, n, 1),),
        index=index,
    )


def linear(
    name: str, n: int, m: int, *, segments=(), group: int = -1, bias: bool = True, index: int = 0
) -> LayerSpec:
    return LayerSpec(
        name=name,
        kind="linear",
        in_channels=n,
        out_channels=m,
        in_shape=(n,),
        out_shape=(m,),
        macs=n * m,
        params=n * m + (m if bias else 0),
        bias=bias,
        group=group,
        in_segments=segments or ((-1, n, 1),),
        index=index,
    )


def one(spec: LayerSpec, choice: LayerChoice | None = None, keep: dict[int, float] | None = None):
    return layer_geometry(spec, choice or LayerChoice(), keep or {})


def test_conv_closed_form():
    spec = conv("c", 16, 32, 8, bias=True)
    geo = one(spec)
    assert geo.macs == 8 * 8 * 32 * 16 * 9
    assert geo.params == 32 * 16 * 9 + 32
    strided = one(conv("s", 16, 32, 8, stride=2))
    assert strided.macs == 4 * 4 * 32 * 16 * 9


def test_depthwise_pruned_groups_follow_channels():
    spec = conv("dw", 32, 32, 8, groups=32, kind="dwconv2d", group=1, segments=((1, 32, 1),))
    geo = one(spec, keep={1: 0.5})
    assert geo.groups == 16 and geo.in_features == 16 and geo.out_channels == 16
    assert geo.macs == 8 * 8 * 16 * 9
    assert geo.params == 16 * 9


def test_grouped_conv():
    geo = one(conv("g", 16, 32, 8, groups=4, kind="grouped"))
    assert geo.macs == 8 * 8 * 32 * 4 * 9
    assert geo.weights == 32 * 4 * 9


def test_linear_closed_form():
    geo = one(linear("fc", 512, 10))
    assert geo.macs == 5120 and geo.params == 5130


def test_lowrank_conv_and_linear():
    geo = one(conv("c", 16, 32, 8, bias=True), LayerChoice(rank=4))
    assert len(geo.stages) == 2
    assert geo.macs == 8 * 8 * (4 * 16 * 9 + 32 * 4)
    assert geo.params == 4 * 16 * 9 + 32 * 4 + 32
    lin = one(linear("fc", 100, 50), LayerChoice(rank=5))
    assert lin.macs == 100 * 5 + 5 * 50
    assert lin.params == 100 * 5 + 5 * 50 + 50


def test_lowrank_rank_is_clipped_to_pruned_layer():
    spec = conv("c", 4, 32, 8, k=1, group=2, segments=((1, 4, 1),))
    geo = one(spec, LayerChoice(rank=4, keep_ratio=0.25), {1: 0.5, 2: 0.25})
    # pruned: n = 2, m = 8 -> rank clipped to min(8, 2 * 1) = 2
    assert geo.rank == 2
    assert geo.macs == 8 * 8 * (2 * 2 + 8 * 2)


def test_sparse_lowrank_adds_dense_residual():
    spec = linear("fc", 100, 50)
    geo = one(spec, LayerChoice(rank=5, lowrank="sparse_lowrank"))
    assert len(geo.stages) == 3
    assert geo.macs == 100 * 5 + 5 * 50 + 100 * 50
    assert geo.stages[2].density == SPARSE_LOWRANK_DENSITY
    with pytest.raises(UnsupportedLayerError, match="low-rank method"):
        one(spec, LayerChoice(rank=5, lowrank="tucker"))


def test_lowrank_of_depthwise_is_unsupported():
    spec = conv("dw", 8, 8, 4, groups=8, kind="dwconv2d")
    with pytest.raises(UnsupportedLayerError, match="dwconv2d"):
        one(spec, LayerChoice(rank=2))


def residual_model() -> list[LayerSpec]:
    """stem -> (block conv a -> conv b) + stem (residual, group 0) -> concat with a side conv -> fc."""
    return [
        conv("stem", 3, 16, 8, group=0, index=0),
        conv("a", 16, 8, 8, group=1, segments=((0, 16, 1),), index=1),
        conv("b", 8, 16, 8, group=0, segments=((1, 8, 1),), index=2),
        conv("side", 16, 8, 8, group=3, segments=((0, 16, 1),), index=3),
        conv("mix", 24, 12, 8, k=1, group=4, segments=((0, 16, 1), (3, 8, 1)), index=4),
        linear("fc", 12 * 4, 10, segments=((4, 12, 4),), index=5),
    ]


def test_coupled_groups_and_concat_inputs():
    layers = residual_model()
    plan = CompressionPlan(
        layers={
            "stem": LayerChoice(keep_ratio=0.5),
            "b": LayerChoice(keep_ratio=0.5),
            "a": LayerChoice(keep_ratio=0.75),
            "side": LayerChoice(keep_ratio=0.25),
            "mix": LayerChoice(keep_ratio=0.5),
        }
    )
    plan.validate_for(layers)
    report = estimate(layers, plan)
    row = report.per_layer
    k0, k1, k3, k4 = (
        kept_channels(16, 0.5),
        kept_channels(8, 0.75),
        kept_channels(8, 0.25),
        kept_channels(12, 0.5),
    )
    assert (k0, k1, k3, k4) == (8, 6, 2, 6)
    assert row["stem"]["macs"] == 64 * k0 * 3 * 9
    assert row["a"]["macs"] == 64 * k1 * k0 * 9
    assert row["b"]["macs"] == 64 * k0 * k1 * 9
    assert row["side"]["macs"] == 64 * k3 * k0 * 9
    assert row["mix"]["macs"] == 64 * k4 * (k0 + k3)
    assert row["fc"]["macs"] == 10 * k4 * 4
    assert report.total["macs"] == sum(r["macs"] for r in row.values())
    assert report.unsupported == {}


def test_identity_plan_matches_traced_counts():
    layers = residual_model()
    report = estimate(layers, CompressionPlan())
    assert report.total["macs"] == sum(s.macs for s in layers)
    assert report.total["params"] == sum(s.params for s in layers)
    fp32_bits = sum(s.params for s in layers) * 32
    assert report.total["size_bytes"] == fp32_bits // 8


def test_size_at_bits_and_quantizers():
    spec = conv("c", 16, 32, 8, bias=True)
    n, rows = 32 * 16 * 9, 32
    size = {}
    for bits in (32, 16, 8, 4):
        size[bits] = estimate([spec], CompressionPlan(layers={"c": LayerChoice(w_bits=bits)})).total[
            "size_bytes"
        ]
    assert size[32] == (n * 32 + 32 * 32) // 8
    assert size[16] == (n * 16 + 32 * 32) // 8
    assert size[8] == (n * 8 + rows * 32 + 32 * 32) // 8
    assert size[4] == (n * 4 + rows * 32 + 32 * 32) // 8
    assert weight_storage_bits(n, rows, LayerChoice(w_bits=4, quantizer="kmeans")) == n * 4 + 16 * 32
    assert weight_storage_bits(n, rows, LayerChoice(w_bits=1, quantizer="binary")) == n + rows * 32
    assert weight_storage_bits(n, rows, LayerChoice(w_bits=4, quantizer="asymmetric")) == n * 4 + rows * (
        32 + 4
    )
    assert weight_storage_bits(n, rows, LayerChoice(w_bits=4, quantizer="uniform_per_tensor")) == n * 4 + 32
    # pq: rows x 144 matrix in 36 blocks of 4 columns, 16 codewords of 4 floats per block
    assert (
        weight_storage_bits(n, rows, LayerChoice(w_bits=4, quantizer="pq")) == rows * 36 * 4 + 16 * 144 * 32
    )
    # rq: 2 stages over n/4 vectors, 4 index bits each, codebooks of 16 vectors of 4 floats
    assert weight_storage_bits(n, rows, LayerChoice(w_bits=4, quantizer="rq")) == 2 * (
        n // 4 * 4 + 16 * 4 * 32
    )
    with pytest.raises(UnsupportedLayerError, match="quantizer"):
        weight_storage_bits(n, rows, LayerChoice(w_bits=4, quantizer="nope"))


def test_sparsity_saves_size_not_macs():
    spec = conv("c", 16, 32, 8)
    dense = estimate([spec], CompressionPlan(layers={"c": LayerChoice(w_bits=8)}))
    sparse = estimate([spec], CompressionPlan(layers={"c": LayerChoice(w_bits=8, sparsity=0.9)}))
    assert sparse.total["macs"] == dense.total["macs"]
    assert sparse.total["macs_sparse_effective"] == pytest.approx(0.1 * dense.total["macs"])
    n = 32 * 16 * 9
    expected_bits = sparse_storage_bits(n, 0.1, 8) + 32 * 32
    assert sparse.total["size_bytes"] == math.ceil(expected_bits / 8)
    assert sparse.total["size_bytes"] < dense.total["size_bytes"] / 3
    assert sparse.total["energy_memory_mj"] < dense.total["energy_memory_mj"]
    assert sparse.total["energy_compute_mj"] == pytest.approx(dense.total["energy_compute_mj"])


def test_peak_activation_is_max_of_input_plus_output():
    layers = [conv("c1", 3, 16, 8, index=0), conv("c2", 16, 32, 8, stride=2, index=1)]
    report = estimate(layers, CompressionPlan())
    c1 = (3 * 64 + 16 * 64) * 4
    c2 = (16 * 64 + 32 * 16) * 4
    assert report.per_layer["c1"]["peak_activation_bytes"] == c1
    assert report.per_layer["c2"]["peak_activation_bytes"] == c2
    assert report.total["peak_activation_bytes"] == max(c1, c2)
    int8 = estimate(
        layers, CompressionPlan(layers={"c1": LayerChoice(a_bits=8), "c2": LayerChoice(a_bits=8)})
    )
    assert int8.total["peak_activation_bytes"] == max(c1, c2) // 4


def test_unknown_kind_is_reported_not_priced_at_zero():
    layers = [
        conv("c", 3, 8, 8),
        LayerSpec(name="attn", kind="attention", in_channels=8, out_channels=8, macs=999),
    ]
    report = estimate(layers, CompressionPlan())
    assert "attn" in report.unsupported and "attention" in report.unsupported["attn"]
    assert "attn" not in report.per_layer
    assert report.total["macs"] == layers[0].macs


def test_report_rows_are_copies_and_memo_is_consistent():
    layers = residual_model()
    model = CostModel()
    plan = CompressionPlan(layers={"stem": LayerChoice(keep_ratio=0.5), "b": LayerChoice(keep_ratio=0.5)})
    first = model.estimate(layers, plan)
    first.per_layer["stem"]["macs"] = -1
    second = model.estimate(layers, plan)
    assert second.per_layer["stem"]["macs"] == 64 * 8 * 3 * 9
    assert second.total == first.total
    fresh = CostModel().estimate(list(layers), plan)
    assert fresh.total == second.total


def test_cost_package_does_not_import_torch():
    code = (
        "import sys, automc.cost, automc.cost.energy, automc.cost.flops, automc.cost.formats, automc.schema.energy\n"
        "from automc.plan import CompressionPlan\n"
        "automc.cost.estimate([], CompressionPlan())\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
