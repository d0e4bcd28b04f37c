"""Profiles per runtime: the ONNX Runtime table at fp32 and int8, mixed int8 variants, old profiles."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from automc import compress, graph, models
from automc.cli import main
from automc.cost.latency import predict_latency
from automc.hardware import ProfileCase, ProfileSettings, build_profile, random_plan, table_configs
from automc.hardware.runtimes import REGISTRY, get
from automc.plan import CompressionPlan, LayerChoice
from automc.resources import find_profile
from automc.schema.hw_profile import load_hw_profile

torch.set_num_threads(1)


def tiny_case(name: str = "test_tiny") -> ProfileCase:
    torch.manual_seed(0)
    model = models.create(name).eval()
    x = torch.randn(1, 3, 8, 8)
    return ProfileCase(name=name, model=model, example_input=x, layers=tuple(graph.layers(model, x)))


def apply(model: torch.nn.Module, plan: CompressionPlan, x: torch.Tensor) -> torch.nn.Module:
    return compress.apply(model, plan, x)


def test_old_profile_files_load_as_runtime_torch() -> None:
    prof = load_hw_profile(find_profile("cpu-x86-2core-torch"))
    assert prof.runtime.framework == "torch"
    assert prof.runtime.precisions == ("fp32",)
    assert prof.runtime.provider == "eager"
    assert {e.bits for e in prof.latency.entries} == {32}


def test_random_plans_mix_int8_and_fp32_layers_without_moving_the_rest() -> None:
    case = tiny_case()
    plain = [random_plan(case.layers, random.Random(s)) for s in range(20)]
    mixed = [random_plan(case.layers, random.Random(s), int8_share=(0.0, 1.0)) for s in range(20)]
    shares = []
    for a, b in zip(plain, mixed):
        for spec in case.layers:
            ca, cb = a.choice(spec.name), b.choice(spec.name)
            assert (ca.keep_ratio, ca.rank) == (cb.keep_ratio, cb.rank)
            assert cb.w_bits == cb.a_bits and cb.w_bits in (8, 32)
        shares.append(sum(b.choice(s.name).w_bits == 8 for s in case.layers) / len(case.layers))
    assert min(shares) < 0.5 < max(shares)


def test_random_plans_on_a_blocked_layout_keep_every_conv_on_it() -> None:
    """``channel_block`` moves the drawn counts onto the layout (no conv priced off it by the
    shipped ONNX Runtime profile but those the unpruned model has: a group keeping all its
    channels keeps their layout), as a search bound for that runtime does. The profile's
    table grid is on the same layout, so in every such plan, and every plain one, each layer
    that keeps its single conv is priced from the table (none falls back to the roofline)."""
    from automc.cost import load_profile

    torch.manual_seed(0)
    model = models.create("mobilenetv2").eval()
    layers = tuple(graph.layers(model, torch.randn(1, 3, 32, 32)))
    profile = load_profile("cpu-x86-2core-ort")
    block = profile.runtime.channel_block
    aligned = [random_plan(layers, random.Random(s), channel_block=block) for s in range(8)]
    plain = [random_plan(layers, random.Random(s)) for s in range(8)]
    base = predict_latency(layers, CompressionPlan(), profile).off_layout
    assert all(predict_latency(layers, p, profile).off_layout <= base for p in aligned)
    assert all(predict_latency(layers, p, profile).off_layout > base for p in plain)
    assert any(p.choice(s.name).rank for p in aligned for s in layers)
    assert profile.latency.grid_block == block
    for p in aligned + plain:
        assert all(p.choice(name).rank is not None for name in predict_latency(layers, p, profile).flags)


def test_profile_for_a_runtime_not_installed_is_one_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cls = REGISTRY.get("onnxruntime")
    monkeypatch.setattr(cls, "available", lambda self: False)
    code = main(
        ["profile", "--runtime", "onnxruntime", "--model", "test_tiny", "--out", str(tmp_path / "p.yaml")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "onnxruntime" in err and "not installed" in err
    assert not (tmp_path / "p.yaml").exists()


def test_tiny_onnxruntime_profile_end_to_end(tmp_path: Path) -> None:
    runtime = get("onnxruntime")
    case = tiny_case()
    prof = build_profile(
        [case],
        apply,
        ProfileSettings(
            profile_id="tiny-ort",
            threads=1,
            warmup=1,
            repeats=3,
            train_variants=5,
            validate=4,
            channel_fractions=(0.5, 1.0),
            rank_fractions=(0.5, 1.0),
        ),
        runtime=runtime,
    )
    rt = prof.runtime
    assert (rt.framework, rt.provider, rt.graph_optimization) == (
        "onnxruntime",
        "CPUExecutionProvider",
        "ORT_ENABLE_ALL",
    )
    assert rt.precisions == ("fp32", "int8") and rt.version == runtime.version
    keys = table_configs([case.layers], channel_fractions=(0.5, 1.0), rank_fractions=(0.5, 1.0), bits=(32, 8))
    assert sorted(e.key for e in prof.latency.entries) == keys
    assert {e.bits for e in prof.latency.entries} == {8, 32}
    fit = prof.latency.networks[0]
    assert fit.int8_table_scale is not None and fit.int8_table_scale > 0
    assert prof.validation is not None and prof.validation.n == 4
    # the file round-trips with the runtime section, and an int8 layer is priced from int8 entries
    again = load_hw_profile(_dump(prof, tmp_path / "tiny-ort.yaml"))
    assert again.runtime == rt
    stem = case.layers[0].name
    q = predict_latency(case.layers, CompressionPlan(layers={stem: LayerChoice(w_bits=8, a_bits=8)}), again)
    f = predict_latency(case.layers, CompressionPlan(), again)
    assert not q.simulated and q.per_layer_ms[stem] != pytest.approx(f.per_layer_ms[stem], rel=1e-9)


def _dump(prof: object, path: Path) -> Path:
    from automc.schema.hw_profile import dump_hw_profile

    return dump_hw_profile(prof, path)  # type: ignore[arg-type]
