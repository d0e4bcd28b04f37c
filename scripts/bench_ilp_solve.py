"""Time the ``ilp`` controller's MILP solves with and without merging dominated choices -> reports/bench/ilp_solve.json.

On one model and space (default resnet20, ``joint``) and per budget set, the knapsack is
solved ``--solves`` times in a row (each solve excludes the plans before it, as the
controller's asks do) on the full problem (``Knapsack(reduce=False)``) and on the reduced
one (the default). The sensitivities are synthetic and seeded: each dimension's loss grows
with the square of a value's grid distance from the identity, scaled by a per-dimension
factor drawn from U(0.01, 0.1) (the solve time depends on the problem's size and
structure, not on the proxy). The first solve has no exclusions, so both problems have the
same optimum; its summed loss is reported for both.

    .venv/bin/python scripts/bench_ilp_solve.py --budgets "flops=0.3;flops=0.3,latency=0.6"
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from automc.schema.hw_profile import profile_name

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--space", default="joint", help="shipped space name or path")
    p.add_argument("--budgets", default="flops=0.3;flops=0.3,latency=0.6", help="budget sets, ';'-separated")
    p.add_argument(
        "--profile",
        default="auto",
        type=profile_name,
        help="device profile for latency (auto: the shipped one for this CPU)",
    )
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--solves", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "reports" / "bench" / "ilp_solve.json"))
    return p.parse_args(argv)


def synthetic_sensitivity(params: Any, identity: dict[str, Any], seed: int) -> dict[str, dict[Any, float]]:
    """Loss ``factor * (grid distance from the identity / (grid size - 1))**2`` per value."""
    rng = random.Random(seed)
    out: dict[str, dict[Any, float]] = {}
    for p in params:
        grid = list(p.grid())
        at = grid.index(identity[p.name])
        factor = rng.uniform(0.01, 0.1)
        span = max(1, len(grid) - 1)
        out[p.name] = {v: factor * (abs(i - at) / span) ** 2 for i, v in enumerate(grid)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from automc import budget as budget_mod
    from automc import cost as cost_mod
    from automc import graph, models
    from automc.plan import CompressionPlan
    from automc.resources import find_space
    from automc.search.knapsack import CostTable, Knapsack
    from automc.space import SearchSpace

    net = models.create(args.model, num_classes=10, in_channels=3).eval()
    layers = tuple(graph.layers(net, torch.zeros(1, 3, args.input_size, args.input_size)))
    space_path = find_space(args.space)
    bound = SearchSpace.load(space_path).bind(layers, model=args.model)
    cost_model = cost_mod.CostModel(profile=cost_mod.load_profile(args.profile) if args.profile else None)
    base = dict(cost_model.estimate(layers, CompressionPlan(model=args.model)).total)
    cases = []
    for spec in [b for b in args.budgets.split(";") if b.strip()]:
        limits = budget_mod.resolve(budget_mod.parse_budgets(spec), base)
        t0 = time.perf_counter()
        table = CostTable(
            space=bound, report_fn=lambda plan: cost_model.estimate(layers, plan), metrics=sorted(limits)
        )
        table_s = time.perf_counter() - t0
        sens = synthetic_sensitivity(table.params, table.base, args.seed)
        case: dict[str, Any] = {"budget": spec, "limits": limits, "table_seconds": table_s}
        for label, reduce in (("full", False), ("reduced", True)):
            knapsack = Knapsack(table, reduce=reduce)
            objective = knapsack.x_vector(sens)
            asked: list[dict[str, Any]] = []
            seconds = []
            for _ in range(args.solves):
                t0 = time.perf_counter()
                values = knapsack.solve(objective, limits, asked)
                seconds.append(time.perf_counter() - t0)
                if values is None:
                    break
                asked.append(values)
            first = asked[0] if asked else None
            case[label] = {
                "variables": int(len(knapsack._columns(objective))),
                "solve_seconds": seconds,
                "first_loss": None
                if first is None
                else sum(sens[p.name][first[p.name]] for p in table.params),
                "first_costs": None if first is None else table.predict(first),
            }
            print(f"bench_ilp_solve: {spec} {label}: {[round(s, 2) for s in seconds]} s", file=sys.stderr)
        case["speedup_first_solve"] = case["full"]["solve_seconds"][0] / case["reduced"]["solve_seconds"][0]
        cases.append(case)
    report = {
        "schema": "automc/bench-ilp-solve",
        "version": 1,
        "command": shlex.join(
            ["python", "scripts/bench_ilp_solve.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "setup": {
            "model": args.model,
            "space": str(space_path.relative_to(ROOT) if space_path.is_relative_to(ROOT) else space_path),
            "params": len(bound.params),
            "input_size": args.input_size,
            "profile": args.profile or None,
            "threads": args.threads,
            "seed": args.seed,
            "sensitivity": "synthetic: U(0.01, 0.1) * (grid distance from identity / (grid size - 1))**2",
            "solver": "scipy.optimize.milp (HiGHS), mip_rel_gap=0",
        },
        "cases": cases,
        "host": {"python": sys.version.split()[0], "torch": torch.__version__},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
