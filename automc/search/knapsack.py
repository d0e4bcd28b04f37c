"""The exact cost side of the ``ilp`` controller: per-layer cost tables and the MILP over them.

Every cost metric of the cost model is, for a plan, a constant (per-network terms, e.g. the
latency fit's overhead) plus a per-layer figure that depends only on the values of the
dimensions that layer reads: its own group's keep, the keep of each group feeding its
input, and its own per-layer dimensions (MACs and latency are bilinear in the two keeps,
so costs are not additive per dimension). :class:`CostTable` reads each layer's figure
from ``CostReport.per_layer`` for every combination of those values, priced by the cost
model itself. :class:`Knapsack` has a binary ``x[p, v]`` per dimension value (one value
per dimension) and, per layer reading several dimensions, continuous
``w[layer, combination] >= 0`` tied to ``x`` by marginal equalities (``sum of w over the
combinations with p = v  ==  x[p, v]``): for one-hot ``x`` these force ``w`` to 1 on the
chosen combination and 0 elsewhere, so the MILP's total of every metric EQUALS
``CostModel.estimate(layers, plan).total``, whatever the signs of the coefficients (and
tighter than pairwise McCormick products). A budget on ``peak_activation_bytes`` (a
maximum over layers) is one row per layer. SciPy's ``milp`` (HiGHS) solves it.

The MILP grows with the combinations per layer (keep x input keep x own bits/rank
choices; about 5k per layer on the ``joint`` space, 65k variables on resnet20). Before each
solve, :meth:`Knapsack.kept_values` and the per-layer own-combination check merge away
choices dominated in every cost and in the objective (the reduced optimum is the full
one's): 6-12k variables and 2-4 s per solve there (``scripts/bench_ilp_solve.py``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from automc.errors import AutomcError
from automc.plan import NOT_PRUNABLE, CompressionPlan
from automc.space import BoundSpace

SOLVED_FIELDS = ("keep", "w_bits", "a_bits", "rank", "sparsity")
"""Dimensions the solver chooses; name dimensions stay at their first choice."""
PEAK = "peak_activation_bytes"
MAX_LAYER_COMBINATIONS = 50_000
"""A layer reading more value combinations than this is refused (use a coarser space)."""

ReportFn = Callable[[CompressionPlan], Any]


class CostTable:
    """Every metric of every plan as a constant plus one table lookup per layer.

    Args:
        space: the bound space.
        report_fn: ``plan -> CostReport`` (``CostModel.estimate`` on the space's layers).
        metrics: the metrics to tabulate (totals of the cost report).

    Raises:
        AutomcError: the cost model lacks a metric or cannot price a layer, or a layer reads
            more than ``MAX_LAYER_COMBINATIONS`` value combinations.
    """

    def __init__(self, *, space: BoundSpace, report_fn: ReportFn, metrics: Sequence[str]) -> None:
        import numpy as np

        self.space = space
        self.metrics = tuple(metrics)
        self.params = tuple(p for p in space.params if p.field in SOLVED_FIELDS)
        self.base = space.identity_values()
        identity = report_fn(space.to_plan(self.base))
        missing = [m for m in self.metrics if m not in identity.total]
        if missing:
            raise AutomcError(f"ilp controller: the cost model gives no {', '.join(missing)}")
        if identity.unsupported:
            names = ", ".join(sorted(identity.unsupported)[:3])
            raise AutomcError(f"ilp controller: the cost model cannot price layer(s) {names}")
        keep_of_group: dict[int, str] = {}
        per_layer: dict[str, list[str]] = {}
        specs = {s.name: s for s in space.layers}
        for p in self.params:
            for name in p.layers:
                if p.field == "keep":
                    keep_of_group[specs[name].group] = p.name
                else:
                    per_layer.setdefault(name, []).append(p.name)
        self.terms: list[tuple[str, tuple[str, ...], list[tuple[Any, ...]], Any]] = []
        """Per layer reading any dimension: (layer, dimensions, combinations, costs[combination, metric])."""
        reads: dict[str, tuple[list[str], list[str]]] = {}
        for spec in space.layers:
            keeps: list[str] = []
            if spec.group != NOT_PRUNABLE and spec.group in keep_of_group:
                keeps.append(keep_of_group[spec.group])
            for group, _, _ in spec.in_segments:
                if group in keep_of_group and keep_of_group[group] not in keeps:
                    keeps.append(keep_of_group[group])
            if keeps or per_layer.get(spec.name):
                reads[spec.name] = (keeps, per_layer.get(spec.name, []))
        rows = self._price(report_fn, reads)
        for name, (keeps, own) in reads.items():
            deps = tuple(keeps + own)
            combos = list(itertools.product(*(space.param(d).grid() for d in deps)))
            costs = np.array([[float(rows[name][c].get(m, 0.0)) for m in self.metrics] for c in combos])
            self.terms.append((name, deps, combos, costs))
        const_layers = {s.name for s in space.layers} - set(reads)
        self.const = {}
        for j, m in enumerate(self.metrics):
            if m == PEAK:
                peaks = [identity.per_layer.get(n, {}).get(PEAK, 0.0) for n in const_layers]
                self.const[m] = float(max(peaks, default=0.0))
                continue
            at_identity = sum(self._lookup(t, self.base)[j] for t in self.terms)
            self.const[m] = float(identity.total[m]) - float(at_identity)

    def _price(
        self, report_fn: ReportFn, reads: Mapping[str, tuple[list[str], list[str]]]
    ) -> dict[str, dict[tuple[Any, ...], Mapping[str, float]]]:
        """Per layer, its cost-report row for every combination of the values it reads.

        One report prices every layer at once, and a layer's row depends only on the values
        it reads, so the keep dimensions are coloured (two read by one layer differ in
        colour) and every colour's grid index is swept jointly with each layer's own
        combinations: ``prod(colour grid sizes) x max(own combinations)`` reports instead
        of one per combination.
        """
        grid = {p.name: p.grid() for p in self.params}
        keep_names = sorted({k for keeps, _ in reads.values() for k in keeps})
        point = {k: i for i, k in enumerate(keep_names)}
        strength = max((len(keeps) for keeps, _ in reads.values()), default=0)
        q = _prime_at_least(max([len(keep_names), *(len(grid[k]) for k in keep_names)], default=1))
        own = {n: list(itertools.product(*(grid[d] for d in ds))) for n, (_, ds) in reads.items()}
        for name, (keeps, ds) in reads.items():
            n = math.prod(len(grid[d]) for d in keeps + ds)
            if n > MAX_LAYER_COMBINATIONS:
                raise AutomcError(
                    f"ilp controller: layer {name} reads {n} value combinations "
                    f"(limit {MAX_LAYER_COMBINATIONS}); use a coarser search space"
                )
        rows: dict[str, dict[tuple[Any, ...], Mapping[str, float]]] = {n: {} for n in reads}
        longest = max((len(c) for c in own.values()), default=1)
        direct = sum(math.prod(len(grid[d]) for d in keeps + ds) for keeps, ds in reads.values())
        if q**strength * longest > direct:
            for name, (keeps, ds) in reads.items():
                for combo in itertools.product(*(grid[d] for d in keeps + ds)):
                    plan = self.space.to_plan({**self.base, **dict(zip(keeps + ds, combo))})
                    rows[name][combo] = report_fn(plan).per_layer.get(name, {})
            return rows
        for coef in itertools.product(range(q), repeat=strength):
            keep_values = {}
            for k in keep_names:
                v = sum(c * point[k] ** e for e, c in enumerate(coef)) % q
                keep_values[k] = grid[k][min(v, len(grid[k]) - 1)]
            for j in range(longest):
                values = {**self.base, **keep_values}
                for name, (_, ds) in reads.items():
                    values.update(zip(ds, own[name][min(j, len(own[name]) - 1)]))
                report = report_fn(self.space.to_plan(values))
                for name, (keeps, ds) in reads.items():
                    key = tuple(values[d] for d in keeps + ds)
                    if key not in rows[name]:
                        rows[name][key] = report.per_layer.get(name, {})
        return rows

    @staticmethod
    def _lookup(
        term: tuple[str, tuple[str, ...], list[tuple[Any, ...]], Any], values: Mapping[str, Any]
    ) -> Any:
        _, deps, combos, costs = term
        return costs[combos.index(tuple(values[d] for d in deps))]

    def predict(self, values: Mapping[str, Any]) -> dict[str, float]:
        """The tabulated total of every metric for a point of the space."""
        rows = [self._lookup(t, values) for t in self.terms]
        out = {}
        for j, m in enumerate(self.metrics):
            parts = [float(r[j]) for r in rows]
            out[m] = max([self.const[m], *parts]) if m == PEAK else self.const[m] + sum(parts)
        return out


class Knapsack:
    """The MILP over a :class:`CostTable`: one value per dimension, budgets as rows."""

    def __init__(self, table: CostTable, *, time_limit_s: float | None = None, reduce: bool = True) -> None:
        import numpy as np

        self.table = table
        self.time_limit_s = time_limit_s
        self.reduce = reduce
        self._reduced: tuple[bytes, Any] | None = None
        self.readers = {p.name: sum(p.name in deps for _, deps, _, _ in table.terms) for p in table.params}
        """Per dimension, how many layers read it."""
        self.offset: dict[str, int] = {}
        n = 0
        for p in table.params:
            self.offset[p.name] = n
            n += len(p.grid())
        self.n_x = n
        self.term_vars: list[Any] = []
        rows: list[dict[int, float]] = []
        for p in table.params:
            rows.append({self.offset[p.name] + i: 1.0 for i in range(len(p.grid()))})
        self.n_choice_rows = len(rows)
        for _, deps, combos, _ in table.terms:
            if len(deps) == 1:
                self.term_vars.append(self.offset[deps[0]] + np.arange(len(combos)))
                continue
            w = n + np.arange(len(combos))
            n += len(combos)
            self.term_vars.append(w)
            for k, d in enumerate(deps):
                grid = table.space.param(d).grid()
                marg: list[dict[int, float]] = [{self.offset[d] + i: -1.0} for i in range(len(grid))]
                index = {v: i for i, v in enumerate(grid)}
                for c, combo in enumerate(combos):
                    marg[index[combo[k]]][int(w[c])] = 1.0
                rows += marg
        self.n_vars = n
        self.timed_out = 0
        """Solves stopped by ``time_limit_s`` with a feasible, not proven optimal, point."""
        self.eq = self._matrix(rows)
        self.eq_rhs = np.array([1.0] * self.n_choice_rows + [0.0] * (len(rows) - self.n_choice_rows))

    def _matrix(self, rows: Sequence[Mapping[int, float]], n_cols: int | None = None) -> Any:
        from scipy.sparse import csr_array

        data, ri, ci = [], [], []
        for r, row in enumerate(rows):
            for c, v in row.items():
                ri.append(r)
                ci.append(c)
                data.append(v)
        return csr_array((data, (ri, ci)), shape=(len(rows), self.n_vars if n_cols is None else n_cols))

    def cost_vector(self, metric: str) -> Any:
        """Coefficients of ``metric``'s variable part (``total = const + vector @ solution``)."""
        import numpy as np

        j = self.table.metrics.index(metric)
        vec = np.zeros(self.n_vars)
        for (_, _, _, costs), var in zip(self.table.terms, self.term_vars):
            vec[var] += costs[:, j]
        return vec

    def x_vector(self, weights: Mapping[str, Mapping[Any, float]]) -> Any:
        """Objective coefficients on the value variables (``weights[param][value]``)."""
        import numpy as np

        vec = np.zeros(self.n_vars)
        for p in self.table.params:
            for i, v in enumerate(p.grid()):
                vec[self.offset[p.name] + i] = float(weights.get(p.name, {}).get(v, 0.0))
        return vec

    def kept_values(self, objective: Any) -> dict[str, list[int]]:
        """Per dimension, the grid indices left once dominated values are merged away.

        Value ``v`` of a dimension is dominated by ``u`` when ``u``'s objective coefficient is
        no larger and, in every layer reading the dimension and for every combination of
        the other values it reads, ``u``'s row of every tabulated metric (and of the
        objective) is no larger than ``v``'s: any plan choosing ``v`` stays within every
        budget and scores no worse with ``u``. Of values equal in all of them one
        representative stays (the identity value if it is one of them, else the first).
        Dimensions are reduced in order, each against the values already left in the
        others, so the reduced problem has the optimum of the full one.
        """
        import numpy as np

        table = self.table
        kept = {p.name: list(range(len(p.grid()))) for p in table.params}
        arrays = []
        for (_, deps, _, costs), var in zip(table.terms, self.term_vars):
            shape = tuple(len(table.space.param(d).grid()) for d in deps)
            blocks = [costs.reshape(*shape, -1)]
            if len(deps) > 1:
                blocks.append(np.asarray(objective)[var].reshape(*shape, 1))
            arrays.append((deps, np.concatenate(blocks, axis=-1)))
        for p in table.params:
            grid = p.grid()
            first = [i for i, v in enumerate(grid) if v == table.base[p.name]]
            rank = {i: (0 if i in first else 1, i) for i in range(len(grid))}
            x = np.asarray(objective)[self.offset[p.name] : self.offset[p.name] + len(grid)]
            slices = []
            for deps, arr in arrays:
                if p.name not in deps:
                    continue
                axis = deps.index(p.name)
                index = [np.asarray(kept[d] if d != p.name else range(len(grid))) for d in deps]
                sub = arr[np.ix_(*index, np.arange(arr.shape[-1]))]
                slices.append(np.moveaxis(sub, axis, 0).reshape(len(grid), -1))
            rows = np.concatenate([x.reshape(-1, 1), *slices], axis=1)

            def dominates(u: int, v: int, rows: Any = rows) -> bool:
                return bool(np.all(rows[u] <= rows[v]))

            kept[p.name] = [
                v
                for v in kept[p.name]
                if not any(
                    u != v and dominates(u, v) and (not dominates(v, u) or rank[u] < rank[v])
                    for u in kept[p.name]
                )
            ]
        return kept

    def _columns(self, objective: Any) -> Any:
        """Indices of the variables of the reduced problem (all of them with ``reduce=False``)."""
        import numpy as np

        if not self.reduce:
            return np.arange(self.n_vars)
        key = np.asarray(objective, dtype=float).tobytes()
        if self._reduced is not None and self._reduced[0] == key:
            return self._reduced[1]
        kept = self.kept_values(objective)
        mask = np.zeros(self.n_vars, dtype=bool)
        for p in self.table.params:
            mask[self.offset[p.name] + np.asarray(kept[p.name], dtype=int)] = True
        for t, ((_, deps, _, _), var) in enumerate(zip(self.table.terms, self.term_vars)):
            if len(deps) > 1:
                allowed = np.ones((1,) * len(deps), dtype=bool)
                for k, d in enumerate(deps):
                    axis = np.isin(np.arange(len(self.table.space.param(d).grid())), kept[d])
                    allowed = allowed & axis.reshape([-1 if i == k else 1 for i in range(len(deps))])
                mask[var] = self._undominated_own(t, objective, allowed).reshape(-1)
        columns = np.flatnonzero(mask)
        self._reduced = (key, columns)
        return columns

    def _undominated_own(self, t: int, objective: Any, allowed: Any) -> Any:
        """``allowed`` less, per combination of a layer's shared values, its dominated own combinations.

        The dimensions only this layer reads are its own: at fixed values of the others, an
        own combination whose every metric and objective term (its ``w`` coefficient plus
        its own values' coefficients) is no smaller than another allowed one's is dropped
        (of equal ones the first stays), so every plan using it has an equal or better twin.
        """
        import numpy as np

        _, deps, _, costs = self.table.terms[t]
        own = [k for k, d in enumerate(deps) if self.readers[d] == 1]
        if not own:
            return allowed
        shape = tuple(len(self.table.space.param(d).grid()) for d in deps)
        allowed = np.broadcast_to(allowed, shape)
        score = np.asarray(objective)[self.term_vars[t]].reshape(shape)
        for k in own:
            d = deps[k]
            x = np.asarray(objective)[self.offset[d] : self.offset[d] + shape[k]]
            score = score + x.reshape([-1 if i == k else 1 for i in range(len(deps))])
        rows = np.concatenate([costs.reshape(*shape, -1), score[..., None]], axis=-1)
        shared = [k for k in range(len(deps)) if k not in own]
        order = shared + own
        n_own = math.prod(shape[k] for k in own)
        rows = np.transpose(rows, [*order, len(deps)]).reshape(-1, n_own, rows.shape[-1])
        ok = np.transpose(allowed, order).reshape(-1, n_own)
        le = np.all(rows[:, :, None, :] <= rows[:, None, :, :], axis=-1)
        first = np.arange(n_own)[:, None] < np.arange(n_own)[None, :]
        beats = le & (~np.transpose(le, (0, 2, 1)) | first) & ok[:, :, None]
        beats[:, np.arange(n_own), np.arange(n_own)] = False
        ok = ok & ~beats.any(axis=1)
        back = np.argsort(order)
        return np.transpose(ok.reshape([shape[k] for k in order]), back)

    def solve(
        self, objective: Any, limits: Mapping[str, float], exclude: Sequence[Mapping[str, Any]] = ()
    ) -> dict[str, Any] | None:
        """The optimal point under ``limits`` that is none of ``exclude``; ``None`` if infeasible.

        Solved on the problem with dominated values merged away (:meth:`kept_values`), to a
        relative gap of 0. Its optimum is the full problem's; with ``exclude`` it is the
        best unseen plan among those without dominated values, and the full problem is
        solved when none is left.
        """
        table = self.table
        if exclude and not table.params:
            return None
        for metric, limit in limits.items():
            if metric == PEAK and table.const[metric] > limit:
                return None
        columns = self._columns(objective)
        values = self._solve_on(columns, objective, limits, exclude)
        if values is None and exclude and len(columns) < self.n_vars:
            import numpy as np

            values = self._solve_on(np.arange(self.n_vars), objective, limits, exclude)
        return values

    def _solve_on(
        self,
        columns: Any,
        objective: Any,
        limits: Mapping[str, float],
        exclude: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any] | None:
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp

        table = self.table
        position = np.full(self.n_vars, -1)
        position[columns] = np.arange(len(columns))
        rows: list[dict[int, float]] = []
        ub: list[float] = []
        for metric, limit in limits.items():
            j = table.metrics.index(metric)
            if metric == PEAK:
                for (_, _, _, costs), var in zip(table.terms, self.term_vars):
                    rows.append(
                        {int(position[v]): float(c) for v, c in zip(var, costs[:, j]) if position[v] >= 0}
                    )
                    ub.append(float(limit))
                continue
            vec = self.cost_vector(metric)
            rows.append({int(position[i]): float(vec[i]) for i in np.flatnonzero(vec) if position[i] >= 0})
            ub.append(float(limit) - table.const[metric])
        for values in exclude:
            cut = [self.offset[p.name] + p.grid().index(values[p.name]) for p in table.params]
            if all(position[i] >= 0 for i in cut):
                rows.append({int(position[i]): 1.0 for i in cut})
                ub.append(len(table.params) - 1.0)
        eq = self.eq[:, columns]
        used = np.flatnonzero(np.diff(eq.tocsr().indptr))
        constraints = [LinearConstraint(eq[used, :], self.eq_rhs[used], self.eq_rhs[used])]
        if rows:
            constraints.append(LinearConstraint(self._matrix(rows, len(columns)), -np.inf, np.array(ub)))
        integrality = (columns < self.n_x).astype(float)
        options: dict[str, Any] = {"mip_rel_gap": 0.0}
        if self.time_limit_s is not None:
            options["time_limit"] = float(self.time_limit_s)
        res = milp(
            np.asarray(objective)[columns],
            constraints=constraints,
            integrality=integrality,
            bounds=Bounds(0, 1),
            options=options,
        )
        if res.status == 1 and res.x is not None:
            self.timed_out += 1
        elif res.status == 2:
            return None
        if res.status not in (0, 1) or res.x is None:
            raise AutomcError(f"ilp controller: the MILP solver stopped: {res.message}")
        x = np.zeros(self.n_vars)
        x[columns] = res.x
        values = dict(table.base)
        for p in table.params:
            block = x[self.offset[p.name] : self.offset[p.name] + len(p.grid())]
            values[p.name] = p.grid()[int(np.argmax(block))]
        return values


def _prime_at_least(n: int) -> int:
    p = max(2, n)
    while any(p % d == 0 for d in range(2, math.isqrt(p) + 1)):
        p += 1
    return p
