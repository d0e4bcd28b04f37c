"""Conformance tests every weight quantizer must pass (in the style of Optuna's ``pytest_samplers``).

Subclass :class:`QuantizerContract` and parametrize ``quantizer_name`` over the names to
check; ``tests/compress/test_quantizers_contract.py`` does it for every registered name, so
a new quantizer is tested by registering it (and stating its storage format in
:mod:`automc.cost.formats`, which the cost model prices it with)::

    import pytest

    from automc.compress import quantizers
    from automc.testing.quantizer_contract import QuantizerContract

    @pytest.mark.parametrize("quantizer_name", quantizers.names())
    class TestQuantizers(QuantizerContract):
        pass
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from automc import compress, models
from automc.compress import quantizers
from automc.cost import CostModel, formats
from automc.graph import trace
from automc.plan import CompressionPlan

__all__ = ["CONTRACT_BITS", "QuantizerContract"]

CONTRACT_BITS = (2, 3, 4)
"""Weight bits the contract quantizes at (every built-in quantizer accepts them)."""


def _weight() -> torch.Tensor:
    """A ``32 x 8 x 3 x 3`` conv weight whose rows differ in scale."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(32, 8, 3, 3, generator=gen) * torch.linspace(0.1, 1.0, 32).view(-1, 1, 1, 1)


def _rel_error(w: torch.Tensor, q: torch.Tensor) -> float:
    return float(((w - q) ** 2).sum() / (w**2).sum())


class QuantizerContract:
    """Behaviour every weight quantizer must show; ``quantizer_name`` is a registered name."""

    idempotent: frozenset[str] = frozenset({"uniform", "binary", "asymmetric", "uniform_per_tensor"})
    """Quantizers for which quantizing an already quantized weight changes nothing (grid
    quantizers whose grid is set by the weight's range; the clustering ones re-cluster)."""

    def make_quantizer(self, quantizer_name: str) -> quantizers.Quantizer:
        """A fresh quantizer; override to test one not in the registry."""
        return quantizers.get(quantizer_name)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_output_has_the_input_shape_and_dtype(self, quantizer_name: str, dtype: torch.dtype) -> None:
        q = self.make_quantizer(quantizer_name)
        for weight in (_weight().to(dtype), _weight().reshape(32, 72).to(dtype)):
            out = q(weight, 3)
            assert out.shape == weight.shape and out.dtype == weight.dtype
            assert torch.isfinite(out).all()

    def test_at_most_two_to_the_bits_values_per_group(self, quantizer_name: str) -> None:
        grouping = formats.SCALAR_GROUPS.get(quantizer_name)
        if grouping is None:
            pytest.skip(f"{quantizer_name!r} is not a scalar quantizer (cost.formats.SCALAR_GROUPS)")
        q = self.make_quantizer(quantizer_name)
        weight = _weight()
        for bits in CONTRACT_BITS:
            out = q(weight, bits).detach()
            groups = out.reshape(out.shape[0], -1) if grouping == "channel" else out.reshape(1, -1)
            limit = 2 if quantizer_name == "binary" else 2**bits
            assert max(int(row.unique().numel()) for row in groups) <= limit, bits

    def test_more_bits_no_more_error(self, quantizer_name: str) -> None:
        q = self.make_quantizer(quantizer_name)
        weight = _weight()
        errors = [_rel_error(weight, q(weight, bits).detach()) for bits in CONTRACT_BITS]
        assert all(later <= earlier * (1 + 1e-6) for earlier, later in zip(errors, errors[1:])), errors
        if q.storage_bits(weight.shape, CONTRACT_BITS[-1]) > q.storage_bits(weight.shape, CONTRACT_BITS[0]):
            assert errors[-1] < errors[0], errors

    def test_storage_bits_are_the_formats(self, quantizer_name: str) -> None:
        assert quantizer_name in formats.quantizer_names(), (
            f"quantizer {quantizer_name!r} has no storage format in automc.cost.formats"
        )
        q = self.make_quantizer(quantizer_name)
        for shape in ((32, 8, 3, 3), (16, 40), (12, 6, 1, 1)):
            for bits in CONTRACT_BITS:
                want = formats.quantized_storage_bits(quantizer_name, math.prod(shape), shape[0], bits)
                assert q.storage_bits(shape, bits) == want, (shape, bits)

    def test_cost_model_size_is_the_compressed_models(self, quantizer_name: str) -> None:
        torch.manual_seed(0)
        model = models.create("test_tiny").eval()
        example = torch.zeros(1, 3, 16, 16)
        specs = trace(model, example).layers
        plan = CompressionPlan.uniform(specs, w_bits=2)
        plan = replace(plan, layers={n: replace(c, quantizer=quantizer_name) for n, c in plan.layers.items()})
        report = CostModel().estimate(specs, plan)
        assert not report.unsupported
        q = self.make_quantizer(quantizer_name)
        compressed = compress.apply(model, plan, example)
        for spec in specs:
            module = compressed.get_submodule(spec.name)
            weight, bias = module.weight, module.bias
            assert isinstance(weight, torch.Tensor)
            bias_bits = bias.numel() * formats.BIAS_BITS if isinstance(bias, torch.Tensor) else 0
            bits = q.storage_bits(tuple(weight.shape), 2) + bias_bits
            assert report.per_layer[spec.name]["size_bytes"] == -(-bits // 8), spec.name

    def test_idempotent_where_it_holds(self, quantizer_name: str) -> None:
        if quantizer_name not in self.idempotent:
            pytest.skip(f"{quantizer_name!r} is not expected to be idempotent")
        q = self.make_quantizer(quantizer_name)
        weight = _weight()
        for bits in CONTRACT_BITS:
            once = q(weight, bits).detach()
            assert torch.allclose(q(once, bits).detach(), once, rtol=1e-5, atol=1e-7), bits
