"""The MACs and parameter counts ``automc list models`` prints agree with ``automc cost``'s cost model."""

import re

import pytest
import torch

from automc import graph, models
from automc.cost import CostModel
from automc.plan import CompressionPlan

LISTED = {n: d for n, d in models.REGISTRY.describe().items() if "MACs at 32x32" in d}


def test_the_zoo_lists_its_macs():
    assert {"mobilenetv2", "resnet20", "resnet56", "vgg16"} <= set(LISTED)


@pytest.mark.parametrize("name", sorted(LISTED))
def test_listed_macs_and_params_are_the_cost_models(name):
    listed_macs = float(re.search(r"([0-9.]+)M MACs", LISTED[name]).group(1)) * 1e6
    listed_params = float(re.search(r"([0-9.]+)M params", LISTED[name]).group(1)) * 1e6
    net = models.create(name).eval()
    total = (
        CostModel().estimate(graph.layers(net, torch.zeros(1, 3, 32, 32)), CompressionPlan(model=name)).total
    )
    # the description rounds to its printed digits: 88.0M, 41M, 126M, 313M
    assert listed_macs == pytest.approx(total["macs"], rel=0.015)
    assert listed_params == pytest.approx(sum(p.numel() for p in net.parameters()), rel=0.02)
