"""automc.graph: layer specs, MACs against fvcore, Torch-Pruning dependency groups, input segments."""

from __future__ import annotations

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torch import nn

from automc import models
from automc.errors import UnsupportedLayerError
from automc.graph import count_macs, layers, require_modelled, trace
from automc.plan import NOT_PRUNABLE, LayerSpec
from automc.testing.models import AttentionNet

torch.set_num_threads(2)


def _zoo_input(name: str) -> tuple[nn.Module, torch.Tensor]:
    if name == "digits_cnn":
        return models.create(name, in_channels=1).eval(), torch.randn(1, 1, 8, 8)
    return models.create(name).eval(), torch.randn(1, 3, 32, 32)


@pytest.fixture(scope="module")
def resnet18() -> tuple[nn.Module, torch.Tensor, dict[str, LayerSpec]]:
    model, x = torchvision.models.resnet18(num_classes=10).eval(), torch.randn(1, 3, 32, 32)
    return model, x, {s.name: s for s in layers(model, x)}


def test_macs_match_fvcore_on_resnet18(resnet18):
    model, x, by = resnet18
    specs = list(by.values())
    ops = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = ops.by_operator()
    expected = by_op["conv"] + sum(by_op.get(k, 0) for k in ("linear", "addmm", "matmul"))
    assert sum(s.macs for s in specs) == expected
    assert count_macs(model, x) == expected
    assert sum(s.params for s in specs) == sum(
        p.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear) for p in m.parameters()
    )


def test_residual_adds_share_one_group(resnet18):
    by = resnet18[2]
    stage1 = {"conv1", "layer1.0.conv2", "layer1.1.conv2"}
    assert len({by[n].group for n in stage1}) == 1
    assert by["layer2.0.conv2"].group == by["layer2.0.downsample.0"].group == by["layer2.1.conv2"].group
    assert by["layer1.0.conv1"].group != by["conv1"].group
    assert by["fc"].group == NOT_PRUNABLE
    assert by["conv1"].group == 0  # id = execution index of the group's first layer
    assert by["conv1"].in_segments == ((NOT_PRUNABLE, 3, 1),)
    assert by["layer1.0.conv1"].in_segments == ((by["conv1"].group, 64, 1),)
    assert by["fc"].in_segments == ((by["layer4.0.conv2"].group, 512, 1),)


def test_spec_fields_of_a_conv(resnet18):
    spec = resnet18[2]["layer2.0.conv1"]
    assert (spec.kind, spec.in_channels, spec.out_channels) == ("conv2d", 64, 128)
    assert spec.kernel == (3, 3) and spec.stride == (2, 2) and spec.padding == (1, 1)
    assert spec.in_shape == (64, 8, 8) and spec.out_shape == (128, 4, 4)
    assert spec.macs == 4 * 4 * 128 * 64 * 9 and spec.params == 128 * 64 * 9 and not spec.bias


def test_concat_and_split_segments():
    model, x = _zoo_input("test_concat")
    info = trace(model, x)
    by = {s.name: s for s in info.layers}
    a, b = by["branch_a.0"].group, by["branch_b.0"].group
    assert a != NOT_PRUNABLE and b != NOT_PRUNABLE and a != b
    assert by["mix.0"].in_segments == ((a, 8, 1), (b, 4, 1))
    # mix's channels are split in halves between two convs: not prunable, and said why.
    assert by["mix.0"].group == NOT_PRUNABLE and "split" in info.unprunable["mix.0"]
    assert by["head_a.0"].in_segments == ((NOT_PRUNABLE, 8, 1),)
    assert by["fc"].in_segments == ((by["head_a.0"].group, 8, 1), (by["head_b.0"].group, 8, 1))


def test_depthwise_couples_with_its_producer():
    model, x = _zoo_input("test_depthwise")
    by = {s.name: s for s in layers(model, x)}
    assert by["dw1.0"].kind == "dwconv2d" and by["pw1.0"].kind == "conv2d"
    assert by["dw1.0"].group == by["stem.0"].group != NOT_PRUNABLE
    assert by["dw2.0"].group == by["pw1.0"].group
    assert by["dw2.0"].in_segments == ((by["pw1.0"].group, 16, 1),)


def test_linear_after_flatten_has_spatial_mult():
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    ).eval()
    by = {s.name: s for s in layers(model, torch.randn(1, 3, 8, 8))}
    assert by["3"].in_segments == ((by["0"].group, 6, 16),)
    assert by["0"].group == 0 and by["3"].group == 1 and by["5"].group == NOT_PRUNABLE
    assert by["5"].in_segments == ((1, 5, 1),)


def test_grouped_conv_is_not_prunable():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()
    info = trace(model, torch.randn(1, 3, 8, 8))
    by = {s.name: s for s in info.layers}
    assert by["2"].kind == "grouped"
    assert by["0"].group == by["2"].group == NOT_PRUNABLE
    assert "grouped" in info.unprunable["0"]


class ConcatFlatten(nn.Module):
    """Two branches concatenated on channels, then flattened into a linear layer: Torch-Pruning
    infers no concat offsets here and would prune the same channels of both branches."""

    def __init__(self, pool: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 4, 1)
        self.b = nn.Conv2d(8, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.fc = nn.Linear(8 * (4 if pool else 8) ** 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        return self.fc(self.pool(torch.cat([self.a(x), self.b(x)], 1)).flatten(1))


@pytest.mark.parametrize("pool", [False, True])
def test_a_concat_torch_pruning_cannot_map_is_not_prunable_and_pruning_keeps_the_model_running(pool):
    from automc import compress
    from automc.plan import CompressionPlan

    model, x = ConcatFlatten(pool).eval(), torch.randn(1, 3, 8, 8)
    info = trace(model, x)
    by = {s.name: s for s in info.layers}
    assert by["a"].group == by["b"].group == NOT_PRUNABLE
    assert "concatenation" in info.unprunable["a"] and "concatenation" in info.unprunable["b"]
    assert by["stem"].group != NOT_PRUNABLE
    small = compress.apply(model, CompressionPlan.uniform(list(info.layers), keep_ratio=0.5), x)
    assert small(x).shape == (1, 3)
    assert small.stem.out_channels == 4 and small.a.out_channels == small.b.out_channels == 4


def test_a_concat_on_a_spatial_dimension_keeps_its_branches_coupled_and_prunable():
    class SpatialCat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(3, 6, 1)
            self.head = nn.Conv2d(6, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.cat([self.a(x), self.b(x)], 2)).mean((2, 3))

    info = trace(SpatialCat().eval(), torch.randn(1, 3, 8, 8))
    by = {s.name: s for s in info.layers}
    assert by["a"].group == by["b"].group != NOT_PRUNABLE


SLOW_ZOO = {"resnet56", "vgg16", "mobilenetv2"}
ZOO = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_ZOO else n for n in models.names()]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_segments_cover_inputs_and_are_deterministic(name):
    model, x = _zoo_input(name)
    first, second = layers(model, x), layers(model, x)
    assert first == second
    assert [s.index for s in first] == list(range(len(first)))
    for spec in first:
        assert sum(ch * mult for _, ch, mult in spec.in_segments) == spec.in_channels, spec.name
    assert first[-1].group == NOT_PRUNABLE
    assert any(s.prunable for s in first)


def test_trace_restores_training_mode():
    model = models.create("test_tiny").train()
    trace(model, torch.randn(2, 3, 16, 16))
    assert model.training


class Mix(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4, 3))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv1d(seq, self.weight, padding=1)


class HandRolled(nn.Module):
    """A weight used through F.conv1d in a custom module, and a matmul in the root's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.mix = Mix()
        self.head = nn.Parameter(torch.randn(4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.conv(x).flatten(2)).mean(2) @ self.head


def test_attention_is_recorded_as_unmodelled_and_refused():
    model, x = AttentionNet(num_classes=10, in_channels=3).eval(), torch.randn(1, 3, 16, 16)
    info = trace(model, x)
    assert set(info.unmodelled) == {"attn"}
    assert "MultiheadAttention" in info.unmodelled["attn"]
    assert "multi_head_attention_forward" in info.unmodelled["attn"]
    assert [s.name for s in info.layers] == ["stem.0", "fc"]
    assert all(not s.prunable for s in info.layers)
    for check in (layers, require_modelled):
        with pytest.raises(
            UnsupportedLayerError, match=r"1 module\(s\) compute outside.*attn: MultiheadAttention"
        ):
            check(model, x)


def test_functional_compute_outside_layers_is_attributed_to_its_module():
    model = HandRolled()
    info = trace(model, torch.randn(1, 3, 8, 8))
    assert dict(info.unmodelled) == {"<model>": "HandRolled calls matmul", "mix": "Mix calls conv1d"}
    assert [s.name for s in info.layers] == ["conv"]


def test_conv_and_linear_internals_are_not_unmodelled(resnet18):
    model, x, _ = resnet18
    assert trace(model, x).unmodelled == {}
    require_modelled(model, x)


def test_a_model_too_deep_for_the_input_is_a_user_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 5), nn.Conv2d(4, 4, 5))
    with pytest.raises(
        UnsupportedLayerError, match=r"does not run on an input of shape 1x3x6x6 \(RuntimeError"
    ):
        trace(model, torch.randn(1, 3, 6, 6))
