"""Loader/validator for search-space files (``schema: automc/search-space``, version 1).

A search-space file says, per layer, which compression choices the controller may make::

    schema: automc/search-space
    version: 1
    description: joint pruning + quantization + low rank
    frozen: ["@first", "@last"]          # optional; this is the default
    criterion: [l1, fpgm]                # optional; one name or a list to search over
    rules:                               # later rules override earlier ones per field
      - select: "*"                      # glob, "re:<regex>", "kind:<layer kind>", "@first", "@last"
        keep: {low: 0.2, high: 1.0, step: 0.05}
        w_bits: [4, 6, 8]
        a_bits: [8, 32]
        rank: [0.25, 0.5, 1.0]           # fractions of the layer's max rank; 1.0 = no factorisation
        quantizer: [uniform, kmeans]     # optional: weight quantizer(s) (automc list quantizers)
        sparsity: [0.0, 0.5, 0.75]       # optional: magnitude sparsity, fractions in [0, 1) or a grid
        lowrank: [svd, sparse_lowrank]   # optional: low-rank method(s) (automc list lowrank)
    prior:                               # optional: narrow keep ranges of sensitive layers
      sensitivity_csv: reports/sens.csv
      threshold: 0.02

``keep`` and ``sparsity`` take one value, a list (``sparsity`` only) or a
``{low, high, step}`` grid; ``w_bits``, ``a_bits``, ``rank``, ``quantizer`` and ``lowrank``
take one value or a list. A list or grid has at most :data:`MAX_CHOICES` values (counted
before any grid is built). ``quantizer`` and ``lowrank`` list names in the order the
controller's "least compressed" point prefers them: the first is its default.

This module only checks the file's own structure (types, ranges, names, unknown keys) and
reports every problem at once. Whether selectors match layers is checked when the space
is bound to a model (:meth:`automc.space.SearchSpace.bind`), because that needs the
model's layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automc.plan import ALLOWED_BITS, LAYER_KINDS
from automc.schema.common import Problems, check_header, read_yaml

SCHEMA = "automc/search-space"
VERSIONS = {1}
RULE_KEYS = {"select", "keep", "w_bits", "a_bits", "rank", "quantizer", "sparsity", "lowrank"}
MAX_CHOICES = 10_000
TOP_KEYS = {"schema", "version", "description", "frozen", "criterion", "rules", "prior"}
PRIOR_KEYS = {"sensitivity_csv", "threshold"}
SPECIAL_SELECTORS = ("@first", "@last")


@dataclass(frozen=True)
class KeepRange:
    """Keep-ratio grid ``low, low + step, ..., high`` (a single value when ``low == high``)."""

    low: float
    high: float
    step: float


@dataclass(frozen=True)
class Rule:
    """One ``rules[i]`` entry; ``None`` fields leave earlier rules' choices in place.

    Attributes:
        index: position in the file (for error messages).
        select: selectors; a layer matches the rule if any selector matches it.
        keep: keep-ratio grid.
        w_bits: weight bit-width choices.
        a_bits: activation bit-width choices.
        rank: rank fractions in (0, 1]; 1.0 = no factorisation.
        quantizer: weight-quantizer names, in file order.
        sparsity: magnitude-sparsity fractions in [0, 1), ascending.
        lowrank: low-rank method names, in file order.
    """

    index: int
    select: tuple[str, ...]
    keep: KeepRange | None = None
    w_bits: tuple[int, ...] | None = None
    a_bits: tuple[int, ...] | None = None
    rank: tuple[float, ...] | None = None
    quantizer: tuple[str, ...] | None = None
    sparsity: tuple[float, ...] | None = None
    lowrank: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Prior:
    """Sensitivity prior: layers whose sensitivity exceeds ``threshold`` keep more channels."""

    sensitivity_csv: str
    threshold: float


@dataclass(frozen=True)
class SpaceSpec:
    """A validated search-space file, not yet bound to a model.

    Attributes:
        source: file path (or a label) used in error messages.
        description: free text.
        frozen: selectors of layers that get no searchable choice.
        criteria: pruning-criterion names to search over (one = fixed).
        rules: the ``rules`` list in file order.
        prior: optional sensitivity prior.
    """

    source: str
    description: str
    frozen: tuple[str, ...]
    criteria: tuple[str, ...]
    rules: tuple[Rule, ...]
    prior: Prior | None = None


def _selectors(value: Any, field: str, probs: Problems) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        probs.add(field, f"must be a selector string or a non-empty list of them, got {value!r}")
        return ()
    out: list[str] = []
    for i, sel in enumerate(items):
        where = f"{field}[{i}]" if isinstance(value, list) else field
        if not isinstance(sel, str) or not sel.strip():
            probs.add(where, f"must be a non-empty string, got {sel!r}")
            continue
        problem = selector_problem(sel)
        if problem:
            probs.add(where, problem)
            continue
        out.append(sel)
    return tuple(out)


def selector_problem(selector: str) -> str:
    """Why a selector string is malformed, or ``""`` if it is fine."""
    import re

    if selector.startswith("re:"):
        try:
            re.compile(selector[3:])
        except re.error as e:
            return f"invalid regular expression {selector[3:]!r} ({e})"
    elif selector.startswith("kind:"):
        if selector[5:] not in LAYER_KINDS:
            return f"unknown layer kind {selector[5:]!r} (known: {', '.join(LAYER_KINDS)})"
    elif selector.startswith("@") and selector not in SPECIAL_SELECTORS:
        return f"unknown special selector {selector!r} (known: {', '.join(SPECIAL_SELECTORS)})"
    return ""


def _grid(
    d: Mapping[str, Any], field: str, probs: Problems, *, default_step: float, domain: str
) -> tuple[float, float, float] | None:
    """``(low, high, step)`` of a ``{low, high, step}`` grid inside ``domain`` (``(0, 1]`` or ``[0, 1)``).

    The number of values is counted before anything is built: a grid of more than
    :data:`MAX_CHOICES` values is refused at ``<field>.step``.
    """
    probs.keys(d, field, required={"low", "high"}, optional={"step"})
    low = probs.number(d, "low", field, minimum=None)
    high = probs.number(d, "high", field, minimum=None)
    step = probs.number(d, "step", field, positive=True, required=False)
    if low is None or high is None or ("step" in d and step is None):
        return None
    ok = True
    for key, v in (("low", low), ("high", high)):
        if not _in_domain(v, domain):
            probs.add(f"{field}.{key}", f"must be in {domain}, got {v!r}")
            ok = False
    if low > high:
        probs.add(field, f"low ({low}) must be <= high ({high})")
        ok = False
    if not ok:
        return None
    step = float(step if step is not None else default_step)
    n = (high - low) / step
    if n + 1 > MAX_CHOICES:
        probs.add(f"{field}.step", f"step {step:g} makes {n + 1:.3g} values (at most {MAX_CHOICES})")
        return None
    if low < high and abs(n - round(n)) > 1e-6:
        probs.add(f"{field}.step", f"(high - low) = {high - low:g} is not a multiple of step {step:g}")
        return None
    return float(low), float(high), step


def _in_domain(v: float, domain: str) -> bool:
    return 0.0 < v <= 1.0 if domain == "(0, 1]" else 0.0 <= v < 1.0


def _keep(value: Any, field: str, probs: Problems) -> KeepRange | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not _in_domain(float(value), "(0, 1]"):
            probs.add(field, f"must be in (0, 1], got {value!r}")
            return None
        return KeepRange(low=float(value), high=float(value), step=1.0)
    d = probs.mapping(value, field)
    if d is None:
        return None
    grid = _grid(d, field, probs, default_step=0.05, domain="(0, 1]")
    if grid is None:
        return None
    return KeepRange(low=grid[0], high=grid[1], step=grid[2])


def _capped(values: tuple[Any, ...], field: str, probs: Problems) -> tuple[Any, ...] | None:
    if len(values) > MAX_CHOICES:
        probs.add(field, f"{len(values)} choices (at most {MAX_CHOICES})")
        return None
    return values


def _bits(value: Any, field: str, probs: Problems) -> tuple[int, ...] | None:
    items = [value] if not isinstance(value, list) else value
    allowed = ", ".join(map(str, sorted(ALLOWED_BITS)))
    if not items:
        probs.add(field, "must not be empty")
        return None
    out: list[int] = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) or v not in ALLOWED_BITS:
            probs.add(field, f"bit-width {v!r} not allowed (allowed: {allowed})")
            return None
        out.append(v)
    return tuple(sorted(set(out)))


def _fractions(
    value: Any, field: str, probs: Problems, *, domain: str, what: str, note: str = ""
) -> tuple[float, ...] | None:
    items = [value] if not isinstance(value, list) else value
    if not items:
        probs.add(field, "must not be empty")
        return None
    out: list[float] = []
    for v in items:
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or math.isnan(v)
            or not _in_domain(v, domain)
        ):
            probs.add(field, f"{what} {v!r} must be a number in {domain}{note}")
            return None
        out.append(float(v))
    return _capped(tuple(sorted(set(out))), field, probs)


def _rank(value: Any, field: str, probs: Problems) -> tuple[float, ...] | None:
    return _fractions(
        value, field, probs, domain="(0, 1]", what="rank fraction", note=" (1.0 = no factorisation)"
    )


def _sparsity(value: Any, field: str, probs: Problems) -> tuple[float, ...] | None:
    if not isinstance(value, Mapping):
        return _fractions(value, field, probs, domain="[0, 1)", what="sparsity")
    grid = _grid(value, field, probs, default_step=0.05, domain="[0, 1)")
    if grid is None:
        return None
    low, high, step = grid
    n = int(round((high - low) / step))
    return tuple(sorted({round(low + i * step, 10) for i in range(n + 1)}))


def _names(value: Any, field: str, probs: Problems, *, known: list[str], what: str) -> tuple[str, ...] | None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        probs.add(field, f"must be a {what} name or a non-empty list of names, got {value!r}")
        return None
    for v in items:
        if not isinstance(v, str) or not v:
            probs.add(field, f"must be a {what} name or a non-empty list of names, got {v!r}")
            return None
        if v not in known:
            probs.add(field, f"unknown {what} {v!r} (known: {', '.join(known)})")
            return None
    return tuple(dict.fromkeys(items))


def _rule(index: int, raw: Any, probs: Problems) -> Rule | None:
    # cost imports schema, so the torch-free name lists are imported when first needed
    from automc.cost.formats import lowrank_method_names, quantizer_names

    field = f"rules[{index}]"
    d = probs.mapping(raw, field)
    if d is None:
        return None
    probs.keys(d, field, required={"select"}, optional=RULE_KEYS - {"select"})
    select = _selectors(d["select"], f"{field}.select", probs) if "select" in d else ()
    keep = _keep(d["keep"], f"{field}.keep", probs) if "keep" in d else None
    w_bits = _bits(d["w_bits"], f"{field}.w_bits", probs) if "w_bits" in d else None
    a_bits = _bits(d["a_bits"], f"{field}.a_bits", probs) if "a_bits" in d else None
    rank = _rank(d["rank"], f"{field}.rank", probs) if "rank" in d else None
    quantizer = (
        _names(d["quantizer"], f"{field}.quantizer", probs, known=quantizer_names(), what="quantizer")
        if "quantizer" in d
        else None
    )
    sparsity = _sparsity(d["sparsity"], f"{field}.sparsity", probs) if "sparsity" in d else None
    lowrank = (
        _names(d["lowrank"], f"{field}.lowrank", probs, known=lowrank_method_names(), what="low-rank method")
        if "lowrank" in d
        else None
    )
    if not select:
        return None
    return Rule(
        index=index,
        select=select,
        keep=keep,
        w_bits=w_bits,
        a_bits=a_bits,
        rank=rank,
        quantizer=quantizer,
        sparsity=sparsity,
        lowrank=lowrank,
    )


def parse_search_space(data: Any, source: str) -> SpaceSpec:
    """Validate parsed YAML ``data``; raise one ``ConfigError`` listing every problem.

    Args:
        data: the parsed file (:func:`automc.schema.common.parse_yaml`).
        source: file name used as the message prefix.

    Returns:
        The validated :class:`SpaceSpec`.
    """
    probs = check_header(data, source, schema=SCHEMA, versions=VERSIONS)
    probs.keys(data, "", required={"schema", "version", "rules"}, optional=TOP_KEYS)
    description = data.get("description", "")
    if not isinstance(description, str):
        probs.add("description", f"must be a string, got {description!r}")
        description = ""
    frozen: tuple[str, ...] = SPECIAL_SELECTORS
    if "frozen" in data:
        raw = data["frozen"]
        frozen = () if raw is None or raw == [] else _selectors(raw, "frozen", probs)
    criteria: tuple[str, ...] = ("l1",)
    if "criterion" in data:
        raw = data["criterion"]
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not items or not all(isinstance(c, str) and c for c in items):
            probs.add("criterion", f"must be a criterion name or a non-empty list of names, got {raw!r}")
        else:
            criteria = tuple(dict.fromkeys(items))
    rules: list[Rule] = []
    raw_rules = data.get("rules")
    if "rules" in data:
        if not isinstance(raw_rules, list) or not raw_rules:
            probs.add("rules", "must be a non-empty list of rules")
        else:
            for i, raw in enumerate(raw_rules):
                rule = _rule(i, raw, probs)
                if rule is not None:
                    rules.append(rule)
    prior = None
    if data.get("prior") is not None:
        d = probs.mapping(data["prior"], "prior")
        if d is not None:
            probs.keys(d, "prior", required=PRIOR_KEYS)
            csv = probs.string(d, "sensitivity_csv", "prior")
            threshold = probs.number(d, "threshold", "prior", minimum=0.0)
            if csv is not None and threshold is not None:
                prior = Prior(sensitivity_csv=csv, threshold=float(threshold))
    probs.raise_if_any()
    return SpaceSpec(
        source=source,
        description=description,
        frozen=frozen,
        criteria=criteria,
        rules=tuple(rules),
        prior=prior,
    )


def load_search_space(path: str | Path) -> SpaceSpec:
    """Read and validate a search-space file (size, depth and alias limits of :func:`read_yaml`)."""
    return parse_search_space(read_yaml(path), str(path))
