"""8-bit weights and activations on a trained resnet20 (digits): at most 1 point of test accuracy lost."""

from __future__ import annotations

import pytest
import torch

from automc.compress import apply
from automc.graph import layers
from automc.plan import CompressionPlan


@pytest.mark.slow
def test_w8a8_resnet20_digits_loses_at_most_one_point():
    from automc import data, train

    torch.set_num_threads(2)
    splits = data.load("digits")
    model, info = train.base_model(
        "resnet20", "digits", splits=splits, options=train.FitOptions(progress=False)
    )
    x = splits.example_input()
    calib = [torch.stack([splits.train[i][0] for i in range(b * 64, (b + 1) * 64)]) for b in range(4)]
    plan = CompressionPlan.uniform(layers(model, x), w_bits=8, a_bits=8)
    quantized = apply(model, plan, x, calib_batches=calib)
    base_acc = train.evaluate(model, splits.test)["acc"]
    q_acc = train.evaluate(quantized, splits.test)["acc"]
    assert base_acc > 0.9
    assert q_acc >= base_acc - 0.01
