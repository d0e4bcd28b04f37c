"""Search spaces: a validated file (:class:`SearchSpace`) bound to a model's layers (:class:`BoundSpace`).

Binding turns per-layer rules into a flat list of searchable dimensions (:class:`Param`):

* ``keep/<layer>``: keep ratio of one dependency group, named after the group's first
  layer in execution order; coupled layers (one ``LayerSpec.group``) share this one param.
  Bound for a runtime with a blocked channel layout (``channel_block``), it offers only the
  ratios whose channel counts stay on that layout.
* ``w_bits/<layer>``, ``a_bits/<layer>``: bit-width choices of one layer.
* ``rank/<layer>``: rank fraction of one layer (1.0 = no factorisation); converted to an
  integer rank with ``LayerSpec.max_rank`` by :meth:`BoundSpace.to_plan`.
* ``quantizer/<layer>``: weight-quantizer name of one layer; a param only where the
  layer's ``w_bits`` can be below 16 (wider weights are plain floats, whatever the name).
* ``sparsity/<layer>``: unstructured magnitude-sparsity fraction of one layer.
* ``lowrank/<layer>``: low-rank method of one layer; a param only where the layer has a
  rank fraction below 1.0 to choose (no factorisation, no method).
* ``criterion``: the pruning criterion, when the file lists more than one.

A dimension with a single choice is not a param: its value is applied by ``to_plan``
directly. ``to_plan`` writes a quantizer name only into layers quantized below 16 bits and
a low-rank method only into factorised layers, so equivalent points give one plan. Frozen layers (default: the first and the last layer in execution order, i.e.
the stem conv and the classifier) get no choice at all, and a dependency group with a
frozen member keeps all its channels. A group's keep ratio is searchable only when every
member has a ``keep`` rule; the range is the intersection of the members' ranges.

No torch here; Optuna is imported only by :meth:`BoundSpace.distributions`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import random
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automc.cost.latency import block_layout_keep, block_layout_rank
from automc.errors import AutomcError, ConfigError
from automc.plan import CompressionPlan, LayerChoice, LayerSpec, layers_fingerprint
from automc.schema.common import Problems
from automc.schema.search_space import KeepRange, SpaceSpec, load_search_space, parse_search_space

if TYPE_CHECKING:
    import optuna

_EPS = 1e-9


@dataclass(frozen=True)
class Param:
    """One searchable dimension.

    Attributes:
        name: ``<field>/<layer>`` (``keep``, ``w_bits``, ``a_bits``, ``rank``, ``quantizer``,
            ``sparsity``, ``lowrank``) or ``criterion``.
        kind: ``float`` (a ``low..high`` grid with ``step``) or ``categorical`` (``choices``).
        low: smallest value of a float param.
        high: largest value of a float param.
        step: grid step of a float param.
        choices: values of a categorical param, sorted ascending; names (``criterion``,
            ``quantizer``, ``lowrank``) in file order, the first being the default.
        layers: names of the layers this param sets (all members of a group for ``keep``).
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple = ()
    layers: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        """The part of :attr:`name` before ``/``: ``keep``, ``w_bits``, ..., or ``criterion``."""
        return self.name.split("/", 1)[0]

    def grid(self) -> tuple:
        """Every value the param can take, ascending."""
        if self.kind == "categorical":
            return self.choices
        assert self.low is not None and self.high is not None and self.step is not None
        n = int(round((self.high - self.low) / self.step))
        return tuple(round(self.low + i * self.step, 10) for i in range(n + 1))

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return any(value == c and type(value) is type(c) or _num_eq(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        assert self.low is not None and self.high is not None and self.step is not None
        if value < self.low - _EPS or value > self.high + _EPS:
            return False
        k = (value - self.low) / self.step
        return abs(k - round(k)) < 1e-6

    def nearest(self, value: float) -> Any:
        """The grid value closest to ``value`` (ties go to the larger value)."""
        return min(reversed(self.grid()), key=lambda v: abs(float(v) - value))


def _num_eq(a: Any, b: Any) -> bool:
    numeric = (int, float)
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, numeric) or not isinstance(b, numeric):
        return False
    return abs(float(a) - float(b)) < _EPS


@dataclass(frozen=True)
class LayerStep:
    """One step of a layer-by-layer controller (AMC): a layer and the params it owns.

    Attributes:
        layer: the layer.
        keep_param: name of the keep param whose group this layer leads, or ``None``.
        w_bits_param: name of the layer's ``w_bits`` param, or ``None``.
        a_bits_param: name of the layer's ``a_bits`` param, or ``None``.
    """

    layer: LayerSpec
    keep_param: str | None
    w_bits_param: str | None
    a_bits_param: str | None


_RULE_FIELDS = ("keep", "w_bits", "a_bits", "rank", "quantizer", "sparsity", "lowrank")
_LAYER_FIELDS = ("w_bits", "a_bits", "rank", "quantizer", "sparsity", "lowrank")
_NAME_FIELDS = ("criterion", "quantizer", "lowrank")


def _factorisable(spec: LayerSpec) -> bool:
    return spec.kind != "dwconv2d" and spec.max_rank > 1


def _applies(key: str, spec: LayerSpec, settings: Mapping[str, Any]) -> bool:
    """Whether a per-layer ``key`` choice can change anything on ``spec`` given its other settings."""
    if key == "rank":
        return _factorisable(spec)
    if key == "quantizer":
        return any(b < 16 for b in settings.get("w_bits", ()))
    if key == "lowrank":
        return _factorisable(spec) and any(r < 1.0 - _EPS for r in settings.get("rank", ()))
    return True


def _least(p: Param) -> Any:
    """The least compressing value of ``p``: the first name, no sparsity, else the largest value."""
    if p.field in _NAME_FIELDS:
        return p.choices[0]
    return p.grid()[0] if p.field == "sparsity" else p.grid()[-1]


def _most(p: Param) -> Any:
    """The most compressing value of ``p``: the first name, the most sparsity, else the smallest value."""
    if p.field in _NAME_FIELDS:
        return p.choices[0]
    return p.grid()[-1] if p.field == "sparsity" else p.grid()[0]


def _matches(selector: str, spec: LayerSpec, first: str, last: str) -> bool:
    if selector == "@first":
        return spec.name == first
    if selector == "@last":
        return spec.name == last
    if selector.startswith("re:"):
        return re.fullmatch(selector[3:], spec.name) is not None
    if selector.startswith("kind:"):
        return spec.kind == selector[5:]
    return fnmatch.fnmatchcase(spec.name, selector)


class SearchSpace:
    """A validated search-space file; :meth:`bind` it to a model's layers to search it."""

    def __init__(self, *, spec: SpaceSpec) -> None:
        self.spec = spec

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        """Read and validate ``path``; ``ConfigError`` naming the file and every bad key."""
        return cls(spec=load_search_space(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<search space>") -> SearchSpace:
        """Validate already-parsed data (e.g. a dict built in code)."""
        return cls(spec=parse_search_space(data, source))

    @property
    def source(self) -> str:
        return self.spec.source

    def bind(self, layers: Sequence[LayerSpec], *, model: str = "", channel_block: int = 1) -> BoundSpace:
        """Resolve the rules against ``layers``.

        Args:
            layers: the model's layers (any order; execution order is taken from ``index``).
            model: model name stored in the plans.
            channel_block: channels per block of the target runtime's blocked layout
                (``RuntimeInfo.channel_block``); above 1, every keep ratio of the grid is moved
                to the nearest channel count that keeps the group on that layout
                (:func:`automc.cost.latency.block_layout_keep`) and a group's keep param
                offers those ratios only (categorical); a low rank is moved likewise (the
                second conv of a factorised layer reads ``rank`` channels), to no
                factorisation where that is the layer's full rank. 1: as the file says.

        Returns:
            The bound space.

        Raises:
            ConfigError: a selector matches no layer, or coupled layers' keep ranges do not
                overlap; every problem is listed.
        """
        if not layers:
            raise ConfigError(f"{self.source}: cannot bind a search space to a model without layers")
        ordered = tuple(sorted(layers, key=lambda s: s.index))
        first, last = ordered[0].name, ordered[-1].name
        probs = Problems(self.source)

        def select(selectors: Sequence[str], field: str) -> set[str]:
            hit: set[str] = set()
            for i, sel in enumerate(selectors):
                names = {s.name for s in ordered if _matches(sel, s, first, last)}
                if not names:
                    where = f"{field}[{i}]" if len(selectors) > 1 else field
                    probs.add(where, f"{sel!r} matches no layer")
                hit |= names
            return hit

        frozen = select(self.spec.frozen, "frozen") if self.spec.frozen else set()
        settings: dict[str, dict[str, Any]] = {s.name: {} for s in ordered}
        for rule in self.spec.rules:
            for name in select(rule.select, f"rules[{rule.index}].select"):
                if name in frozen:
                    continue
                for key in _RULE_FIELDS:
                    value = getattr(rule, key)
                    if value is not None:
                        settings[name][key] = value
        min_keep = self._prior_min_keep()
        params: list[Param] = []
        fixed: dict[str, dict[str, Any]] = {s.name: {} for s in ordered}
        keep_owner: dict[str, Param] = {}
        groups: dict[int, list[LayerSpec]] = {}
        for spec in ordered:
            if spec.prunable:
                groups.setdefault(spec.group, []).append(spec)
        for group, members in groups.items():
            names = tuple(m.name for m in members)
            ranges = [settings[n].get("keep") for n in names]
            if any(n in frozen for n in names) or any(r is None for r in ranges):
                continue
            rng = _intersect([r for r in ranges if r is not None], group, names, probs)
            if rng is None:
                continue
            floor = max((min_keep.get(n, 0.0) for n in names), default=0.0)
            low = rng.low
            if floor > low:
                n_up = math.ceil((floor - rng.low) / rng.step - 1e-6)
                low = min(rng.high, round(rng.low + n_up * rng.step, 10))
            grid = Param(name="", kind="float", low=low, high=rng.high, step=rng.step).grid()
            if channel_block > 1:
                grid = _block_layout_keeps(grid, members, channel_block)
            if len(grid) == 1:
                if grid[0] < 1.0:
                    for n in names:
                        fixed[n]["keep"] = grid[0]
                continue
            if channel_block > 1:
                param = Param(name=f"keep/{names[0]}", kind="categorical", choices=grid, layers=names)
            else:
                param = Param(
                    name=f"keep/{names[0]}", kind="float", low=low, high=rng.high, step=rng.step, layers=names
                )
            keep_owner[names[0]] = param
        probs.raise_if_any()
        for spec in ordered:
            if spec.name in keep_owner:
                params.append(keep_owner[spec.name])
            for key in _LAYER_FIELDS:
                choices = settings[spec.name].get(key)
                if choices is None or not _applies(key, spec, settings[spec.name]):
                    continue
                if len(choices) == 1:
                    fixed[spec.name][key] = choices[0]
                else:
                    params.append(
                        Param(
                            name=f"{key}/{spec.name}",
                            kind="categorical",
                            choices=tuple(choices),
                            layers=(spec.name,),
                        )
                    )
        criteria = self.spec.criteria
        if len(criteria) > 1:
            params.append(Param(name="criterion", kind="categorical", choices=tuple(criteria)))
        return BoundSpace(
            params=tuple(params),
            layers=ordered,
            fixed={k: v for k, v in fixed.items() if v},
            criterion=criteria[0],
            model=model,
            source=self.source,
            channel_block=max(1, channel_block),
        )

    def _prior_min_keep(self) -> dict[str, float]:
        prior = self.spec.prior
        if prior is None:
            return {}
        try:
            from automc.sensitivity import sensitivity_prior
        except ImportError:
            warnings.warn(
                f"{self.source}: prior ignored: automc.sensitivity.sensitivity_prior is not available",
                stacklevel=3,
            )
            return {}
        path = Path(prior.sensitivity_csv)
        if not path.is_absolute() and not path.exists():
            beside = Path(self.source).parent / path
            if beside.exists():
                path = beside
        if not path.is_file():
            raise ConfigError(
                f"{self.source}: prior.sensitivity_csv: file not found: {prior.sensitivity_csv}"
            )
        return {str(k): float(v) for k, v in sensitivity_prior(path, prior.threshold).items()}


def _block_layout_keeps(grid: Sequence[float], members: Sequence[LayerSpec], block: int) -> tuple[float, ...]:
    """The keep ratios of ``grid``, each moved to the nearest channel count on the runtime's
    blocked layout (``block`` channels per block), ascending and without repeats."""
    return tuple(sorted({block_layout_keep(k, members, block) for k in grid}))


def _intersect(
    ranges: list[KeepRange], group: int, names: tuple[str, ...], probs: Problems
) -> KeepRange | None:
    low = max(r.low for r in ranges)
    high = min(r.high for r in ranges)
    step = ranges[0].step
    if low > high + _EPS:
        probs.add(
            "rules",
            f"coupled layers {', '.join(names)} (dependency group {group}) have keep ranges that do not overlap",
        )
        return None
    n = math.floor((high - low) / step + 1e-6)
    return KeepRange(low=low, high=round(low + n * step, 10) if n > 0 else low, step=step)


class BoundSpace:
    """A search space bound to one model's layers: the params a controller searches.

    Attributes:
        params: the searchable dimensions, in execution order of their layers
            (``criterion`` last).
        layers: the model's layers in execution order.
        model: model name written into plans.
        source: the search-space file.
        channel_block: the runtime's channel block the keep ratios were aligned to (1: none;
            :meth:`SearchSpace.bind`).
    """

    def __init__(
        self,
        *,
        params: Sequence[Param],
        layers: Sequence[LayerSpec],
        fixed: Mapping[str, Mapping[str, Any]],
        criterion: str,
        model: str = "",
        source: str = "",
        channel_block: int = 1,
    ) -> None:
        self.params: tuple[Param, ...] = tuple(params)
        self.channel_block = channel_block
        self.layers: tuple[LayerSpec, ...] = tuple(layers)
        self.model = model
        self.source = source
        self._fixed = {k: dict(v) for k, v in fixed.items()}
        self._criterion = criterion
        self._by_name = {p.name: p for p in self.params}
        self._fingerprint = layers_fingerprint(self.layers)
        self._specs = {s.name: s for s in self.layers}

    def __len__(self) -> int:
        return len(self.params)

    def param(self, name: str) -> Param:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def digest(self) -> str:
        """Short hash of the params, fixed choices and layer fingerprint (changes when the space does)."""
        body = {
            "params": [
                [p.name, p.kind, p.low, p.high, p.step, list(p.choices), list(p.layers)] for p in self.params
            ],
            "fixed": self._fixed,
            "criterion": self._criterion,
            "fingerprint": self._fingerprint,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def problems(self, values: Mapping[str, Any]) -> list[str]:
        """Why ``values`` is not a point of this space (empty list if it is)."""
        out = [f"missing {name!r}" for name in self._by_name if name not in values]
        out += [f"unknown param {name!r}" for name in values if name not in self._by_name]
        for name, value in values.items():
            p = self._by_name.get(name)
            if p is not None and not p.contains(value):
                out.append(f"{name}={value!r} is outside the space")
        return out

    def contains(self, values: Mapping[str, Any]) -> bool:
        return not self.problems(values)

    def _rank(self, spec: LayerSpec, fraction: float) -> int | None:
        if fraction >= 1.0 - _EPS:
            return None
        rank = max(1, min(spec.max_rank, int(round(fraction * spec.max_rank))))
        if self.channel_block > 1:
            return block_layout_rank(rank, spec.max_rank, self.channel_block)
        return rank

    def to_plan(self, values: Mapping[str, Any]) -> CompressionPlan:
        """The plan for a point of the space.

        Raises:
            AutomcError: ``values`` misses a param, names an unknown one or lies outside.
        """
        bad = self.problems(values)
        if bad:
            raise AutomcError(f"not a point of search space {self.source or '<space>'}: {'; '.join(bad[:5])}")
        fields: dict[str, dict[str, Any]] = {name: dict(v) for name, v in self._fixed.items()}
        criterion = self._criterion
        for p in self.params:
            if p.field == "criterion":
                criterion = str(values[p.name])
                continue
            for layer in p.layers:
                fields.setdefault(layer, {})[p.field] = values[p.name]
        choices: dict[str, LayerChoice] = {}
        for name, f in fields.items():
            spec = self._specs[name]
            kw: dict[str, Any] = {}
            if "keep" in f:
                kw["keep_ratio"] = min(1.0, round(float(f["keep"]), 10))
            if "w_bits" in f:
                kw["w_bits"] = int(f["w_bits"])
            if "a_bits" in f:
                kw["a_bits"] = int(f["a_bits"])
            if "rank" in f:
                kw["rank"] = self._rank(spec, float(f["rank"]))
            if "sparsity" in f:
                kw["sparsity"] = float(f["sparsity"])
            if "quantizer" in f and kw.get("w_bits", 32) < 16:
                kw["quantizer"] = str(f["quantizer"])
            if "lowrank" in f and kw.get("rank") is not None:
                kw["lowrank"] = str(f["lowrank"])
            choice = LayerChoice(**kw)
            if not choice.is_identity:
                choices[name] = choice
        return CompressionPlan(
            layers=choices, criterion=criterion, model=self.model, fingerprint=self._fingerprint
        )

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A uniformly random point (uniform per param, independently)."""
        return {p.name: rng.choice(p.grid()) for p in self.params}

    def identity_values(self) -> dict[str, Any]:
        """The least compressed point: largest keep, most bits, largest rank fraction, least
        sparsity, first criterion/quantizer/low-rank method."""
        return {p.name: _least(p) for p in self.params}

    def extreme_values(self) -> dict[str, Any]:
        """The cheapest point: smallest keep, fewest bits, smallest rank fraction, most
        sparsity, first criterion/quantizer/low-rank method."""
        return {p.name: _most(p) for p in self.params}

    def uniform_values(self, keep: float) -> dict[str, Any]:
        """Uniform-pruning baseline: every keep param at the grid value nearest ``keep``, the rest at identity."""
        values = self.identity_values()
        for p in self.params:
            if p.field == "keep":
                values[p.name] = p.nearest(keep)
        return values

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Optuna distributions of the params (imports optuna)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        out: dict[str, optuna.distributions.BaseDistribution] = {}
        for p in self.params:
            if p.kind == "float":
                assert p.low is not None and p.high is not None
                out[p.name] = FloatDistribution(p.low, p.high, step=p.step)
            else:
                out[p.name] = CategoricalDistribution(p.choices)
        return out

    def layer_steps(self) -> list[LayerStep]:
        """Per-layer steps in execution order, for layers owning a keep and/or bits param."""
        steps: list[LayerStep] = []
        for spec in self.layers:
            keep = f"keep/{spec.name}"
            w = f"w_bits/{spec.name}"
            a = f"a_bits/{spec.name}"
            owned = [n if n in self._by_name else None for n in (keep, w, a)]
            if any(owned):
                steps.append(
                    LayerStep(layer=spec, keep_param=owned[0], w_bits_param=owned[1], a_bits_param=owned[2])
                )
        return steps
