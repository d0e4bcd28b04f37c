"""Cost models: MACs, params, size, peak activation memory, energy and latency of a plan.

``estimate(layers, plan)`` prices a candidate from the traced layer table and the plan in
microseconds, without torch and without running or tracing the model:

    * MACs and params (``automc.cost.flops``): conv/linear multiply-accumulates as fvcore
      counts them (one fused multiply-add = 1, batch 1); BatchNorm is folded into the
      preceding conv, so it costs nothing. Unstructured sparsity does NOT reduce MACs
      (dense kernels multiply the zeros); ``macs_sparse_effective`` = MACs x density is
      reported separately as what a sparse kernel could skip, never as ``macs``.
    * ``size_bytes`` (``automc.cost.size``): weights at the plan's bits/quantizer/sparsity
      plus 32-bit biases, rounded up to whole bytes per layer.
    * ``peak_activation_bytes``: per layer the largest ``input + output`` activation of its
      stages (a low-rank layer's intermediate counts as the output of its first and the
      input of its second factor) at the layer's ``a_bits`` (batch 1); the total is the
      maximum over layers. Tensors kept alive for residual/concat branches are not counted.
    * energy (``automc.cost.energy``): ``energy_compute_mj`` + ``energy_memory_mj`` =
      ``energy_mj``, from the energy table and the profile's on-chip buffer size.
    * ``latency_ms``: delegated to ``automc.cost.latency.predict_latency`` when a device
      profile is given (at the profile's batch size, each layer at the precision the
      profile's runtime executes its bits at). A plan with bits the runtime does not
      execute gets ``flags["(precision)"]`` = ``latency: sub-8-bit simulated: size/energy
      only on this runtime`` (``automc.cost.latency.PRECISION_FLAG_KEY``).

A layer the models cannot price goes into ``CostReport.unsupported`` with the reason, and
the totals are then lower bounds; nothing is silently priced at zero.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automc.cost.energy import PJ_PER_MJ, EnergyModel, dram_power_w
from automc.cost.flops import LayerConst, compile_layer, geometry_for
from automc.cost.formats import BIAS_BITS, CODEBOOK_QUANTIZERS, weight_storage_bits
from automc.cost.latency import PRECISION_FLAG_KEY
from automc.cost.report import CostReport
from automc.errors import AutomcError, UnsupportedLayerError
from automc.plan import IDENTITY, NOT_PRUNABLE, CompressionPlan, LayerChoice, LayerSpec, kept_channels
from automc.schema.energy import ENERGY_SCHEMA, EnergyTable, load_energy_table_file

__all__ = [
    "CostModel",
    "CostReport",
    "DEFAULT_ENERGY_TABLE",
    "dram_power_w",
    "estimate",
    "load_energy_table",
    "load_profile",
]

DEFAULT_ENERGY_TABLE = "energy-45nm"
_COMPILED_CACHE_SIZE = 8


def load_energy_table(name_or_path: str | Path) -> EnergyTable:
    """Load an energy table by path, or by name (``energy-45nm`` -> ``hw_profiles/energy-45nm.yaml``).

    A name is looked up in ``./hw_profiles`` first, then among the files shipped with
    automc (``automc.resources.find_profile``). Loaded files are cached by path and
    modification time.

    Raises:
        AutomcError: unknown name (the message lists the available tables).
        ConfigError: a malformed table (all problems, naming file and field).
    """
    from automc.resources import find_profile

    p = find_profile(name_or_path, schema=ENERGY_SCHEMA, what="energy table")
    mtime = p.stat().st_mtime_ns if p.is_file() else 0
    return _load_table_cached(str(p), mtime)


@functools.lru_cache(maxsize=16)
def _load_table_cached(path: str, mtime_ns: int) -> EnergyTable:
    return load_energy_table_file(path)


def load_profile(name_or_path: str | Path) -> Any:
    """Load a device profile (``HwProfile``) by path or name; see ``automc.schema.hw_profile``."""
    from automc.schema.hw_profile import resolve_profile

    return resolve_profile(name_or_path)


_MEMO_LIMIT = 4096
_Priced = tuple[dict[str, float], float, float, str]


@dataclass(frozen=True)
class _Layer:
    """Per-layer constants of a compiled model (see ``_Compiled``)."""

    name: str
    const: LayerConst | None
    reason: str
    out_pair: tuple[int, int]
    in_fixed: int
    in_pairs: tuple[tuple[tuple[int, int], int], ...]


class _Compiled:
    """Per-model constants: layer constants, the (group, channels) pairs pruning can shrink
    and, per group, the layer whose choice carries the group's keep ratio.

    ``memo`` holds, per layer, the priced row for each ``(choice, n, m)`` seen so far, so a
    search that revisits a layer configuration pays a dict lookup instead of the arithmetic.
    """

    def __init__(self, layers: Sequence[LayerSpec]) -> None:
        self.layers = layers
        self.items: list[_Layer] = []
        pairs: set[tuple[int, int]] = set()
        self.group_owner: dict[int, str] = {}
        for spec in layers:
            if spec.prunable:
                self.group_owner.setdefault(spec.group, spec.name)
        for spec in layers:
            try:
                const: LayerConst | None = compile_layer(spec)
                reason = ""
            except UnsupportedLayerError as e:
                const, reason = None, str(e)
            segments = const.segments if const is not None else ()
            in_fixed = sum(c * mult for g, c, mult in segments if g not in self.group_owner)
            in_pairs = tuple(((g, c), mult) for g, c, mult in segments if g in self.group_owner)
            out_pair = (spec.group, spec.out_channels)
            pairs.update(pair for pair, _ in in_pairs)
            pairs.add(out_pair)
            self.items.append(_Layer(spec.name, const, reason, out_pair, in_fixed, in_pairs))
        self.pairs = tuple(sorted(pairs))
        self.memo: list[dict[tuple[LayerChoice, int, int], _Priced]] = [{} for _ in self.items]

    def kept(self, plan: CompressionPlan) -> dict[tuple[int, int], int]:
        """Kept channels for every ``(group, channels)`` pair under ``plan``'s keep ratios."""
        ratio = {NOT_PRUNABLE: 1.0}
        for group, owner in self.group_owner.items():
            ratio[group] = plan.choice(owner).keep_ratio
        return {(g, c): kept_channels(c, ratio.get(g, 1.0)) for g, c in self.pairs}


class CostModel:
    """Analytic cost model holding a device profile and an energy table (create it once per search).

    Args:
        profile: an ``HwProfile`` (or a name/path for :func:`load_profile`), or None. Gives
            the on-chip buffer size, the energy table's name and the latency data.
        energy_table: an ``EnergyTable`` or a name/path; default: the profile's table, else
            ``energy-45nm``.
        latency: price latency when the profile allows it (set False to skip it).
    """

    def __init__(
        self,
        *,
        profile: Any = None,
        energy_table: EnergyTable | str | Path | None = None,
        latency: bool = True,
    ) -> None:
        if isinstance(profile, str | Path):
            profile = load_profile(profile)
        self.profile = profile
        energy_info = getattr(profile, "energy", None)
        if energy_table is None:
            energy_table = getattr(energy_info, "table", None) or DEFAULT_ENERGY_TABLE
        if not isinstance(energy_table, EnergyTable):
            energy_table = load_energy_table(energy_table)
        self.energy_table = energy_table
        self.energy = EnergyModel(
            table=energy_table, onchip_buffer_bytes=getattr(energy_info, "onchip_buffer_bytes", None)
        )
        self._latency = _latency_predictor() if (latency and profile is not None) else None
        self._compiled: OrderedDict[int, _Compiled] = OrderedDict()

    def _compile(self, layers: Sequence[LayerSpec]) -> _Compiled:
        key = id(layers)
        hit = self._compiled.get(key)
        if hit is not None and hit.layers is layers:
            self._compiled.move_to_end(key)
            return hit
        compiled = _Compiled(layers)
        self._compiled[key] = compiled
        while len(self._compiled) > _COMPILED_CACHE_SIZE:
            self._compiled.popitem(last=False)
        return compiled

    def price_layer(self, const: LayerConst, choice: LayerChoice, n: int, m: int) -> _Priced:
        """Price one layer given its kept input features ``n`` and output channels ``m``.

        Returns:
            ``(row, compute_pj, memory_pj, reason)``: the per-layer metrics, the energies in
            pJ and, when the layer cannot be priced fully, the reason (``row`` then lacks the
            energy keys, or is empty when nothing could be priced).
        """
        try:
            geo = geometry_for(const, choice, n, m)
            weight_bits = [
                weight_storage_bits(s.weights, s.rows, choice, density=s.density) for s in geo.stages
            ]
        except UnsupportedLayerError as e:
            return {}, 0.0, 0.0, str(e)
        a_bits = choice.a_bits
        keep_fraction = 1.0 - choice.sparsity
        bias_bits = geo.biases * BIAS_BITS
        macs = weights = peak_bits = 0
        macs_sparse = 0.0
        for stage in geo.stages:
            macs += stage.macs
            weights += stage.weights
            macs_sparse += stage.macs * (stage.density or keep_fraction)
            peak_bits = max(peak_bits, (stage.in_elems + stage.out_elems) * a_bits)
        row: dict[str, float] = {
            "macs": macs,
            "params": weights + geo.biases,
            "size_bytes": -(-(sum(weight_bits) + bias_bits) // 8),
            "peak_activation_bytes": -(-peak_bits // 8),
            "macs_sparse_effective": macs_sparse,
        }
        codebook = choice.quantizer in CODEBOOK_QUANTIZERS and choice.w_bits < 16
        try:
            compute_pj, memory_pj = self.energy.layer_pj(
                geo.stages, weight_bits, bias_bits, choice.w_bits, a_bits, codebook
            )
        except UnsupportedLayerError as e:
            return row, 0.0, 0.0, f"energy: {e}"
        row["energy_compute_mj"] = compute_pj / PJ_PER_MJ
        row["energy_memory_mj"] = memory_pj / PJ_PER_MJ
        row["energy_mj"] = (compute_pj + memory_pj) / PJ_PER_MJ
        return row, compute_pj, memory_pj, ""

    def estimate(self, layers: Sequence[LayerSpec], plan: CompressionPlan) -> CostReport:
        """Price ``plan`` on the model whose traced layers are ``layers``.

        Per-layer constants (and already priced layer configurations) are cached per
        ``layers`` object, so pass the same list for every candidate of a search. The plan
        is not validated here (``plan.validate_for`` does that once); layer names the plan
        has but ``layers`` lacks are ignored.
        """
        compiled = self._compile(layers)
        kept = compiled.kept(plan)
        choices = plan.layers
        per_layer: dict[str, dict[str, float]] = {}
        unsupported: dict[str, str] = {}
        flags: dict[str, str] = {}
        macs: float = 0
        params: float = 0
        size_bytes: float = 0
        peak: float = 0
        macs_sparse = e_compute = e_memory = 0.0
        for item, memo in zip(compiled.items, compiled.memo):
            if item.const is None:
                unsupported[item.name] = item.reason
                continue
            choice = choices.get(item.name, IDENTITY)
            n = item.in_fixed
            for pair, mult in item.in_pairs:
                n += kept[pair] * mult
            m = kept[item.out_pair]
            key = (choice, n, m)
            priced = memo.get(key)
            if priced is None:
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                priced = memo[key] = self.price_layer(item.const, choice, n, m)
            row, compute_pj, memory_pj, reason = priced
            if reason:
                unsupported[item.name] = reason
            if not row:
                continue
            per_layer[item.name] = dict(row)
            macs += row["macs"]
            params += row["params"]
            size_bytes += row["size_bytes"]
            if row["peak_activation_bytes"] > peak:
                peak = row["peak_activation_bytes"]
            macs_sparse += row["macs_sparse_effective"]
            e_compute += compute_pj
            e_memory += memory_pj
        total: dict[str, float] = {
            "macs": macs,
            "params": params,
            "size_bytes": size_bytes,
            "peak_activation_bytes": peak,
            "macs_sparse_effective": macs_sparse,
            "energy_mj": (e_compute + e_memory) / PJ_PER_MJ,
            "energy_compute_mj": e_compute / PJ_PER_MJ,
            "energy_memory_mj": e_memory / PJ_PER_MJ,
        }
        if self._latency is not None:
            lat = self._latency(layers, plan, self.profile)
            total["latency_ms"] = float(lat.total_ms)
            for name, ms in lat.per_layer_ms.items():
                if name in per_layer:
                    per_layer[name]["latency_ms"] = float(ms)
            for name, note in lat.flags.items():
                flags[name] = note if note.startswith("latency") else f"latency: {note}"
            if lat.simulated:
                flags[PRECISION_FLAG_KEY] = f"latency: {lat.simulated_note}"
            for name, why in lat.unsupported.items():
                unsupported[name] = (
                    f"{unsupported[name]}; latency: {why}" if name in unsupported else f"latency: {why}"
                )
        return CostReport(total=total, per_layer=per_layer, unsupported=unsupported, flags=flags)


def _latency_predictor() -> Any:
    """``automc.cost.latency.predict_latency``, or None while that module does not exist."""
    try:
        from automc.cost.latency import predict_latency
    except ModuleNotFoundError as e:
        if e.name == "automc.cost.latency":
            return None
        raise
    return predict_latency


_DEFAULT_MODELS: dict[tuple[int, int], CostModel] = {}


def estimate(
    layers: Sequence[LayerSpec] | Any,
    plan: CompressionPlan,
    profile: Any = None,
    *,
    energy_table: EnergyTable | str | Path | None = None,
    example_input: Any = None,
) -> CostReport:
    """Cost of ``plan`` on the model traced as ``layers``: totals, per layer, unsupported layers.

    Args:
        layers: the model's ``LayerSpec`` table (``automc.graph.layers``), or the model
            itself (any ``nn.Module``, traced here on ``example_input``).
        plan: the compression plan.
        profile: device profile (``HwProfile``, name or path) for the buffer size, the
            energy table name and latency; None prices energy with ``energy-45nm`` and its
            default buffer, and leaves latency out.
        energy_table: overrides the profile's energy table (object, name or path).
        example_input: one input batch, needed when ``layers`` is a model.

    Returns:
        A ``CostReport``. ``total`` has ``macs``, ``params``, ``size_bytes``,
        ``peak_activation_bytes``, ``macs_sparse_effective``, ``energy_mj``,
        ``energy_compute_mj``, ``energy_memory_mj`` and, with a profile, ``latency_ms``;
        ``per_layer`` the same per layer name.

    A ``CostModel`` per (profile, energy table) object pair is kept, so repeated calls with
    the same objects reuse the per-model constants; engines should hold a ``CostModel``.

    Raises:
        AutomcError: a model given without ``example_input``.
    """
    if hasattr(layers, "named_modules"):  # a torch module (torch is imported only for it)
        if example_input is None:
            raise AutomcError(
                "automc.cost.estimate: a model needs example_input (one input batch) to be traced"
            )
        from automc import graph

        module: Any = layers
        layers = graph.layers(module, example_input)
    if isinstance(profile, str | Path):
        profile = load_profile(profile)
    if isinstance(energy_table, str | Path):
        energy_table = load_energy_table(energy_table)
    key = (id(profile), id(energy_table))
    model = _DEFAULT_MODELS.get(key)
    if (
        model is None
        or model.profile is not profile
        or (energy_table is not None and model.energy_table is not energy_table)
    ):
        model = CostModel(profile=profile, energy_table=energy_table)
        if len(_DEFAULT_MODELS) >= _COMPILED_CACHE_SIZE:
            _DEFAULT_MODELS.clear()
        _DEFAULT_MODELS[key] = model
    return model.estimate(layers, plan)
