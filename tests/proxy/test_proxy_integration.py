"""automc.proxy on real zoo models compressed by automc.compress (pruning + fake quant)."""

from __future__ import annotations

import pytest
import torch

from automc import compress, data, graph, models
from automc.compress.quant import QuantMixin
from automc.plan import CompressionPlan
from automc.proxy import AdaptiveBNProxy, ProxyBatches, ProxyData, SynFlowProxy, VanillaProxy

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def setup() -> tuple:
    splits = data.load("synthetic")
    torch.manual_seed(0)
    base = models.create("test_residual", num_classes=splits.num_classes).eval()
    example = splits.example_input(1)
    layers = graph.layers(base, example)
    pdata = ProxyData.from_splits(splits, ProxyBatches(calib_batches=2, calib_batch_size=32), seed=0)
    return base, example, layers, pdata


def test_adaptive_bn_keeps_fake_quant_ranges_and_model_base_untouched(setup: tuple) -> None:
    base, example, layers, pdata = setup
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    plan = CompressionPlan.uniform(layers, keep_ratio=0.5, w_bits=8, a_bits=8, model="test_residual")
    proxy = AdaptiveBNProxy(data=pdata, teacher=base)
    model = compress.apply(base, plan, example, calib_batches=proxy.calibration_batches())
    quant = [m for m in model.modules() if isinstance(m, QuantMixin)]
    assert quant
    ranges = [(float(m.act_scale), int(m.act_zero_point)) for m in quant]
    out = proxy.evaluate(model, plan)
    assert 0.0 <= out["acc"] <= 1.0 and out["loss"] > 0 and out["kl"] > 0
    assert [(float(m.act_scale), int(m.act_zero_point)) for m in quant] == ranges
    assert not model.training
    assert all(torch.equal(base_state[k], v) for k, v in base.state_dict().items())


def test_proxies_rank_an_unpruned_candidate_against_a_pruned_one(setup: tuple) -> None:
    base, example, layers, pdata = setup
    full_plan = CompressionPlan.uniform(layers, model="test_residual")
    small_plan = CompressionPlan.uniform(layers, keep_ratio=0.25, model="test_residual")
    synflow = SynFlowProxy(data=pdata)
    full = synflow.evaluate(compress.apply(base, full_plan, example), full_plan)["score"]
    small = synflow.evaluate(compress.apply(base, small_plan, example), small_plan)["score"]
    assert 0 < small < full
    vanilla = VanillaProxy(data=pdata)
    identity = vanilla.evaluate(compress.apply(base, full_plan, example), full_plan)
    assert identity == VanillaProxy(data=pdata).evaluate(base, full_plan)
