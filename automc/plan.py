"""Plain-data records shared by every part of automc (no torch import).

``LayerSpec`` describes one conv/linear layer of a model as traced once by
``automc.graph``; ``CompressionPlan`` says what to do to each layer; ``Measurement``
is what a controller is told about a candidate. All are frozen dataclasses with a JSON
round trip so they can be stored in an Optuna study, sent to a Ray worker or written to
a report.

Conventions:
    * MACs are multiply-accumulates (one fused multiply-add = 1), per sample (batch 1).
    * Channel coupling: every layer's *output* channels belong to exactly one dependency
      group (``LayerSpec.group``). All layers of a group share one keep ratio. A layer's
      *input* features are described by ``in_segments``: ``(group, channels, mult)``
      triples, where ``group`` is the id of the group that produces those channels
      (``-1`` = not prunable, e.g. the network input) and ``mult`` is how many input
      features each channel feeds (spatial positions after a flatten; 1 for convs).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from automc.errors import AutomcError

PLAN_SCHEMA = "automc/plan"
PLAN_VERSION = 1

LAYER_KINDS = ("conv2d", "dwconv2d", "grouped", "linear")
ALLOWED_BITS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 16, 32})
NOT_PRUNABLE = -1


def kept_channels(channels: int, keep_ratio: float) -> int:
    """Number of channels kept out of ``channels`` at ``keep_ratio`` (at least one).

    The single rounding rule shared by the cost model and ``compress.apply`` so that
    predicted and real shapes agree exactly.
    """
    if keep_ratio >= 1.0:
        return channels
    return max(1, min(channels, int(math.floor(channels * keep_ratio + 0.5))))


@dataclass(frozen=True)
class LayerSpec:
    """One prunable/quantizable layer (conv or linear) of a traced model.

    Attributes:
        name: qualified module name, e.g. ``layer1.0.conv1``.
        kind: one of ``conv2d``, ``dwconv2d`` (depthwise), ``grouped``, ``linear``.
        in_channels: input channels (in features for linear).
        out_channels: output channels (out features for linear).
        kernel: ``(kh, kw)``; ``(1, 1)`` for linear.
        stride: ``(sh, sw)``; ``(1, 1)`` for linear.
        padding: ``(ph, pw)``; ``(0, 0)`` for linear.
        groups: convolution groups (1 for linear).
        in_shape: input activation shape without batch, e.g. ``(C, H, W)`` or ``(F,)``.
        out_shape: output activation shape without batch.
        macs: multiply-accumulates per sample of the unmodified layer.
        params: weight + bias parameter count of the unmodified layer.
        bias: whether the layer has a bias.
        group: id of the dependency group of the output channels (``-1`` if the output
            channels cannot be pruned, e.g. the classifier).
        in_segments: ``((group, channels, mult), ...)`` describing where the input
            features come from; ``sum(channels * mult) == in_features``.
        index: position of the layer in execution order.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    macs: int = 0
    params: int = 0
    bias: bool = False
    group: int = NOT_PRUNABLE
    in_segments: tuple[tuple[int, int, int], ...] = ()
    index: int = 0

    @property
    def prunable(self) -> bool:
        return self.group != NOT_PRUNABLE

    @property
    def out_hw(self) -> tuple[int, int]:
        if len(self.out_shape) == 3:
            return (int(self.out_shape[1]), int(self.out_shape[2]))
        return (1, 1)

    @property
    def in_hw(self) -> tuple[int, int]:
        if len(self.in_shape) == 3:
            return (int(self.in_shape[1]), int(self.in_shape[2]))
        return (1, 1)

    @property
    def max_rank(self) -> int:
        """Largest meaningful SVD rank: ``min(out, in/groups * kh * kw)``."""
        return min(self.out_channels, (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_segments"] = [list(s) for s in self.in_segments]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerSpec:
        kw = dict(d)
        for key in ("kernel", "stride", "padding", "in_shape", "out_shape"):
            if key in kw:
                kw[key] = tuple(int(v) for v in kw[key])
        if "in_segments" in kw:
            kw["in_segments"] = tuple(tuple(int(v) for v in s) for s in kw["in_segments"])
        return cls(**kw)


def _is_number(value: Any) -> bool:
    """A real int or float: ``True`` is not the number 1 here."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class LayerChoice:
    """What to do to one layer.

    Attributes:
        keep_ratio: fraction of output channels kept (structured pruning), in (0, 1].
        w_bits: weight bits; 32 = float, 16 = half, 1 = binary (sign x scale).
        a_bits: activation bits of the layer's input; 32 = float.
        rank: low-rank factorisation rank, ``None`` = no factorisation. Clipped to the
            pruned layer's ``min(m, n)`` when pruning and low rank are combined.
        sparsity: fraction of weights zeroed by unstructured magnitude pruning, in [0, 1).
        quantizer: weight quantizer name (see ``automc list quantizers``).
        lowrank: low-rank method name (``svd`` or ``sparse_lowrank``).
    """

    keep_ratio: float = 1.0
    w_bits: int = 32
    a_bits: int = 32
    rank: int | None = None
    sparsity: float = 0.0
    quantizer: str = "uniform"
    lowrank: str = "svd"

    def __post_init__(self) -> None:
        if not (_is_number(self.keep_ratio) and 0.0 < float(self.keep_ratio) <= 1.0):
            raise AutomcError(f"keep_ratio must be in (0, 1], got {self.keep_ratio!r}")
        for key in ("w_bits", "a_bits"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v not in ALLOWED_BITS:
                raise AutomcError(f"{key} must be one of 1..8, 16, 32, got {v!r}")
        if self.rank is not None and (
            isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1
        ):
            raise AutomcError(f"rank must be a positive integer or null, got {self.rank!r}")
        if not (_is_number(self.sparsity) and 0.0 <= float(self.sparsity) < 1.0):
            raise AutomcError(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        for key in ("quantizer", "lowrank"):
            v = getattr(self, key)
            if not isinstance(v, str) or not v:
                raise AutomcError(f"{key} must be a name (a non-empty string), got {v!r}")

    @property
    def is_identity(self) -> bool:
        return self == LayerChoice()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "layer") -> LayerChoice:
        if not isinstance(d, Mapping):
            raise AutomcError(f"{where}: expected a mapping of choices, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AutomcError(
                f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(known))})"
            )
        try:
            return cls(**dict(d))
        except AutomcError as e:
            raise AutomcError(f"{where}: {e}") from None


IDENTITY = LayerChoice()


@dataclass(frozen=True)
class CompressionPlan:
    """Per-layer choices keyed by layer name. Layers not listed are left unchanged.

    Attributes:
        layers: layer name -> ``LayerChoice``.
        criterion: structured-pruning criterion name (``automc list criteria``).
        model: name of the model the plan was made for (informational).
        fingerprint: ``layers_fingerprint`` of the model the plan was made for; a plan is
            refused on a model with another fingerprint.
    """

    layers: Mapping[str, LayerChoice] = field(default_factory=lambda: MappingProxyType({}))
    criterion: str = "l1"
    model: str = ""
    fingerprint: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(sorted(self.layers.items()))))

    def choice(self, name: str) -> LayerChoice:
        return self.layers.get(name, IDENTITY)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": PLAN_SCHEMA,
            "version": PLAN_VERSION,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "criterion": self.criterion,
            "layers": {k: v.to_dict() for k, v in self.layers.items() if not v.is_identity},
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "plan") -> CompressionPlan:
        if not isinstance(d, Mapping):
            raise AutomcError(f"{where}: expected a JSON object")
        allowed = {"schema", "version", "model", "fingerprint", "criterion", "layers"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise AutomcError(f"{where}: unknown key(s) {', '.join(unknown)}")
        if d.get("schema", PLAN_SCHEMA) != PLAN_SCHEMA:
            raise AutomcError(f"{where}: schema must be {PLAN_SCHEMA!r}, got {d.get('schema')!r}")
        version = d.get("version", PLAN_VERSION)
        if type(version) is not int or version != PLAN_VERSION:
            raise AutomcError(f"{where}: unsupported version {version!r} (supported: {PLAN_VERSION})")
        layers = d.get("layers", {})
        if not isinstance(layers, Mapping):
            raise AutomcError(f"{where}: 'layers' must be a mapping of layer name to choices")
        for key in ("criterion", "model", "fingerprint"):
            if key in d and not isinstance(d[key], str):
                raise AutomcError(f"{where}: {key!r} must be a string, got {d[key]!r}")
        for k in layers:
            if not isinstance(k, str) or not k:
                raise AutomcError(f"{where}: layer names must be non-empty strings, got {k!r}")
        return cls(
            layers={k: LayerChoice.from_dict(v, where=f"{where}: layer {k!r}") for k, v in layers.items()},
            criterion=d.get("criterion", "l1"),
            model=d.get("model", ""),
            fingerprint=d.get("fingerprint", ""),
        )

    @classmethod
    def from_json(cls, text: str, *, where: str = "plan") -> CompressionPlan:
        """Parse a plan's JSON with the data-file limits of :func:`automc.schema.common.parse_json`.

        Raises:
            AutomcError: not valid or hostile JSON (too large, too deep, duplicate keys,
                overlong numbers), or not a valid plan; the message starts with ``where``.
        """
        from automc.schema.common import parse_json  # schema imports plan, so not at module level

        plan = cls.from_dict(parse_json(text, where), where=where)
        plan.check_names(where=where)
        return plan

    def check_names(self, *, where: str = "plan") -> None:
        """Refuse a criterion, quantizer or low-rank method that automc does not know.

        Every verb that reads a plan file calls this (through :meth:`from_json`), so a
        plan that ``compress`` would refuse is refused by ``cost`` too. Imports the
        criterion registry (and so torch) on call.

        Raises:
            AutomcError: the first unknown name, with ``where`` and the field.
        """
        from automc.compress.criteria import REGISTRY as CRITERIA
        from automc.cost.formats import lowrank_method_names, quantizer_names

        CRITERIA.check(self.criterion, where=f"{where}: criterion")
        for layer, choice in self.layers.items():
            for key, known in (("quantizer", quantizer_names()), ("lowrank", lowrank_method_names())):
                name = getattr(choice, key)
                if name not in known:
                    raise AutomcError(
                        f"{where}: layer {layer!r}: unknown {key} {name!r} (known: {', '.join(known)})"
                    )

    def digest(self) -> str:
        """Stable short hash of the plan's content (cache key)."""
        body = self.to_dict()
        body.pop("model", None)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def with_layers(self, updates: Mapping[str, LayerChoice]) -> CompressionPlan:
        merged = dict(self.layers)
        merged.update(updates)
        return replace(self, layers=merged)

    @classmethod
    def uniform(
        cls,
        layers: Sequence[LayerSpec],
        *,
        keep_ratio: float = 1.0,
        w_bits: int = 32,
        a_bits: int = 32,
        rank_ratio: float | None = None,
        criterion: str = "l1",
        model: str = "",
        skip: Iterable[str] = (),
    ) -> CompressionPlan:
        """The same choice on every layer.

        ``keep_ratio`` applies to layers with prunable output channels, ``rank_ratio``
        (fraction of each layer's ``max_rank``) to non-depthwise layers, bits to all.
        Layers named in ``skip`` are left unchanged.
        """
        skipped = set(skip)
        out: dict[str, LayerChoice] = {}
        for spec in layers:
            if spec.name in skipped:
                continue
            rank = None
            if rank_ratio is not None and spec.kind != "dwconv2d":
                rank = max(1, int(round(rank_ratio * spec.max_rank)))
            out[spec.name] = LayerChoice(
                keep_ratio=keep_ratio if spec.prunable else 1.0, w_bits=w_bits, a_bits=a_bits, rank=rank
            )
        return cls(layers=out, criterion=criterion, model=model, fingerprint=layers_fingerprint(layers))

    def validate_for(self, layers: Sequence[LayerSpec]) -> None:
        """Check the plan fits a model's layers; raise ``AutomcError`` naming the problem.

        Checks: fingerprint (when both set), every named layer exists, keep ratios only
        on prunable layers, coupled layers share one keep ratio, rank <= min(m, n).
        """
        by_name = {spec.name: spec for spec in layers}
        if self.fingerprint and self.fingerprint != layers_fingerprint(layers):
            raise AutomcError(
                f"plan was made for another model ({self.model or 'unknown'}, fingerprint {self.fingerprint}); "
                f"this model's fingerprint is {layers_fingerprint(layers)}"
            )
        for name, choice in self.layers.items():
            spec = by_name.get(name)
            if spec is None:
                close = [n for n in by_name if n.split(".")[-1] == name.split(".")[-1]][:3]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise AutomcError(f"plan names unknown layer {name!r}{hint}")
            if choice.keep_ratio < 1.0 and not spec.prunable:
                raise AutomcError(
                    f"layer {name!r}: output channels are not prunable (keep_ratio must be 1.0)"
                )
            if choice.rank is not None and choice.rank > spec.max_rank:
                raise AutomcError(f"layer {name!r}: rank {choice.rank} exceeds min(m, n) = {spec.max_rank}")
            if choice.rank is not None and spec.kind == "dwconv2d":
                raise AutomcError(f"layer {name!r}: depthwise convolutions cannot be factorised")
        ratios: dict[int, tuple[str, float]] = {}
        for spec in layers:
            if not spec.prunable:
                continue
            k = self.choice(spec.name).keep_ratio
            if spec.group in ratios and abs(ratios[spec.group][1] - k) > 1e-9:
                other = ratios[spec.group][0]
                raise AutomcError(
                    f"layers {other!r} and {spec.name!r} are coupled (dependency group {spec.group}) "
                    f"but have different keep ratios {ratios[spec.group][1]} and {k}"
                )
            ratios.setdefault(spec.group, (spec.name, k))

    def group_keep(self, layers: Sequence[LayerSpec]) -> dict[int, float]:
        """Keep ratio per dependency group (group -1 is always 1.0)."""
        out: dict[int, float] = {NOT_PRUNABLE: 1.0}
        for spec in layers:
            if spec.prunable:
                out.setdefault(spec.group, self.choice(spec.name).keep_ratio)
        return out


def layers_fingerprint(layers: Sequence[LayerSpec]) -> str:
    """Short hash of a model's layer names and shapes, stored in plans."""
    key = [(s.name, s.kind, s.in_channels, s.out_channels, list(s.kernel), s.groups) for s in layers]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Measurement:
    """What a controller is told about an evaluated candidate.

    Attributes:
        objectives: name -> value, in the direction given by the study (e.g. ``acc``
            maximised, ``macs`` minimised).
        constraints: name -> value; feasible iff every value <= 0 (Optuna's rule).
        info: free-form extra figures stored with the trial (cost breakdown etc.).
    """

    objectives: Mapping[str, float]
    constraints: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    info: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "objectives": dict(self.objectives),
            "constraints": dict(self.constraints),
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurement:
        return cls(
            objectives=dict(d.get("objectives", {})),
            constraints=dict(d.get("constraints", {})),
            info=dict(d.get("info", {})),
        )
