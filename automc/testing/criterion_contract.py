"""Conformance tests every pruning criterion must pass (in the style of Optuna's ``pytest_samplers``).

Subclass :class:`CriterionContract` and parametrize ``criterion_name`` over the names to
check; ``tests/compress/test_criteria_contract.py`` does it for every registered name, so a
new criterion is tested by registering it::

    import pytest

    from automc.compress import criteria
    from automc.testing.criterion_contract import CriterionContract

    @pytest.mark.parametrize("criterion_name", criteria.names())
    class TestCriteria(CriterionContract):
        pass

The cases run on the tiny zoo models of :mod:`automc.testing.models` (a plain CNN and a
residual network whose adds couple several producers into one group), with two small
calibration batches, so every criterion runs its real code path in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import nn

from automc import compress, models
from automc.compress import criteria
from automc.compress.criteria import CriterionContext
from automc.compress.prune import InputCapture, channel_group, expected_channels
from automc.errors import AutomcError
from automc.graph import GraphInfo, trace
from automc.plan import CompressionPlan, kept_channels

__all__ = ["CONTRACT_MODELS", "CriterionContract"]

CONTRACT_MODELS = ("test_tiny", "test_residual")
"""Zoo models the contract prunes (``automc.testing.models``)."""
_INPUT_SHAPE = (4, 3, 16, 16)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return models.create(name).eval()


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(*_INPUT_SHAPE, generator=gen) for _ in range(2)]


def _context(model: nn.Module, batches: Sequence[torch.Tensor], *, seed: int = 0) -> CriterionContext:
    return CriterionContext(
        model=model,
        batches=list(batches),
        seed=seed,
        capture_inputs=InputCapture(model=model, batches=batches) if batches else None,
    )


def _traced(model_name: str) -> tuple[nn.Module, GraphInfo]:
    model = _model(model_name)
    return model, trace(model, torch.zeros(1, *_INPUT_SHAPE[1:]))


class CriterionContract:
    """Behaviour every pruning criterion must show; ``criterion_name`` is a registered name."""

    def make_criterion(self, criterion_name: str) -> criteria.Criterion:
        """A fresh criterion; override to test one not in the registry."""
        return criteria.get(criterion_name)

    @pytest.mark.parametrize("model_name", CONTRACT_MODELS)
    def test_select_returns_n_keep_sorted_unique_indices(self, criterion_name: str, model_name: str) -> None:
        model, info = _traced(model_name)
        ctx = _context(model, _batches())
        criterion = self.make_criterion(criterion_name)
        assert info.groups, f"{model_name} has no prunable group"
        for gid in sorted(info.groups):
            group = channel_group(info, gid)
            for n_keep in sorted({1, kept_channels(group.channels, 0.5), group.channels}):
                chosen = criterion.select(group, n_keep, ctx)
                assert len(chosen) == n_keep, (gid, n_keep, chosen)
                assert list(chosen) == sorted(set(chosen)), (gid, n_keep, chosen)
                assert all(isinstance(i, int) and 0 <= i < group.channels for i in chosen), chosen

    def test_select_is_deterministic_for_a_seed(self, criterion_name: str) -> None:
        picks = []
        for _ in range(2):
            model, info = _traced("test_residual")
            ctx = _context(model, _batches(), seed=3)
            criterion = self.make_criterion(criterion_name)
            picks.append(
                {gid: criterion.select(channel_group(info, gid), 3, ctx) for gid in sorted(info.groups)}
            )
        assert picks[0] == picks[1]

    def test_name_and_needs_data_are_declared(self, criterion_name: str) -> None:
        criterion = self.make_criterion(criterion_name)
        assert criterion.name == criterion_name
        assert isinstance(criterion.needs_data, bool)

    def test_without_batches_only_data_driven_criteria_refuse(self, criterion_name: str) -> None:
        model, info = _traced("test_tiny")
        criterion = self.make_criterion(criterion_name)
        group = channel_group(info, min(info.groups))
        n_keep = kept_channels(group.channels, 0.5)
        if criterion.needs_data:
            with pytest.raises(AutomcError, match="calibration"):
                criterion.select(group, n_keep, _context(model, ()))
        else:
            assert len(criterion.select(group, n_keep, _context(model, ()))) == n_keep

    @pytest.mark.parametrize("model_name", CONTRACT_MODELS)
    def test_pruned_model_runs_with_the_planned_channels(self, criterion_name: str, model_name: str) -> None:
        model = _model(model_name)
        batches = _batches()
        specs = trace(model, batches[0][:1]).layers
        plan = CompressionPlan.uniform(specs, keep_ratio=0.5, criterion=criterion_name)
        pruned = compress.apply(model, plan, batches[0][:1], calib_batches=batches)
        out = pruned(batches[0])
        assert out.shape == model(batches[0]).shape
        assert torch.isfinite(out).all()
        for name, (n_in, n_out) in expected_channels(specs, plan).items():
            weight = pruned.get_submodule(name).weight
            assert isinstance(weight, torch.Tensor)
            assert weight.shape[0] == n_out, name
            assert weight.shape[1] * getattr(pruned.get_submodule(name), "groups", 1) == n_in, name
