"""Pruning criteria taylor, thinet, lasso, epruner, correlation (tiny models, real code paths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automc.compress import criteria
from automc.compress.criteria import ChannelGroup, CriterionContext
from automc.compress.criteria.clustering import (
    EPruner,
    affinity_propagation,
    correlation_order,
    epruner_keep_ratio,
    similarity_matrix,
)
from automc.compress.criteria.gradient import Taylor
from automc.compress.criteria.reconstruction import contribution_gram, lasso_select, thinet_greedy
from automc.errors import AutomcError

torch.set_num_threads(1)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def capture(model: nn.Module, batches: list[torch.Tensor]):
    """Stand-in for compress.apply's ``capture_inputs``: the inputs a module sees over batches."""
    cache: dict[int, torch.Tensor] = {}

    def get(module: nn.Module) -> torch.Tensor:
        if id(module) not in cache:
            seen: list[torch.Tensor] = []
            handle = module.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
            with torch.no_grad():
                for b in batches:
                    model(b)
            handle.remove()
            cache[id(module)] = torch.cat(seen)
        return cache[id(module)]

    return get


@pytest.fixture()
def setup():
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    batches = [torch.randn(6, 3, 4, 4) for _ in range(2)]
    targets = [torch.randint(0, 5, (6,)) for _ in range(2)]
    ctx = CriterionContext(
        model=model, batches=batches, targets=targets, seed=0, capture_inputs=capture(model, batches)
    )
    g1 = ChannelGroup(
        group=0,
        channels=8,
        producers=[("conv1", model.conv1)],
        norms=[("bn1", model.bn1)],
        consumers=[("conv2", model.conv2, 0)],
    )
    g2 = ChannelGroup(
        group=1,
        channels=6,
        producers=[("conv2", model.conv2)],
        norms=[("bn2", model.bn2)],
        consumers=[("fc", model.fc, 0)],
        mults={"fc": 16},
    )
    return model, ctx, g1, g2


def removal_error(ctx: CriterionContext, consumer: nn.Module, removed: list[int], mult: int = 1) -> float:
    """Relative squared change of the consumer's output (no bias) when input channels are zeroed."""
    x = ctx.capture_inputs(consumer).double()
    w = consumer.weight.detach().double()
    if isinstance(consumer, nn.Conv2d):
        full = F.conv2d(x, w, padding=consumer.padding)
        xz = x.clone()
        xz[:, removed] = 0
        pruned = F.conv2d(xz, w, padding=consumer.padding)
    else:
        full = x @ w.T
        xz = x.clone()
        for c in removed:
            xz[:, c * mult : (c + 1) * mult] = 0
        pruned = xz @ w.T
    return float(((full - pruned) ** 2).sum() / (full**2).sum())


def test_registry_lists_seed_criteria():
    names = criteria.names()
    for name in ("taylor", "thinet", "lasso", "epruner", "correlation"):
        assert name in names
        assert criteria.describe()[name]
    assert criteria.get("thinet").needs_data
    assert not criteria.get("epruner").needs_data
    with pytest.raises(AutomcError, match="unknown pruning criterion"):
        criteria.get("thinet_typo")


def test_gram_matches_real_removal_error(setup):
    model, ctx, g1, g2 = setup
    gram = contribution_gram(g1, ctx)
    for removed in ([0], [2, 5], [1, 3, 6, 7]):
        idx = torch.tensor(removed)
        predicted = float(gram[idx][:, idx].sum())
        assert predicted == pytest.approx(removal_error(ctx, model.conv2, removed), rel=1e-6)
    gram2 = contribution_gram(g2, ctx)
    idx = torch.tensor([1, 4])
    assert float(gram2[idx][:, idx].sum()) == pytest.approx(
        removal_error(ctx, model.fc, [1, 4], mult=16), rel=1e-6
    )


def test_taylor_matches_finite_differences(setup):
    model, ctx, g1, _ = setup
    model.double()
    ctx = CriterionContext(model=model, batches=[b.double() for b in ctx.batches], targets=ctx.targets)
    scores = Taylor().scores(g1, ctx)
    eps = 1e-5
    for c in (0, 3, 7):
        total = 0.0
        for b, t in zip(ctx.batches, ctx.targets):
            losses = []
            for sign in (1, -1):
                with torch.no_grad():
                    w0, b0 = model.bn1.weight[c].item(), model.bn1.bias[c].item()
                    model.bn1.weight[c] = w0 * (1 + sign * eps)
                    model.bn1.bias[c] = b0 * (1 + sign * eps)
                    losses.append(F.cross_entropy(model(b), t).item())
                    model.bn1.weight[c], model.bn1.bias[c] = w0, b0
            total += (losses[0] - losses[1]) / (2 * eps)
        assert float(scores[c]) == pytest.approx(abs(total), rel=1e-4)
    kept = criteria.get("taylor").select(g1, 4, ctx)
    assert kept == sorted(torch.argsort(scores, descending=True)[:4].tolist())
    assert all(p.grad is None for p in model.parameters())


def test_taylor_without_targets_and_without_data(setup):
    model, ctx, g1, _ = setup
    no_labels = CriterionContext(model=model, batches=ctx.batches, seed=0)
    scores = Taylor().scores(g1, no_labels)
    assert scores.shape == (8,) and float(scores.sum()) > 0
    with pytest.raises(AutomcError, match="needs calibration"):
        Taylor().select(g1, 4, CriterionContext(model=model))


def test_thinet_drops_channels_the_consumer_ignores(setup):
    model, ctx, g1, _ = setup
    with torch.no_grad():
        model.conv1.weight[[1, 4, 6]] *= 10  # large L1 ...
        model.conv2.weight[:, [1, 4, 6]] = 0  # ... but no effect downstream
    kept = criteria.get("thinet").select(g1, 5, ctx)
    assert kept == [0, 2, 3, 5, 7]
    l1_kept = sorted(torch.argsort(model.conv1.weight.abs().sum((1, 2, 3)), descending=True)[:5].tolist())
    assert removal_error(ctx, model.conv2, [c for c in range(8) if c not in kept]) < removal_error(
        ctx, model.conv2, [c for c in range(8) if c not in l1_kept]
    )
    with pytest.raises(AutomcError, match="needs calibration"):
        criteria.get("thinet").select(g1, 4, CriterionContext(model=model))


def test_thinet_greedy_first_step_is_smallest_contribution():
    gram = torch.diag(torch.tensor([5.0, 1.0, 3.0, 0.5], dtype=torch.float64))
    assert thinet_greedy(gram, 3) == [0, 1, 2]
    assert thinet_greedy(gram, 2) == [0, 2]
    # two channels that cancel each other are removed together
    gram = torch.tensor([[1.0, -0.99, 0.0], [-0.99, 1.0, 0.0], [0.0, 0.0, 1.5]], dtype=torch.float64)
    assert thinet_greedy(gram, 1) == [2]


def test_lasso_reconstruction_beats_plain_removal(setup):
    model, ctx, g1, _ = setup
    crit = criteria.get("lasso")
    kept = crit.select(g1, 4, ctx)
    assert len(kept) == 4 and kept == sorted(set(kept))
    removed = [c for c in range(8) if c not in kept]
    x = ctx.capture_inputs(model.conv2).double()
    reference = F.conv2d(x, model.conv2.weight.detach().double(), padding=1)
    plain = removal_error(ctx, model.conv2, removed)
    crit.reconstruct(g1, kept, ctx)
    xz = x.clone()
    xz[:, removed] = 0
    refit = F.conv2d(xz, model.conv2.weight.detach().double(), padding=1)
    err = float(((reference - refit) ** 2).sum() / (reference**2).sum())
    assert err < 0.9 * plain
    assert float(model.conv2.weight.detach()[:, removed].abs().sum()) == 0.0


def test_lasso_reconstruction_on_linear_consumer(setup):
    model, ctx, _, g2 = setup
    crit = criteria.get("lasso")
    kept = crit.select(g2, 3, ctx)
    removed = [c for c in range(6) if c not in kept]
    x = ctx.capture_inputs(model.fc).double()
    reference = x @ model.fc.weight.detach().double().T
    plain = removal_error(ctx, model.fc, removed, mult=16)
    crit.reconstruct(g2, kept, ctx)
    xz = x.clone()
    for c in removed:
        xz[:, c * 16 : (c + 1) * 16] = 0
    err = float(((reference - xz @ model.fc.weight.detach().double().T) ** 2).sum() / (reference**2).sum())
    assert err < plain


def test_lasso_select_skips_redundant_channels():
    # channel 2 is a weak copy of channel 4's direction; channel 3 contributes nothing
    z = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.1], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    gram = (z @ z.T).double()
    assert lasso_select(gram, 3) == [0, 1, 4]
    assert lasso_select(gram, 1) == [4]
    assert lasso_select(gram, 5) == [0, 1, 2, 3, 4]


def test_affinity_propagation_matches_sklearn():
    from sklearn.cluster import AffinityPropagation

    rng = np.random.default_rng(0)
    for n_points, beta in ((30, 1.0), (40, 0.5), (25, 0.8)):
        centres = rng.normal(size=(4, 6)) * 3
        weights = torch.tensor(centres[rng.integers(0, 4, n_points)] + rng.normal(size=(n_points, 6)) * 0.7)
        sim = similarity_matrix(weights, beta)
        ours, labels = affinity_propagation(sim)
        ref = AffinityPropagation(
            affinity="precomputed", damping=0.5, max_iter=200, preference=np.diag(sim).copy(), random_state=0
        ).fit(sim)
        assert list(ours) == list(ref.cluster_centers_indices_)
        assert list(labels) == list(ref.labels_)


def test_epruner_keep_ratio_and_select(setup):
    torch.manual_seed(1)
    weights = torch.randn(32, 3, 3, 3)
    r_small_beta = epruner_keep_ratio(weights, beta=0.1)
    r_big_beta = epruner_keep_ratio(weights, beta=1.0)
    assert 0 < r_big_beta <= r_small_beta <= 1
    with pytest.raises(AutomcError, match="beta"):
        epruner_keep_ratio(weights, beta=1.5)
    model, ctx, g1, _ = setup
    exemplars, _ = affinity_propagation(similarity_matrix(model.conv1.weight, 0.75))
    crit = EPruner()
    many = crit.select(g1, 8 if len(exemplars) < 8 else len(exemplars), ctx)
    assert set(int(e) for e in exemplars) <= set(many)
    few = crit.select(g1, 1, ctx)
    assert len(few) == 1 and few[0] in set(int(e) for e in exemplars)


def test_correlation_drops_duplicate_filter_first(setup):
    torch.manual_seed(2)
    rows = torch.randn(6, 20)
    rows[4] = 2.0 * rows[1] + 0.01 * torch.randn(20)
    kept = correlation_order(rows, 5)
    assert kept == [0, 2, 3, 4, 5]  # filter 1 is the weaker twin of filter 4
    model, ctx, g1, _ = setup
    assert len(criteria.get("correlation").select(g1, 3, ctx)) == 3
    assert criteria.get("correlation").select(g1, 8, ctx) == list(range(8))


@pytest.mark.parametrize("name", ["taylor", "thinet", "lasso", "epruner", "correlation"])
def test_through_compress_apply(name):
    from automc import compress, graph
    from automc.models import create
    from automc.plan import CompressionPlan

    torch.manual_seed(0)
    model = create("test_residual", num_classes=3, in_channels=3).eval()
    example = torch.zeros(1, 3, 8, 8)
    layers = graph.layers(model, example)
    plan = CompressionPlan.uniform(layers, keep_ratio=0.5, criterion=name)
    x = torch.randn(16, 3, 8, 8)
    small = compress.apply(
        model, plan, example, calib_batches=[x], calib_targets=[torch.randint(0, 3, (16,))]
    )
    assert small(x).shape == (16, 3)
    n_params = sum(p.numel() for p in small.parameters())
    assert n_params < 0.5 * sum(p.numel() for p in model.parameters())


def test_group_l1_averages_every_tied_layer_after_normalising_each():
    """One wide producer must not outvote the rest of the group: each layer's per-channel L1
    is divided by its mean before the layers are averaged (Torch-Pruning's group magnitude)."""
    from automc.compress.criteria.magnitude import group_l1_scores

    wide, narrow = nn.Conv2d(64, 3, 1, bias=False), nn.Conv2d(2, 3, 1, bias=False)
    consumer, bn = nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(3)
    with torch.no_grad():
        wide.weight.copy_(torch.tensor([1.2, 1.0, 0.8]).view(3, 1, 1, 1).expand(3, 64, 1, 1))
        narrow.weight.copy_(torch.tensor([0.1, 3.0, 0.1]).view(3, 1, 1, 1).expand(3, 2, 1, 1))
        consumer.weight.copy_(torch.tensor([0.2, 1.0, 1.0]).view(1, 3, 1, 1).expand(4, 3, 1, 1))
        bn.weight.copy_(torch.tensor([0.5, 1.0, 1.5]))
    group = ChannelGroup(
        group=0,
        channels=3,
        producers=[("w", wide), ("n", narrow)],
        norms=[("bn", bn)],
        consumers=[("c", consumer, 0)],
    )
    parts = [
        torch.tensor([1.2, 1.0, 0.8]),
        torch.tensor([0.1, 3.0, 0.1]) / (3.2 / 3),
        torch.tensor([0.5, 1.0, 1.5]),
        torch.tensor([0.2, 1.0, 1.0]) / (2.2 / 3),
    ]
    assert torch.allclose(group_l1_scores(group), torch.stack(parts).mean(dim=0), atol=1e-6)
    ctx = CriterionContext(model=nn.Sequential(), batches=[])
    assert criteria.get("group_l1").select(group, 1, ctx) == [1]
    assert criteria.get("l1").select(group, 1, ctx) == [0]  # the raw sum follows the wide producer


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2"])
def test_tp_l1_is_torch_prunings_magnitude_importance(name: str) -> None:
    """``tp_l1`` ranks every group's channels by exactly Torch-Pruning's ``MagnitudeImportance(p=1)``
    (depthwise convs unscored, as Torch-Pruning leaves them), and ``group_importance`` is those
    scores over the group's mean."""
    import copy

    import torch_pruning as tp

    from automc import graph, models
    from automc.compress.criteria.magnitude import group_l1_scores
    from automc.compress.prune import channel_group, group_importance

    torch.manual_seed(0)
    model = models.create(name).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.2, 2.0)
    x = torch.randn(1, 3, 32, 32)
    info = graph.trace(copy.deepcopy(model).eval(), x)
    dg, importance = info.dependency_graph, tp.importance.MagnitudeImportance(p=1)
    ours = group_importance(model, x)
    ctx = CriterionContext(model=info.model, batches=[])
    for gid, g in info.groups.items():
        root = info.module(g.producers[0])
        group = dg.get_pruning_group(
            root, dg.get_pruner_of_module(root).prune_out_channels, list(range(g.channels))
        )
        theirs = importance(group)
        assert torch.allclose(torch.tensor(ours[gid]), theirs, rtol=1e-5), gid
        k = g.channels // 2
        assert criteria.get("tp_l1").select(channel_group(info, gid), k, ctx) == sorted(
            int(i) for i in torch.argsort(-theirs, stable=True)[:k]
        )
        # group_l1 differs: every tied layer divided by its own mean first
        assert not torch.allclose(group_l1_scores(channel_group(info, gid)), theirs, rtol=1e-3)


def test_group_l1_counts_a_depthwise_conv_once():
    """In mobilenetv2 the depthwise conv both writes and reads the expansion's channels: its
    filters count once among the group's mean-normalised layers."""
    import copy

    from automc import graph, models
    from automc.compress.criteria.magnitude import group_l1_scores
    from automc.compress.prune import channel_group

    torch.manual_seed(0)
    info = graph.trace(copy.deepcopy(models.create("mobilenetv2").eval()), torch.randn(1, 3, 32, 32))
    gid = next(
        g
        for g, info_g in info.groups.items()
        if info_g.producers == ("features.1.conv.0", "features.1.conv.3")
    )

    def w(n: str) -> torch.Tensor:
        return info.module(n).weight.detach()

    parts = [
        w("features.1.conv.0").reshape(96, -1).abs().sum(1),
        w("features.1.conv.3").reshape(96, -1).abs().sum(1),
        w("features.1.conv.1").abs(),
        w("features.1.conv.4").abs(),
        w("features.1.conv.6").abs().sum(dim=(0, 2, 3)),
    ]
    expected = torch.stack([p / p.mean() for p in parts]).mean(0)
    assert torch.allclose(group_l1_scores(channel_group(info, gid)), expected, atol=1e-6)
