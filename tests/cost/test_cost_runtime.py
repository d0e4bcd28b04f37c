"""Bits priced on the profile's runtime: int8 table entries, simulated precisions, the flag."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from automc.cost import CostModel
from automc.cost.latency import (
    PRECISION_FLAG_KEY,
    PrecisionRegions,
    block_layout_channels,
    block_layout_grid,
    channel_grid,
    layer_stages,
    off_block_layout,
    predict_latency,
)
from automc.errors import ConfigError
from automc.plan import CompressionPlan, LayerChoice, LayerSpec, layers_fingerprint
from automc.schema.hw_profile import HwProfile, NetworkFit, parse_hw_profile

FRACTIONS = (0.5, 1.0)


def conv(name: str, cin: int, cout: int, *, group: int, in_group: int, index: int) -> LayerSpec:
    return LayerSpec(
        name=name,
        kind="conv2d",
        in_channels=cin,
        out_channels=cout,
        kernel=(3, 3),
        stride=(1, 1),
        padding=(1, 1),
        groups=1,
        in_shape=(cin, 8, 8),
        out_shape=(cout, 8, 8),
        macs=64 * cout * cin * 9,
        group=group,
        in_segments=((in_group, cin, 1),),
        index=index,
    )


LAYERS = [
    conv("stem", 3, 16, group=0, in_group=-1, index=0),
    conv("body", 16, 16, group=1, in_group=0, index=1),
]


def profile_data(
    *, bits: tuple[int, ...], int8_factor: float, precisions: list[str] | None
) -> dict[str, Any]:
    """A profile whose int8 entries cost ``int8_factor`` x the fp32 ones."""
    keys = set()
    for spec in LAYERS:
        plain, factors = layer_stages(spec, FRACTIONS, FRACTIONS)
        for st in [plain, *(factors or ())]:
            keys.update(st.key(n, m, b, 1) for n, m in st.grid_points() for b in bits)
    table = []
    for kind, ih, iw, n_, m_, kh, kw, sh, sw, ph, pw, groups, b, batch in sorted(keys):
        ms = 0.01 + 1e-6 * n_ * m_ * (int8_factor if b == 8 else 1.0)
        table.append(
            {
                "kind": kind,
                "in_size": [ih, iw],
                "in_channels": n_,
                "out_channels": m_,
                "kernel": [kh, kw],
                "stride": [sh, sw],
                "padding": [ph, pw],
                "groups": groups,
                "bits": b,
                "batch": batch,
                "median_ms": ms,
                "spread_ms": 0.0,
                "count": 3,
                "min_ms": ms,
            }
        )
    runtime: dict[str, Any] = {
        "framework": "onnxruntime" if precisions and "int8" in precisions else "torch",
        "version": "1",
        "threads": 1,
        "batch": 1,
        "dtype": "float32",
    }
    if precisions is not None:
        runtime.update(
            provider="CPUExecutionProvider", graph_optimization="ORT_ENABLE_ALL", precisions=precisions
        )
    return {
        "schema": "automc/hw-profile",
        "version": 1,
        "device": {"id": "toy-ort", "kind": "cpu", "description": ""},
        "runtime": runtime,
        "measurement": {"warmup": 1, "repeats": 3, "statistic": "min", "date": "2026-01-01"},
        "roofline": {
            "peak_macs_per_s": {"fp32": 1e9},
            "memory_bandwidth_bytes_per_s": 1e10,
            "launch_overhead_ms": 0.01,
        },
        "energy": {"table": "energy-45nm", "onchip_buffer_bytes": 65536},
        "latency": {
            "network_overhead_ms": 0.05,
            "grid": {"channel_fractions": list(FRACTIONS), "rank_fractions": list(FRACTIONS)},
            "table": table,
        },
    }


def ort_profile(int8_factor: float = 0.4) -> HwProfile:
    return parse_hw_profile(
        profile_data(bits=(32, 8), int8_factor=int8_factor, precisions=["fp32", "int8"]), "ort.yaml"
    )


def torch_profile() -> HwProfile:
    return parse_hw_profile(profile_data(bits=(32,), int8_factor=1.0, precisions=None), "torch.yaml")


def at_bits(bits: int, *, names: tuple[str, ...] = ("stem", "body")) -> CompressionPlan:
    return CompressionPlan(layers={n: LayerChoice(w_bits=bits, a_bits=bits) for n in names})


def test_int8_plan_is_faster_than_fp32_when_the_int8_table_is() -> None:
    fast, slow = ort_profile(0.4), ort_profile(3.0)
    fp32 = predict_latency(LAYERS, CompressionPlan(), fast)
    int8 = predict_latency(LAYERS, at_bits(8), fast)
    assert int8.total_ms < fp32.total_ms
    assert not int8.simulated
    # the table, not a rule, decides: int8 kernels slower than fp32 ones price int8 slower
    assert (
        predict_latency(LAYERS, at_bits(8), slow).total_ms
        > predict_latency(LAYERS, CompressionPlan(), slow).total_ms
    )


def test_int8_layer_is_priced_from_the_int8_entries() -> None:
    prof = ort_profile(0.4)
    fp32 = predict_latency(LAYERS, CompressionPlan(), prof).per_layer_ms["body"]
    int8 = predict_latency(LAYERS, at_bits(8, names=("body",)), prof).per_layer_ms["body"]
    # body at full width: 16 -> 16 channels; only the MAC-proportional part shrinks
    assert fp32 - int8 == pytest.approx(1e-6 * 16 * 16 * 0.6)
    # 6-bit layers run on the int8 kernels too (priced at the next precision the runtime executes)
    six = predict_latency(LAYERS, at_bits(6, names=("body",)), prof)
    assert six.per_layer_ms["body"] == pytest.approx(int8)
    assert dict(six.simulated) == {"body": 8}


def test_four_bit_plan_is_marked_simulated_in_the_cost_report() -> None:
    prof = ort_profile()
    est = predict_latency(LAYERS, at_bits(4, names=("stem",)), prof)
    assert dict(est.simulated) == {"stem": 8}
    assert est.simulated_note == "sub-8-bit simulated: size/energy only on this runtime"
    report = CostModel(profile=prof).estimate(LAYERS, at_bits(4, names=("stem",)))
    assert (
        report.flags[PRECISION_FLAG_KEY] == "latency: sub-8-bit simulated: size/energy only on this runtime"
    )
    assert PRECISION_FLAG_KEY not in CostModel(profile=prof).estimate(LAYERS, at_bits(8)).flags
    assert PRECISION_FLAG_KEY not in CostModel(profile=prof).estimate(LAYERS, CompressionPlan()).flags


def test_torch_eager_profile_simulates_every_non_float_bit_width() -> None:
    prof = torch_profile()
    assert prof.runtime.framework == "torch"
    assert prof.runtime.precisions == ("fp32",)
    est = predict_latency(LAYERS, at_bits(8), prof)
    assert est.total_ms == pytest.approx(predict_latency(LAYERS, CompressionPlan(), prof).total_ms)
    assert est.simulated_note == "sub-32-bit simulated: size/energy only on this runtime"
    assert PRECISION_FLAG_KEY in CostModel(profile=prof).estimate(LAYERS, at_bits(8)).flags


def test_precisions_must_cover_the_table_bits() -> None:
    data = profile_data(bits=(32, 8), int8_factor=0.5, precisions=["fp32"])
    with pytest.raises(ConfigError, match=r"latency\.table.*8-bit.*precisions"):
        parse_hw_profile(data, "bad.yaml")
    data = profile_data(bits=(32,), int8_factor=0.5, precisions=["fp32", "int3"])
    with pytest.raises(ConfigError, match=r"runtime\.precisions.*int3"):
        parse_hw_profile(data, "bad.yaml")


def test_runtime_fields_round_trip() -> None:
    prof = ort_profile()
    again = parse_hw_profile(prof.to_dict(), "again.yaml")
    assert again.runtime == prof.runtime
    assert again.runtime.precisions == ("fp32", "int8")
    assert again.runtime.native_bits == (8, 32)
    assert again.runtime.provider == "CPUExecutionProvider"


def residual_stream() -> list[LayerSpec]:
    """stem -> a -> b (b writes back into the stem's residual stream) -> dw (a new region of
    the stream) -> fc, all 16 channels."""

    def spec(name: str, group: int, in_group: int, index: int, kind: str = "conv2d") -> LayerSpec:
        return replace(conv(name, 16, 16, group=group, in_group=in_group, index=index), kind=kind)

    return [
        spec("stem", 0, -1, 0),
        spec("a", 1, 0, 1),
        spec("b", 0, 1, 2),
        spec("dw", 0, 0, 3, kind="dwconv2d"),
        spec("fc", -1, 0, 4, kind="linear"),
    ]


def test_precision_boundaries_count_the_int8_layers_next_to_float_regions() -> None:
    """stem -> a -> b (b writes back into the stem's residual stream) -> dw (a new region of
    the stream) -> fc: each int8 layer pays one boundary per float region it touches; the
    network's input and output stay float."""

    layers = residual_stream()
    regions = PrecisionRegions.of(layers)

    def count(*int8: str) -> int:
        return regions.boundaries([s.name in int8 for s in layers])

    assert count() == 0
    assert count("stem", "a", "b", "dw", "fc") == 2  # quantize the input, dequantize the logits
    assert count("a") == 2  # the stream before it and b after it are float
    assert count("a", "b") == 2  # a -> b is int8; both meet the float stream
    assert count("stem", "a", "b", "dw") == 2  # the input, and dw's output read by the float fc
    assert count("dw") == 2 and count("fc") == 2


def test_int8_add_elements_count_the_residual_adds_of_int8_regions() -> None:
    """stem and b both write the stem's residual stream (one add); the stream runs int8 only
    when every layer touching it (stem, a, b, dw) does; dw's own region has one writer."""

    layers = residual_stream()
    regions = PrecisionRegions.of(layers)
    out = [1024, 2048, 1000, 1024, 10]

    def added(*int8: str) -> int:
        return regions.int8_add_elements([s.name in int8 for s in layers], out)

    assert added() == 0
    assert added("stem", "a", "b") == 0  # dw reads the stream at fp32: the add runs fused at fp32
    assert added("stem", "a", "b", "dw") == 1000  # all but the largest writer's output is added
    assert added("stem", "a", "b", "dw", "fc") == 1000  # dw -> fc has a single writer: no add


def test_a_layer_writing_the_region_it_reads_pays_both_boundaries() -> None:
    """``x + body(x)``: body reads and writes the stem's stream; int8 alone in it, body
    quantizes its input and dequantizes its output (16x8x8 each)."""
    layers = [LAYERS[0], replace(LAYERS[1], group=0)]
    est = predict_latency(layers, at_bits(8, names=("body",)), ort_profile())
    assert (est.boundaries, est.boundary_elements, est.int8_add_elements) == (2, 2 * 16 * 64, 0)


def with_fit(prof: HwProfile, layers: list[LayerSpec] = LAYERS, **terms: Any) -> HwProfile:
    """``prof`` with one network fit of ``layers``: unit scales, no overhead, and ``terms``."""
    fit = NetworkFit(
        model="toy",
        fingerprint=layers_fingerprint(layers),
        table_scale=1.0,
        network_overhead_ms=0.0,
        int8_table_scale=1.0,
        **terms,
    )
    return replace(prof, latency=replace(prof.latency, networks=(fit,)))


def test_the_network_fit_prices_the_int8_residual_adds() -> None:
    """A residual pair (stem and body both write group 0) at int8 pays the fit's cost per added
    element on body's 16x8x8 output; at fp32, or with only one of them int8, nothing."""
    layers = [LAYERS[0], replace(LAYERS[1], group=0)]
    prof = ort_profile()
    priced, free = with_fit(prof, layers, int8_add_ns_per_element=5.0), with_fit(prof, layers)
    for plan, elements in ((CompressionPlan(), 0), (at_bits(8, names=("stem",)), 0), (at_bits(8), 16 * 64)):
        est = predict_latency(layers, plan, priced)
        assert est.int8_add_elements == elements
        assert est.total_ms - predict_latency(layers, plan, free).total_ms == pytest.approx(5e-6 * elements)


def test_the_network_fit_prices_each_precision_boundary() -> None:
    prof = ort_profile()
    fitted, no_cost = with_fit(prof, transition_ms=0.125), with_fit(prof)
    for plan, boundaries in ((CompressionPlan(), 0), (at_bits(8, names=("stem",)), 2), (at_bits(8), 2)):
        est = predict_latency(LAYERS, plan, fitted)
        assert est.boundaries == boundaries
        assert est.total_ms - predict_latency(LAYERS, plan, no_cost).total_ms == pytest.approx(
            0.125 * boundaries
        )
    assert predict_latency(LAYERS, at_bits(8), torch_profile()).boundaries == 0  # no int8 kernels


def test_the_network_fit_prices_each_element_converted_at_a_boundary() -> None:
    """The stem's boundaries convert the 3-channel input and its 16-channel output (8x8 each);
    the body's, when the stem keeps 12 channels, its 12-channel input and 16-channel output."""
    prof = ort_profile()
    fitted, no_cost = with_fit(prof, transition_ns_per_element=2.0), with_fit(prof)
    body_int8 = CompressionPlan(
        layers={"stem": LayerChoice(keep_ratio=0.75), "body": LayerChoice(w_bits=8, a_bits=8)}
    )
    for plan, elements in (
        (CompressionPlan(), 0),
        (at_bits(8, names=("stem",)), (3 + 16) * 64),
        (at_bits(8), (3 + 16) * 64),
        (body_int8, (12 + 16) * 64),
    ):
        est = predict_latency(LAYERS, plan, fitted)
        assert est.boundary_elements == elements
        assert est.total_ms - predict_latency(LAYERS, plan, no_cost).total_ms == pytest.approx(
            2e-6 * elements
        )


@pytest.mark.parametrize(
    ("kind", "n", "m", "groups", "block", "off"),
    [
        ("conv2d", 3, 16, 1, 16, False),  # fewer input channels than a block: NCHW input read directly
        ("conv2d", 32, 20, 1, 16, False),  # output channels are padded to the block
        ("conv2d", 28, 32, 1, 16, True),
        ("conv2d", 24, 32, 1, 8, False),
        ("conv2d", 28, 32, 1, 0, False),  # no blocked layout at all
        ("dwconv2d", 48, 48, 0, 16, False),
        ("dwconv2d", 40, 40, 0, 16, True),
        ("grouped", 64, 64, 2, 16, False),
        ("grouped", 48, 64, 2, 16, True),
        ("linear", 28, 10, 1, 16, False),
    ],
)
def test_off_block_layout_follows_the_nchwc_rules(
    kind: str, n: int, m: int, groups: int, block: int, off: bool
) -> None:
    assert off_block_layout(kind, n, m, groups, block) is off


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize(("channels", "block"), [(16, 16), (32, 16), (40, 16), (64, 8), (24, 8), (7, 8)])
def test_block_layout_channels_is_the_nearest_count_on_the_layout(
    channels: int, block: int, depthwise: bool
) -> None:
    """Against the layout rule itself: every count is moved to the nearest count whose
    consumers (a plain conv reading it, or the group's depthwise conv) stay on the layout."""

    def on_layout(c: int) -> bool:
        if c == channels:
            return True
        if depthwise:
            return not off_block_layout("dwconv2d", c, c, c, block)
        return not off_block_layout("conv2d", c, 64, 1, block)

    allowed = [c for c in range(1, channels + 1) if on_layout(c)]
    for count in range(1, channels + 1):
        got = block_layout_channels(count, channels, block, depthwise=depthwise)
        assert got in allowed
        assert abs(got - count) == min(abs(c - count) for c in allowed)
    assert block_layout_channels(5, 32, 1, depthwise=True) == 5


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize(("channels", "block"), [(16, 16), (32, 16), (96, 16), (144, 16), (40, 8), (7, 8)])
def test_block_layout_grid_holds_only_counts_on_the_layout_and_spans_the_aligned_ones(
    channels: int, block: int, depthwise: bool
) -> None:
    """Every grid point is a count on the layout (where the layer is wider than a block; a
    depthwise layer keeps its smallest count below a block), and the grid spans every count
    from the smallest fraction up, so a search on the layout or off it is priced by
    interpolation, never by the roofline."""
    fractions = (0.25, 0.5, 0.75, 1.0)
    plain = channel_grid(channels, fractions)
    grid = block_layout_grid(plain, channels, block, depthwise=depthwise)
    if channels <= block:
        assert grid == plain
        return
    off = [c for c in grid if block_layout_channels(c, channels, block, depthwise=depthwise) != c]
    assert off == ([plain[0]] if depthwise and plain[0] < block else [])
    assert grid[0] <= plain[0] and grid[-1] == channels
    assert block_layout_grid(plain, channels, 1, depthwise=depthwise) == plain


def test_stages_off_the_blocked_layout_are_priced_at_the_generic_scale_of_their_precision() -> None:
    prof = ort_profile()
    blocked = replace(prof, runtime=replace(prof.runtime, channel_block=8))
    fitted, plain = with_fit(blocked, generic_table_scale=2.5), with_fit(blocked)
    # the stem keeps 12 of its 16 channels: the body conv reads 12 (>= 8, not a multiple of 8)
    plan = CompressionPlan(layers={"stem": LayerChoice(keep_ratio=0.75)})
    est, ref = predict_latency(LAYERS, plan, fitted), predict_latency(LAYERS, plan, plain)
    assert est.off_layout == 1 and est.off_layout_ms > 0
    body = ref.per_layer_ms["body"]
    assert est.per_layer_ms["body"] == pytest.approx(2.5 * body)
    assert est.total_ms - ref.total_ms == pytest.approx(1.5 * body)
    aligned = CompressionPlan(layers={"stem": LayerChoice(keep_ratio=0.5)})
    assert predict_latency(LAYERS, aligned, fitted).off_layout == 0
    int8_body = CompressionPlan(
        layers={"stem": LayerChoice(keep_ratio=0.75), "body": LayerChoice(w_bits=8, a_bits=8)}
    )
    # an int8 stage off the layout is priced at the int8 generic scale, the int8 scale without one
    int8_fitted = with_fit(blocked, generic_table_scale=2.5, int8_generic_table_scale=1.75)
    est, ref = predict_latency(LAYERS, int8_body, int8_fitted), predict_latency(LAYERS, int8_body, plain)
    assert est.off_layout == 1 and est.off_layout_ms == 0 and est.int8_off_layout_ms > 0
    assert est.per_layer_ms["body"] == pytest.approx(1.75 * ref.per_layer_ms["body"])
    assert predict_latency(LAYERS, int8_body, fitted).per_layer_ms["body"] == pytest.approx(
        ref.per_layer_ms["body"]
    )
    assert predict_latency(LAYERS, plan, replace(fitted, runtime=prof.runtime)).off_layout == 0
    again = parse_hw_profile(fitted.to_dict(), "again.yaml")
    assert again.runtime.channel_block == 8 and again.latency.networks[0].generic_table_scale == 2.5
    assert parse_hw_profile(prof.to_dict(), "old.yaml").runtime.channel_block == 0
