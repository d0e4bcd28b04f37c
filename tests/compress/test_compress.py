"""automc.compress.apply: pruning, low rank, quantization, sparsity, plan validation, reload."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from automc import models
from automc.compress import (
    QuantConv2d,
    QuantLinear,
    apply,
    load_compressed,
    lowrank,
    quantizers,
    save_compressed,
)
from automc.errors import AutomcError
from automc.graph import count_macs, layers, trace
from automc.plan import CompressionPlan, LayerChoice, kept_channels

torch.set_num_threads(2)

SLOW_ZOO = {"resnet56", "vgg16", "mobilenetv2"}


def _zoo(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if name == "digits_cnn":
        return models.create(name, in_channels=1).eval(), torch.randn(2, 1, 8, 8)
    return models.create(name).eval(), torch.randn(2, 3, 32, 32)


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _check_half_pruned(model: nn.Module, x: torch.Tensor) -> None:
    specs = layers(model, x[:1])
    plan = CompressionPlan.uniform(specs, keep_ratio=0.5)
    out = apply(model, plan, x[:1])
    y = out(x)
    assert y.shape == model(x).shape
    assert count_macs(out, x[:1]) < sum(s.macs for s in specs)
    assert _params(out) < _params(model)
    keep = plan.group_keep(specs)
    for spec in specs:
        module = out.get_submodule(spec.name)
        want = kept_channels(spec.out_channels, keep[spec.group]) if spec.prunable else spec.out_channels
        assert module.weight.shape[0] == want, spec.name
        n_in = sum(kept_channels(ch, keep.get(g, 1.0)) * m for g, ch, m in spec.in_segments)
        assert (module.in_features if isinstance(module, nn.Linear) else module.in_channels) == n_in, (
            spec.name
        )


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_ZOO else n for n in models.names()]
)
def test_zoo_half_pruned_is_smaller_and_matches_prediction(name):
    _check_half_pruned(*_zoo(name))


@pytest.mark.parametrize(
    "name,size",
    [
        ("resnet18", 32),
        ("mobilenet_v3_small", 32),
        pytest.param("resnet50", 32, marks=pytest.mark.slow),
        pytest.param("mobilenet_v2", 32, marks=pytest.mark.slow),
        pytest.param("densenet121", 32, marks=pytest.mark.slow),
        pytest.param("efficientnet_b0", 32, marks=pytest.mark.slow),
        pytest.param("vgg11_bn", 32, marks=pytest.mark.slow),
        pytest.param("regnet_x_400mf", 32, marks=pytest.mark.slow),
        pytest.param("googlenet", 32, marks=pytest.mark.slow),
    ],
)
def test_torchvision_half_pruned(name, size):
    torch.manual_seed(0)
    _check_half_pruned(models.create(f"tv:{name}").eval(), torch.randn(2, 3, size, size))


def test_shufflenet_is_traced_but_not_prunable():
    model = models.create("tv:shufflenet_v2_x0_5").eval()
    info = trace(model, torch.randn(1, 3, 32, 32))
    assert not info.groups and all("Torch-Pruning" in why for why in info.unprunable.values())
    plan = CompressionPlan.uniform(info.layers, keep_ratio=0.5, w_bits=8, a_bits=8)
    assert apply(model, plan, torch.randn(1, 3, 32, 32))(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet20", "test_concat", "test_depthwise"])
def test_identity_plan_reproduces_outputs(name):
    model, x = _zoo(name)
    plan = CompressionPlan.uniform(layers(model, x[:1]))
    out = apply(model, plan, x[:1])
    assert out is not model
    torch.testing.assert_close(out(x), model(x), atol=1e-5, rtol=0)


def test_original_model_untouched_and_mode_kept():
    model, x = _zoo("resnet20")
    before = copy.deepcopy(model.state_dict())
    model.train()
    plan = CompressionPlan.uniform(layers(model, x[:1]), keep_ratio=0.5, w_bits=4, a_bits=8, rank_ratio=0.5)
    out = apply(model, plan, x[:1])
    assert out.training and model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_full_rank_svd_reproduces_linear_and_conv():
    torch.manual_seed(0)
    lin = nn.Linear(12, 7)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    x_lin, x_conv = torch.randn(5, 12), torch.randn(2, 4, 9, 9)
    f_lin = lowrank.get("svd")(lin, 7)
    f_conv = lowrank.get("svd")(conv, 6)
    torch.testing.assert_close(f_lin(x_lin), lin(x_lin), atol=1e-4, rtol=0)
    torch.testing.assert_close(f_conv(x_conv), conv(x_conv), atol=1e-4, rtol=0)


def test_rank_r_parameter_counts_and_names():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 20), nn.ReLU()
    )
    model.append(nn.Linear(20, 5))
    model.eval()
    x = torch.randn(1, 3, 8, 8)
    plan = CompressionPlan(layers={"0": LayerChoice(rank=4), "3": LayerChoice(rank=3)})
    out = apply(model, plan, x)
    assert isinstance(out.get_submodule("0"), nn.Sequential)
    conv_params = sum(p.numel() for p in out.get_submodule("0").parameters())
    assert conv_params == 4 * (3 * 3 * 3) + 4 * 16 + 16
    lin_params = sum(p.numel() for p in out.get_submodule("3").parameters())
    assert lin_params == 3 * (1024 + 20) + 20
    assert out.get_submodule("0.0").stride == (1, 1) and out.get_submodule("0.0").padding == (1, 1)
    assert out(x).shape == (1, 5)


def test_rank_clipped_after_pruning():
    model, x = _zoo("test_tiny")
    specs = layers(model, x[:1])
    conv2 = next(s for s in specs if s.name == "conv2")
    plan = CompressionPlan.uniform(specs, keep_ratio=0.25).with_layers(
        {"conv2": LayerChoice(keep_ratio=0.25, rank=conv2.max_rank)}
    )
    out = apply(model, plan, x[:1])
    first, second = out.get_submodule("conv2.0"), out.get_submodule("conv2.1")
    assert first.out_channels == second.in_channels == kept_channels(16, 0.25)
    assert out(x).shape == (2, 10)


def test_eight_bit_quantization_keeps_outputs_close():
    model, x = _zoo("resnet20")
    specs = layers(model, x[:1])
    out = apply(model, CompressionPlan.uniform(specs, w_bits=8, a_bits=8), x[:1], calib_batches=[x])
    assert isinstance(out.get_submodule("conv1"), QuantConv2d) and isinstance(
        out.get_submodule("fc"), QuantLinear
    )
    ref, got = model(x), out(x)
    assert not torch.equal(ref, got)
    assert (got - ref).norm() / ref.norm() < 0.05


def test_one_bit_weights_take_two_values_per_channel():
    model, x = _zoo("test_tiny")
    plan = CompressionPlan.uniform(layers(model, x[:1]), w_bits=1)
    conv = apply(model, plan, x[:1]).get_submodule("conv2")
    with torch.no_grad():
        w = conv.quantized_weight()
    for row, float_row in zip(w.reshape(w.shape[0], -1), conv.weight.reshape(w.shape[0], -1)):
        values = torch.unique(row)
        assert len(values) == 2
        torch.testing.assert_close(values.abs(), float_row.abs().mean().expand(2))


def test_gradients_flow_through_quantized_layers():
    model, x = _zoo("test_tiny")
    plan = CompressionPlan.uniform(layers(model, x[:1]), w_bits=4, a_bits=4)
    out = apply(model, plan, x[:1], calib_batches=[x])
    loss = nn.functional.cross_entropy(out(x), torch.tensor([1, 3]))
    loss.backward()
    for name in ("conv1", "conv2", "fc"):
        grad = out.get_submodule(name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    opt = torch.optim.SGD(out.parameters(), lr=0.1)
    before = out.conv2.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, out.conv2.weight)


def test_sixteen_bit_is_half_rounding():
    model, x = _zoo("test_tiny")
    out = apply(model, CompressionPlan.uniform(layers(model, x[:1]), w_bits=16), x[:1])
    with torch.no_grad():
        torch.testing.assert_close(
            out.conv1.quantized_weight(), model.conv1.weight.half().float(), atol=0, rtol=0
        )


def test_sparsity_zeroes_weights():
    model, x = _zoo("test_tiny")
    plan = CompressionPlan(layers={"conv2": LayerChoice(sparsity=0.5, w_bits=8)})
    out = apply(model, plan, x[:1])
    w = out.conv2.weight
    assert (w == 0).sum().item() == round(w.numel() * 0.5)
    assert out(x).shape == (2, 10)


def test_compressed_model_saves_reloads_and_deepcopies(tmp_path):
    model, x = _zoo("test_residual")
    specs = layers(model, x[:1])
    plan = CompressionPlan.uniform(
        specs, keep_ratio=0.5, w_bits=6, a_bits=8, model="test_residual"
    ).with_layers({"conv2": LayerChoice(keep_ratio=0.5, rank=3, w_bits=6, a_bits=8, sparsity=0.3)})
    out = apply(model, plan, x[:1], calib_batches=[x])
    assert isinstance(out.get_submodule("conv2.1"), QuantConv2d)
    path = tmp_path / "m.pt"
    save_compressed(path, out, plan, model_name="test_residual", input_shape=(1, 3, 32, 32), num_classes=10)
    again = load_compressed(path)
    torch.testing.assert_close(again(x), out(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(copy.deepcopy(out)(x), out(x), atol=1e-6, rtol=0)


def test_quantized_model_exports_to_onnx():
    model, x = _zoo("test_tiny")
    plan = CompressionPlan.uniform(layers(model, x[:1]), keep_ratio=0.5, w_bits=4, a_bits=8, rank_ratio=0.5)
    buf = io.BytesIO()
    torch.onnx.export(apply(model, plan, x[:1]), (x[:1],), buf, opset_version=13, dynamo=False)
    assert len(buf.getvalue()) > 1000


def test_l1_keeps_the_largest_filters_and_random_is_seeded():
    model, x = _zoo("test_tiny")
    with torch.no_grad():
        model.conv1.weight.mul_(0.01)
        model.conv1.weight[[1, 5, 6]] *= 1000
    specs = layers(model, x[:1])
    plan = CompressionPlan(layers={"conv1": LayerChoice(keep_ratio=3 / 8)})
    out = apply(model, plan, x[:1])
    torch.testing.assert_close(out.conv1.weight, model.conv1.weight[[1, 5, 6]])
    rand = CompressionPlan(layers={"conv2": LayerChoice(keep_ratio=0.5)}, criterion="random")
    a = apply(model, rand, x[:1], seed=1).conv2.weight
    b = apply(model, rand, x[:1], seed=1).conv2.weight
    picks = {tuple(apply(model, rand, x[:1], seed=s).fc.weight.sum(0).tolist()) for s in range(2, 6)}
    assert torch.equal(a, b) and len(picks) > 1
    assert specs[0].name == "conv1"


@pytest.mark.parametrize(
    "choices,fingerprint,match",
    [
        ({"nope": LayerChoice(keep_ratio=0.5)}, "", "unknown layer"),
        ({}, "deadbeef0000", "another model"),
        ({"fc": LayerChoice(rank=11)}, "", "exceeds"),
        (
            {"conv1": LayerChoice(keep_ratio=0.5), "layer1.0.conv2": LayerChoice(keep_ratio=0.75)},
            "",
            "coupled",
        ),
        ({"fc": LayerChoice(keep_ratio=0.5)}, "", "not prunable"),
        ({"conv1": LayerChoice(w_bits=4, quantizer="nope")}, "", "unknown weight quantizer"),
        ({"conv1": LayerChoice(rank=2, lowrank="nope")}, "", "unknown low-rank"),
    ],
)
def test_bad_plans_raise(choices, fingerprint, match):
    model, x = _zoo("resnet20")
    with pytest.raises(AutomcError, match=match):
        apply(model, CompressionPlan(layers=choices, fingerprint=fingerprint), x[:1])


def test_unknown_criterion_raises():
    model, x = _zoo("test_tiny")
    with pytest.raises(AutomcError, match="unknown pruning criterion"):
        apply(model, CompressionPlan(layers={"conv1": LayerChoice(keep_ratio=0.5)}, criterion="nope"), x[:1])


def test_registries_list_builtins_and_storage():
    assert {"uniform", "binary"} <= set(quantizers.names())
    assert "svd" in lowrank.names()
    assert quantizers.get("uniform").storage_bits((4, 3, 3, 3), 8) == 108 * 8 + 4 * 32
    assert quantizers.get("binary").storage_bits((4, 3, 3, 3), 1) == 108 + 4 * 32
    w = torch.randn(5, 7)
    q = quantizers.get("uniform")(w, 4)
    for row, qrow in zip(w, q):
        assert torch.unique(qrow).numel() <= 15
        assert (qrow - row).abs().max() <= row.abs().max() / 7 / 2 + 1e-6
