"""Model zoo: every registered model builds and runs; tv: models; weights loading errors."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch_pruning as tp
from torch import nn

from automc import models
from automc.errors import AutomcError
from automc.registry import Registry

torch.set_num_threads(2)

TEST_MODELS = ("test_tiny", "test_residual", "test_concat", "test_depthwise", "test_linear")


def test_registry_lists_zoo_and_test_models() -> None:
    names = models.names()
    for name in ("resnet20", "resnet56", "vgg16", "mobilenetv2", "digits_cnn", *TEST_MODELS):
        assert name in names
    assert names == sorted(names) == models.REGISTRY.names()
    assert all(models.describe()[n] for n in names)
    assert "tv:<name>" in models.PREFIX_FORMS and "tv:<name>" not in models.describe()


def test_register_describes_a_factory_by_its_docstring_and_refuses_a_taken_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fresh: Registry = Registry(kind="model")
    monkeypatch.setattr(models._registry, "REGISTRY", fresh)

    @models.register("mine")
    def mine(*, num_classes: int, in_channels: int) -> nn.Module:
        """A linear classifier.

        Only the first line is the description.
        """
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    assert models.describe() == {"mine": "A linear classifier."}
    assert models.names() == ["mine"]
    assert isinstance(models.create("mine", num_classes=2), nn.Sequential)
    with pytest.raises(ValueError, match="'mine' is already registered"):
        models.register("mine", "another")(mine)
    with pytest.raises(ValueError, match="one non-empty line"):
        models.register("undocumented")(lambda **kw: nn.Identity())
    models.register("described", "given explicitly")(lambda **kw: nn.Identity())
    assert fresh.describe()["described"] == "given explicitly"


@pytest.mark.parametrize("name", models.names())
def test_every_model_runs_forward(name: str) -> None:
    torch.manual_seed(0)
    model = models.create(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", TEST_MODELS + ("resnet20", "digits_cnn", "mobilenetv2"))
def test_models_accept_16px_inputs_and_other_channel_counts(name: str) -> None:
    model = models.create(name, num_classes=3, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 16)).shape == (1, 3)


def test_test_models_use_the_patterns_they_promise() -> None:
    convs = {
        n: [m for m in models.create(n).modules() if isinstance(m, nn.Conv2d)]
        for n in ("test_depthwise", "test_linear")
    }
    assert any(m.groups == m.in_channels > 1 for m in convs["test_depthwise"])
    assert convs["test_linear"] == []
    assert sum(isinstance(m, nn.BatchNorm2d) for m in models.create("test_tiny").modules()) == 2


@pytest.mark.parametrize("name", ("resnet20", "test_residual", "test_concat", "test_depthwise"))
def test_torch_pruning_can_prune_a_coupled_conv_and_the_model_still_runs(name: str) -> None:
    model = models.create(name).eval()
    x = torch.randn(1, 3, 32, 32)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    # The last conv of the network is inside a residual stage / concat / depthwise chain.
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    before = conv.out_channels
    group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=[0, 1])
    assert dg.check_pruning_group(group)
    group.prune()
    assert conv.out_channels == before - 2
    with torch.no_grad():
        assert model(x).shape == (1, 10)


def test_resnet20_is_option_b_with_identity_shortcuts_elsewhere() -> None:
    model = models.create("resnet20")
    projections = [
        n for n, m in model.named_modules() if n.endswith("shortcut") and isinstance(m, nn.Sequential)
    ]
    assert projections == ["layer2.0.shortcut", "layer3.0.shortcut"]
    assert sum(p.numel() for p in model.parameters()) == 272_474
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # 1 stem + 18 block convs: 20 layers with the classifier


@pytest.mark.parametrize("name", ("resnet18", "mobilenet_v2"))
def test_torchvision_models_build_with_num_classes(name: str) -> None:
    model = models.create(f"tv:{name}", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_torchvision_errors() -> None:
    with pytest.raises(AutomcError, match="3 input channels"):
        models.create("tv:resnet18", in_channels=1)
    with pytest.raises(AutomcError, match="unknown torchvision model 'resnet19'"):
        models.create("tv:resnet19")
    assert "resnet18" in models.torchvision_names()


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(AutomcError) as err:
        models.create("foo")
    msg = str(err.value)
    assert msg.startswith("unknown model 'foo' (known: ")
    assert "resnet20" in msg and "tv:<torchvision name>" in msg and "\n" not in msg


def test_bad_sizes_are_user_errors() -> None:
    with pytest.raises(AutomcError, match="num_classes"):
        models.create("test_tiny", num_classes=0)
    with pytest.raises(AutomcError, match="in_channels"):
        models.create("test_tiny", in_channels=True)


def test_weights_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    src = models.create("test_residual", num_classes=4)
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    torch.manual_seed(2)
    dst = models.create("test_residual", num_classes=4, weights=path)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    wrapped = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, wrapped)
    again = models.create("test_residual", num_classes=4, weights=wrapped)
    assert torch.equal(again.fc.weight, src.fc.weight)


class _NotAllowed:
    pass


def test_bad_weights_files_are_one_line_errors(tmp_path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 this is not a checkpoint" * 10)
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listing)
    pickled = tmp_path / "object.pt"
    pickled.write_bytes(pickle.dumps(_NotAllowed()))
    wrong = tmp_path / "wrong.pt"
    torch.save(models.create("test_depthwise").state_dict(), wrong)
    shape = tmp_path / "shape.pt"
    torch.save(models.create("test_tiny", num_classes=3).state_dict(), shape)
    cases = {
        tmp_path / "missing.pt": "no such weights file",
        garbage: "cannot load weights",
        listing: "expected a state_dict",
        pickled: "cannot load weights",
        wrong: "missing keys: conv1.weight, bn1.weight, bn1.bias, bn1.running_mean, bn1.running_var, \\.\\.\\.\\(",
        shape: r"shape mismatch: fc.weight \(3, 16\) in file vs \(10, 16\) in model",
    }
    for path, expected in cases.items():
        with pytest.raises(AutomcError, match=expected) as err:
            models.create("test_tiny", weights=path)
        assert str(err.value).startswith(f"{path}: ")
        assert "\n" not in str(err.value)


def test_weights_are_loaded_without_executing_pickled_code(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (marker.touch, ())

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"fc.weight": Evil()}))
    with pytest.raises(AutomcError, match="cannot load weights"):
        models.create("test_tiny", weights=path)
    assert not marker.exists()
