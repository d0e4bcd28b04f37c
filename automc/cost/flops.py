"""Analytic shapes, MACs and parameter counts of a compressed layer (no torch, no tracing).

Counting conventions (the same as fvcore's conv/linear handles):
    * MACs are multiply-accumulates: one fused multiply-add = 1, per sample (batch 1).
      A conv costs ``out_positions * out_channels * (in_channels / groups) * kh * kw``; a
      linear ``positions * out_features * in_features``. Biases, activations, pooling and
      residual adds are not counted.
    * BatchNorm is folded into the preceding conv at inference (as deployment does), so it
      costs no MACs and no parameters here.
    * Unstructured sparsity does *not* reduce MACs: dense kernels still multiply the zeros.
      It only saves storage and memory traffic (see ``automc.cost.formats``/``energy``).

Pruning arithmetic (the rules ``compress.apply`` follows):
    * kept output channels = ``kept_channels(out_channels, keep[group])``;
    * kept input features = sum over ``in_segments`` ``(g, c, mult)`` of
      ``kept_channels(c, keep[g]) * mult`` (group -1 is never pruned);
    * depthwise convs: groups = kept input channels.

Low rank at rank ``r`` (clipped to the pruned layer's ``min(m, n * kh * kw)``): a conv
becomes a ``kh x kw`` conv ``n -> r`` (same stride/padding) followed by a ``1 x 1`` conv
``r -> m`` carrying the bias; a linear becomes ``n -> r`` then ``r -> m``. Each factor is
one :class:`Stage`. With ``lowrank: sparse_lowrank`` (ADMM sparse + low rank) a third stage
is the sparse residual: a conv/linear of the pruned layer's full geometry whose weight keeps
``formats.SPARSE_LOWRANK_DENSITY`` of its entries; it runs dense (full MACs) and is stored in
the sparse format. The factors come from :func:`automc.cost.formats.lowrank_factors`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from automc.cost.formats import lowrank_factors
from automc.errors import UnsupportedLayerError
from automc.plan import NOT_PRUNABLE, LayerChoice, LayerSpec, kept_channels

SUPPORTED_KINDS = frozenset({"conv2d", "dwconv2d", "grouped", "linear"})


class Stage(NamedTuple):
    """One weight tensor applied to one activation tensor (a layer, or one low-rank factor).

    A ``NamedTuple`` (immutable, and cheap to create on the estimator's hot path).

    Attributes:
        macs: multiply-accumulates per sample (all calls of the layer).
        weights: dense weight count (zeros of unstructured sparsity included).
        rows: output channels of the weight tensor (one quantization scale each).
        fan_in: MACs per output element (inputs each output accumulates).
        in_elems: input activation elements per sample (one call).
        out_elems: output activation elements per sample (one call).
        density: fraction of stored weights when fixed by the method (the ``sparse_lowrank``
            residual); 0.0 means the choice's ``sparsity`` applies.
    """

    macs: int
    weights: int
    rows: int
    fan_in: int
    in_elems: int
    out_elems: int
    density: float = 0.0


class LayerGeometry(NamedTuple):
    """Shapes of a layer after the plan's pruning and low rank (an immutable ``NamedTuple``).

    Attributes:
        in_features: kept input channels (features for a linear).
        out_channels: kept output channels.
        groups: convolution groups after pruning.
        rank: effective low-rank rank (clipped), or None when not factorised.
        biases: bias count (kept output channels when the layer has a bias).
        stages: one stage, or one per low-rank factor.
    """

    in_features: int
    out_channels: int
    groups: int
    rank: int | None
    biases: int
    stages: tuple[Stage, ...]

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stages)

    @property
    def weights(self) -> int:
        return sum(s.weights for s in self.stages)

    @property
    def params(self) -> int:
        return self.weights + self.biases


@dataclass(frozen=True)
class LayerConst:
    """Per-layer constants precomputed once per model (see :func:`compile_layer`).

    Attributes:
        spec: the traced layer.
        out_positions: output elements per output channel (``H * W``; 1 for a linear).
        in_positions: input elements per input feature (``H * W``; 1 for a linear).
        kernel_area: ``kh * kw``.
        segments: the layer's ``in_segments`` (or one unpruned segment when absent).
        calls: times the layer runs per forward (``spec.macs`` / the MACs of one call); a
            module called several times is traced once with the MACs of all calls.
    """

    spec: LayerSpec
    out_positions: int
    in_positions: int
    kernel_area: int
    segments: tuple[tuple[int, int, int], ...]
    calls: int = 1


def compile_layer(spec: LayerSpec) -> LayerConst:
    """Precompute what :func:`geometry` needs from ``spec``; unknown kinds raise ``UnsupportedLayerError``."""
    if spec.kind not in SUPPORTED_KINDS:
        raise UnsupportedLayerError(f"layer kind {spec.kind!r} has no cost model")
    kernel_area = spec.kernel[0] * spec.kernel[1]
    if spec.out_shape:
        out_positions = max(1, math.prod(spec.out_shape) // max(1, spec.out_channels))
    else:
        per_position = spec.out_channels * (spec.in_channels // max(1, spec.groups)) * kernel_area
        out_positions = max(1, spec.macs // per_position) if per_position else 1
    in_positions = max(1, math.prod(spec.in_shape) // max(1, spec.in_channels)) if spec.in_shape else 1
    segments = spec.in_segments or ((NOT_PRUNABLE, spec.in_channels, 1),)
    one_call = out_positions * spec.out_channels * (spec.in_channels // max(1, spec.groups)) * kernel_area
    calls = max(1, round(spec.macs / one_call)) if one_call and spec.macs else 1
    return LayerConst(
        spec=spec,
        out_positions=out_positions,
        in_positions=in_positions,
        kernel_area=kernel_area,
        segments=segments,
        calls=calls,
    )


def kept_in_features(segments: tuple[tuple[int, int, int], ...], keep: Mapping[int, float]) -> int:
    """Input features left after pruning the groups that produce them."""
    total = 0
    for group, channels, mult in segments:
        total += kept_channels(channels, keep.get(group, 1.0)) * mult
    return total


def geometry(const: LayerConst, choice: LayerChoice, keep: Mapping[int, float]) -> LayerGeometry:
    """Shapes, MACs and weights of one layer under ``choice`` and the group keep ratios ``keep``.

    Raises:
        UnsupportedLayerError: low rank requested on a depthwise or grouped convolution.
    """
    n = kept_in_features(const.segments, keep)
    m = kept_channels(const.spec.out_channels, keep.get(const.spec.group, 1.0))
    return geometry_for(const, choice, n, m)


def geometry_for(const: LayerConst, choice: LayerChoice, n: int, m: int) -> LayerGeometry:
    """:func:`geometry` given the kept input features ``n`` and kept output channels ``m``.

    Raises:
        UnsupportedLayerError: low rank requested on a depthwise or grouped convolution, or
            an unknown low-rank method.
    """
    spec = const.spec
    area = const.kernel_area
    pos_out = const.out_positions
    calls = const.calls
    pos_in = const.in_positions
    if spec.kind == "dwconv2d":
        groups = n
    elif spec.kind == "grouped":
        groups = spec.groups
    else:
        groups = 1
    n_per_group = max(1, n // groups)
    biases = m if spec.bias else 0
    if choice.rank is None:
        fan_in = n_per_group * area
        stage = Stage(
            macs=calls * pos_out * m * fan_in,
            weights=m * fan_in,
            rows=m,
            fan_in=fan_in,
            in_elems=n * pos_in,
            out_elems=m * pos_out,
        )
        return LayerGeometry(
            in_features=n, out_channels=m, groups=groups, rank=None, biases=biases, stages=(stage,)
        )
    if spec.kind in ("dwconv2d", "grouped"):
        raise UnsupportedLayerError(f"low-rank factorisation of a {spec.kind} layer is not modelled")
    factors = lowrank_factors(
        choice.lowrank, in_features=n, out_channels=m, kernel_area=area, rank=choice.rank
    )
    stages = tuple(
        Stage(
            macs=calls * pos_out * f.weights,
            weights=f.weights,
            rows=f.out_features,
            fan_in=f.in_features * f.kernel_area,
            in_elems=f.in_features * (pos_in if f.reads_input else pos_out),
            out_elems=f.out_features * pos_out,
            density=f.density,
        )
        for f in factors
    )
    rank = factors[0].out_features
    return LayerGeometry(in_features=n, out_channels=m, groups=1, rank=rank, biases=biases, stages=stages)


def layer_geometry(spec: LayerSpec, choice: LayerChoice, keep: Mapping[int, float]) -> LayerGeometry:
    """Convenience: :func:`compile_layer` then :func:`geometry` for one layer."""
    return geometry(compile_layer(spec), choice, keep)
