"""Tests for automc.proxy on tiny models and synthetic data defined here."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from automc.errors import AutomcError
from automc.plan import CompressionPlan, LayerChoice
from automc.proxy import (
    AdaptiveBNProxy,
    KLToTeacherProxy,
    Proxy,
    ProxyBatches,
    ProxyData,
    ProxyFailure,
    ShortTrainProxy,
    SynFlowProxy,
    VanillaProxy,
    create,
    names,
    recalibrate_bn,
)

torch.set_num_threads(2)

N_CLASSES = 4


class TinyNet(nn.Module):
    def __init__(self, c1: int = 16, c2: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, stride=2, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(c2, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(self.drop(x.mean(dim=(2, 3))))


class NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


class RaisingNet(nn.Module):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 1)
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.error


def _dataset(n: int, seed: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randn(N_CLASSES, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    y = torch.randint(0, N_CLASSES, (n,), generator=gen)
    x = templates[y] + 0.8 * torch.randn(n, 3, 8, 8, generator=gen)
    return TensorDataset(x, y)


class Splits:
    """Stand-in for automc.data.Splits whose test split must never be touched."""

    def __init__(self) -> None:
        self.train = _dataset(512, seed=1)
        self.val = _dataset(256, seed=2)
        self.num_classes = N_CLASSES

    @property
    def test(self) -> TensorDataset:
        raise AssertionError("the proxy read the test split")


@pytest.fixture(scope="module")
def splits() -> Splits:
    return Splits()


@pytest.fixture(scope="module")
def data(splits: Splits) -> ProxyData:
    return ProxyData.from_splits(
        splits, ProxyBatches(calib_batches=4, calib_batch_size=64, val_batch_size=128), seed=0
    )


@pytest.fixture(scope="module")
def train_data(splits: Splits) -> ProxyData:
    return ProxyData.from_splits(
        splits,
        ProxyBatches(calib_batches=4, calib_batch_size=64, val_batch_size=128, train_batches=4),
        seed=0,
    )


@pytest.fixture(scope="module")
def trained(splits: Splits) -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = splits.train.tensors
    model.train()
    for _ in range(6):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    return model.eval()


def _prune_conv1(model: TinyNet, keep: int) -> TinyNet:
    """Keep the ``keep`` conv1 filters of largest L1 norm (a fresh model, stale bn2 stats)."""
    idx = model.conv1.weight.detach().abs().sum(dim=(1, 2, 3)).argsort(descending=True)[:keep].sort().values
    out = TinyNet(c1=keep, c2=model.conv2.out_channels)
    state = copy.deepcopy(model.state_dict())
    for key in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        state[key] = state[key][idx]
    state["conv2.weight"] = state["conv2.weight"][:, idx]
    out.load_state_dict(state)
    return out.eval()


def _plan(keep: float = 1.0) -> CompressionPlan:
    return CompressionPlan(layers={"conv1": LayerChoice(keep_ratio=keep)}, model="tiny")


def test_proxy_data_reads_only_train_and_val(splits: Splits, data: ProxyData) -> None:
    assert len(data.calib_inputs) == 4 and all(b.shape == (64, 3, 8, 8) for b in data.calib_inputs)
    assert data.n_val == 256 and data.input_shape == (3, 8, 8)
    train_rows = {tuple(r.flatten()[:4].tolist()) for r in splits.train.tensors[0]}
    assert all(tuple(r.flatten()[:4].tolist()) in train_rows for b in data.calib_inputs for r in b)
    assert torch.equal(torch.cat(data.val_inputs), splits.val.tensors[0])
    with pytest.raises(AssertionError, match="test split"):
        _ = splits.test


def test_proxy_data_is_seeded(splits: Splits) -> None:
    limited = ProxyBatches(calib_batches=2, calib_batch_size=32, val_limit=100)
    a = ProxyData.from_splits(splits, limited, seed=5)
    b = ProxyData.from_splits(splits, limited, seed=5)
    c = ProxyData.from_splits(splits, limited, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.calib_inputs, b.calib_inputs))
    assert all(torch.equal(x, y) for x, y in zip(a.val_inputs, b.val_inputs))
    assert not torch.equal(a.calib_inputs[0], c.calib_inputs[0])
    assert a.n_val == 100


def test_proxy_data_repeats_small_train_split() -> None:
    d = ProxyData.build(
        train=_dataset(10, 3), val=_dataset(5, 4), batches=ProxyBatches(calib_batches=3, calib_batch_size=8)
    )
    assert [b.shape[0] for b in d.calib_inputs] == [8, 8, 8]


def test_proxy_data_rejects_empty_val() -> None:
    with pytest.raises(AutomcError, match="val split is empty"):
        ProxyData.build(train=_dataset(10, 3), val=_dataset(0, 4))


def test_recalibration_sets_cumulative_batch_statistics(data: ProxyData) -> None:
    torch.manual_seed(1)
    model = TinyNet().eval()
    model.bn1.momentum = 0.3
    seen_training: list[bool] = []
    model.drop.register_forward_hook(lambda m, i, o: seen_training.append(m.training))
    with torch.no_grad():
        acts = torch.cat([model.conv1(x) for x in data.calib_inputs])
    assert recalibrate_bn(model, data.calib_inputs) == 2
    expected_mean = acts.mean(dim=(0, 2, 3))
    batch_vars = [a.var(dim=(0, 2, 3), unbiased=True) for a in acts.split(64)]
    torch.testing.assert_close(model.bn1.running_mean, expected_mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.bn1.running_var, torch.stack(batch_vars).mean(0), rtol=1e-4, atol=1e-5)
    assert seen_training == [False] * len(data.calib_inputs)
    assert model.bn1.momentum == 0.3 and not model.training and not model.bn1.training


def test_adaptive_bn_recovers_accuracy_after_pruning(trained: TinyNet, data: ProxyData) -> None:
    base_acc = VanillaProxy(data=data).evaluate(copy.deepcopy(trained), _plan())["acc"]
    assert base_acc > 0.9
    vanilla = VanillaProxy(data=data).evaluate(_prune_conv1(trained, 4), _plan(0.25))
    pruned = _prune_conv1(trained, 4)
    stale_mean = pruned.bn2.running_mean.clone()
    adaptive = AdaptiveBNProxy(data=data).evaluate(pruned, _plan(0.25))
    assert not torch.allclose(pruned.bn2.running_mean, stale_mean)
    assert vanilla["acc"] < base_acc - 0.2
    assert adaptive["acc"] > vanilla["acc"] + 0.2
    assert adaptive["loss"] < vanilla["loss"]


def test_nan_outputs_fail(data: ProxyData, trained: TinyNet) -> None:
    for proxy in (
        AdaptiveBNProxy(data=data),
        VanillaProxy(data=data),
        KLToTeacherProxy(data=data, teacher=trained),
        SynFlowProxy(data=data),
    ):
        with pytest.raises(ProxyFailure, match="non-finite"):
            proxy.evaluate(NaNNet(), _plan())


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "out of memory"),
        (MemoryError(), "out of memory"),
        (ValueError("shape mismatch\nsecond line"), "ValueError: shape mismatch"),
    ],
)
def test_exceptions_become_one_line_failures(data: ProxyData, error: Exception, reason: str) -> None:
    for proxy in (AdaptiveBNProxy(data=data), SynFlowProxy(data=data)):
        with pytest.raises(ProxyFailure) as info:
            proxy.evaluate(RaisingNet(error), _plan())
        assert info.value.reason == reason
        assert "\n" not in str(info.value)


def test_failures_are_not_cached(data: ProxyData, trained: TinyNet) -> None:
    proxy = VanillaProxy(data=data)
    with pytest.raises(ProxyFailure):
        proxy.evaluate(NaNNet(), _plan())
    assert proxy.evaluate(copy.deepcopy(trained), _plan())["acc"] > 0.9
    assert proxy.evaluations == 2 and proxy.cache_hits == 0


def test_cache_returns_stored_value_without_recomputation(data: ProxyData, trained: TinyNet) -> None:
    proxy = AdaptiveBNProxy(data=data, cache_size=1)
    first = proxy.evaluate(_prune_conv1(trained, 8), _plan(0.5))
    again = proxy.evaluate(RaisingNet(RuntimeError("must not run")), _plan(0.5))
    assert again == first and proxy.evaluations == 1 and proxy.cache_hits == 1
    other = proxy.evaluate(_prune_conv1(trained, 4), _plan(0.25))
    assert other != first and proxy.evaluations == 2
    proxy.evaluate(_prune_conv1(trained, 8), _plan(0.5))
    assert proxy.evaluations == 3


def test_deterministic_for_a_seed(splits: Splits, trained: TinyNet) -> None:
    results = []
    for _ in range(2):
        d = ProxyData.from_splits(splits, ProxyBatches(calib_batches=3, calib_batch_size=32), seed=11)
        results.append(
            AdaptiveBNProxy(data=d, teacher=trained).evaluate(_prune_conv1(trained, 6), _plan(0.4))
        )
    assert results[0] == results[1]


def test_kl_to_teacher_is_zero_for_teacher_and_positive_for_pruned(data: ProxyData, trained: TinyNet) -> None:
    proxy = KLToTeacherProxy(data=data, teacher=trained, recalibrate=False)
    assert proxy.evaluate(copy.deepcopy(trained), _plan())["kl"] == pytest.approx(0.0, abs=1e-6)
    assert proxy.evaluate(_prune_conv1(trained, 4), _plan(0.25))["kl"] > 0.05


def test_adaptive_bn_with_teacher_returns_acc_loss_kl_in_one_pass(data: ProxyData, trained: TinyNet) -> None:
    combined = AdaptiveBNProxy(data=data, teacher=trained)
    out = combined.evaluate(_prune_conv1(trained, 4), _plan(0.25))
    assert set(out) == {m.key for m in combined.metrics} == {"acc", "loss", "kl"}
    alone = KLToTeacherProxy(data=data, teacher=trained).evaluate(_prune_conv1(trained, 4), _plan(0.25))
    assert out["kl"] == pytest.approx(alone["kl"], rel=1e-6)
    acc_only = AdaptiveBNProxy(data=data).evaluate(_prune_conv1(trained, 4), _plan(0.25))
    assert acc_only["acc"] == out["acc"]


def test_synflow_is_finite_smaller_when_pruned_and_leaves_model_untouched(trained: TinyNet) -> None:
    proxy = SynFlowProxy(input_shape=(3, 8, 8))
    model = copy.deepcopy(trained)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    full = proxy.evaluate(model, _plan())["score"]
    pruned = proxy.evaluate(_prune_conv1(trained, 4), _plan(0.25))["score"]
    assert 0.0 < pruned < full < float("inf")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert not any(p.grad is not None for p in model.parameters())


def test_registry_builds_every_proxy_and_keys_match_metrics(
    data: ProxyData, train_data: ProxyData, trained: TinyNet
) -> None:
    assert names() == ["adaptive_bn", "kl_teacher", "short_train", "synflow", "vanilla"]
    for name in names():
        proxy = create(name, data=train_data if name == "short_train" else data, teacher=trained)
        assert isinstance(proxy, Proxy) and proxy.name == name
        out = proxy.evaluate(_prune_conv1(trained, 8), _plan(0.5))
        assert set(out) == {m.key for m in proxy.metrics}
        assert all(m.direction in ("maximize", "minimize") for m in proxy.metrics)
    with pytest.raises(AutomcError, match="unknown proxy"):
        create("nope", data=data)
    with pytest.raises(AutomcError, match="teacher"):
        create("kl_teacher", data=data)
    with pytest.raises(AutomcError, match="calibration batches"):
        AdaptiveBNProxy(
            data=ProxyData.build(
                train=_dataset(8, 0), val=_dataset(8, 1), batches=ProxyBatches(calib_batches=0)
            )
        )


def test_proxy_data_train_batches_are_labelled_train_samples(splits: Splits, train_data: ProxyData) -> None:
    assert len(train_data.train_inputs) == 4 and all(
        b.shape == (64, 3, 8, 8) for b in train_data.train_inputs
    )
    label = {tuple(r.flatten()[:4].tolist()): int(y) for r, y in zip(*splits.train.tensors)}
    for xb, yb in zip(train_data.train_inputs, train_data.train_targets):
        assert [label[tuple(r.flatten()[:4].tolist())] for r in xb] == yb.tolist()
    plain = ProxyData.from_splits(
        splits, ProxyBatches(calib_batches=4, calib_batch_size=64, val_batch_size=128), seed=0
    )
    assert all(torch.equal(a, b) for a, b in zip(plain.calib_inputs, train_data.calib_inputs))
    assert plain.train_inputs == ()


def test_short_train_recovers_more_than_adaptive_bn_and_is_deterministic(
    train_data: ProxyData, trained: TinyNet
) -> None:
    adaptive = AdaptiveBNProxy(data=train_data).evaluate(_prune_conv1(trained, 2), _plan(0.125))
    pruned = _prune_conv1(trained, 2)
    before = pruned.conv2.weight.detach().clone()
    proxy = ShortTrainProxy(data=train_data, teacher=trained, steps=30, lr=0.05)
    short = proxy.evaluate(pruned, _plan(0.125))
    assert set(short) == {"acc", "loss", "kl"}
    assert not torch.equal(pruned.conv2.weight, before) and not pruned.training
    assert short["loss"] < adaptive["loss"] and short["acc"] >= adaptive["acc"]
    again = ShortTrainProxy(data=train_data, teacher=trained, steps=30, lr=0.05)
    assert again.evaluate(_prune_conv1(trained, 2), _plan(0.125)) == short
    without_teacher = ShortTrainProxy(data=train_data, steps=30, lr=0.05)
    assert set(without_teacher.evaluate(_prune_conv1(trained, 2), _plan(0.125))) == {"acc", "loss"}


def test_short_train_divergence_fails_and_bad_settings_are_refused(
    data: ProxyData, train_data: ProxyData, trained: TinyNet
) -> None:
    with pytest.raises(ProxyFailure, match="non-finite|diverged"):
        ShortTrainProxy(data=train_data, steps=20, lr=1e12).evaluate(_prune_conv1(trained, 8), _plan(0.5))
    with pytest.raises(AutomcError, match="train batches"):
        ShortTrainProxy(data=data)
    with pytest.raises(AutomcError, match="steps"):
        ShortTrainProxy(data=train_data, steps=0)
