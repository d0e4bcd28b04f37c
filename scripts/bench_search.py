"""Benchmark the search controllers at equal evaluation budgets -> reports/bench/search.json.

For one model/dataset (default resnet20 on the embedded digits data) and one MACs budget
(default 30% of the base model), every controller runs ``max(--evals)`` proxy
evaluations per seed; the first 50 (and 150, ...) trials of a run are exactly what a run
with that many trials would have produced, so each budget is read off the same run.
Per controller and budget it reports the median and IQR over seeds of:

* the hypervolume of the feasible (proxy accuracy, MACs) front and of the (proxy
  accuracy, latency) front (latency only with a device profile), with points normalised
  to ``(1 - acc, cost / base cost)`` and the fixed reference point ``(1, 1)``;
* the best proxy accuracy found within the MACs budget.

A uniform-pruning baseline (every keep ratio on the space's grid, bits and ranks at
identity) is evaluated once; it has only as many distinct plans as grid values.
Every number in the JSON is measured in this run.

    .venv/bin/python scripts/bench_search.py --seeds 5 --evals 50,150
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--space", default="joint", help="shipped space name or path")
    p.add_argument("--budget", default="flops=0.3")
    p.add_argument("--controllers", default="random,optuna-tpe,optuna-nsga2")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--evals", default="50,150", help="comma list of evaluation budgets")
    p.add_argument("--profile", default="cpu-x86-2core", help="device profile for latency ('' = none)")
    p.add_argument(
        "--base-epochs", type=int, default=None, help="base-model training epochs (default: recipe)"
    )
    p.add_argument("--calib-batches", type=int, default=4)
    p.add_argument(
        "--proxy",
        default="adaptive_bn",
        help="search proxy (adaptive_bn or short_train; default adaptive_bn, what search.json was measured with)",
    )
    p.add_argument("--val-limit", type=int, default=None, help="held-out samples used by the proxy")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "reports" / "bench" / "search.json"))
    return p.parse_args(argv)


def summarise(xs: list[float]) -> dict[str, float | int | None]:
    """Median and interquartile range (inclusive quartiles) of ``xs``."""
    if not xs:
        return {"median": None, "iqr": None, "n": 0}
    if len(xs) == 1:
        return {"median": xs[0], "iqr": 0.0, "n": 1}
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return {"median": statistics.median(xs), "iqr": q[2] - q[0], "n": len(xs)}


def front_figures(
    rows: list[dict[str, Any]], base: Mapping[str, float], limits: Mapping[str, float]
) -> dict[str, Any]:
    """Hypervolumes and best accuracy of the feasible complete trials in ``rows``."""
    import numpy as np

    from automc.pareto import hypervolume

    ok = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r["acc"] is not None]
    out: dict[str, Any] = {"evaluations": len(rows), "feasible": len(ok)}
    for metric, key in (("macs", "hv_acc_macs"), ("latency_ms", "hv_acc_latency")):
        if metric not in base:
            out[key] = None
            continue
        pts = [[1.0 - r["acc"], r[metric] / base[metric]] for r in ok if r.get(metric) is not None]
        out[key] = hypervolume(np.asarray(pts, dtype=float), [1.0, 1.0]) if pts else 0.0
    within = [r["acc"] for r in ok if r["macs"] <= limits["macs"] * (1 + 1e-9)]
    out["best_acc_within_macs_budget"] = max(within) if within else None
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from automc import budget as budget_mod
    from automc import cost as cost_mod
    from automc.config import SearchConfig
    from automc.pipeline import prepare
    from automc.plan import CompressionPlan
    from automc.resources import find_space
    from automc.search import Candidate, Recorder, registry
    from automc.space import SearchSpace

    evals = sorted({int(x) for x in args.evals.split(",")})
    controllers = [c.strip() for c in args.controllers.split(",") if c.strip()]
    t_start = time.perf_counter()
    space_path = find_space(args.space)
    profile = None
    if args.profile:
        try:
            profile = cost_mod.load_profile(args.profile)
        except Exception as e:  # noqa: BLE001 - the bench still measures the MACs front without latency
            print(f"bench_search: no latency front ({e})", file=sys.stderr)
    config = SearchConfig().with_overrides(
        model=args.model,
        dataset=args.dataset,
        base_epochs=args.base_epochs,
        calib_batches=args.calib_batches,
        batch_size=64,
        proxy=args.proxy,
        progress=False,
    )
    setup = prepare(
        config,
        space=SearchSpace.load(space_path),
        budgets=budget_mod.parse_budgets(args.budget),
        profile=profile,
        val_limit=args.val_limit,
    )
    base, base_info, bound, limits, proxy = (
        setup.base,
        setup.base_info,
        setup.bound,
        setup.limits,
        setup.proxy,
    )
    base_cost, cost_fn = setup.base_cost, setup.cost_fn
    names = ["acc", "macs"] + (["latency"] if "latency_ms" in base_cost else [])
    objectives = budget_mod.parse_objectives(",".join(names))
    evaluator = setup.evaluator(objectives, seed=0)
    base_metrics = dict(proxy.evaluate(copy.deepcopy(base), CompressionPlan(model=args.model)))
    base_fig = {k: float(v) for k, v in base_cost.items() if k in ("macs", "latency_ms")}
    setup_s = time.perf_counter() - t_start

    def rows_of(recorder: Recorder) -> list[dict[str, Any]]:
        out = []
        for r in recorder.trials():
            out.append(
                {
                    "state": r.state,
                    "feasible": r.feasible,
                    "acc": r.values.get("acc"),
                    "macs": r.cost.get("macs"),
                    "latency_ms": r.cost.get("latency_ms"),
                }
            )
        return out

    results: dict[str, Any] = {}
    for name in controllers:
        per_budget: dict[int, list[dict[str, Any]]] = {n: [] for n in evals}
        seconds = []
        for seed in range(args.seeds):
            meta = {"model": args.model, "space": str(space_path), "controller": name, "seed": seed}
            recorder = Recorder(None, f"{name}-s{seed}", objectives, meta)
            ctrl = registry.create(
                name,
                space=bound,
                objectives=objectives,
                recorder=recorder,
                seed=seed,
                budgets=limits,
                cost_fn=cost_fn,
            )
            t0 = time.perf_counter()
            ctrl.drive(evaluator, max(evals))
            seconds.append(time.perf_counter() - t0)
            rows = rows_of(recorder)
            for n in evals:
                per_budget[n].append(front_figures(rows[:n], base_fig, limits))
            print(f"bench_search: {name} seed {seed}: {seconds[-1]:.0f}s", file=sys.stderr)
        results[name] = {
            str(n): {
                key: summarise([f[key] for f in per_budget[n] if f[key] is not None])
                for key in ("hv_acc_macs", "hv_acc_latency", "best_acc_within_macs_budget", "feasible")
            }
            for n in evals
        }
        results[name]["seconds_per_run"] = summarise(seconds)

    recorder = Recorder(None, "uniform", objectives, {"model": args.model, "controller": "uniform"})
    recorder.attach_space(bound)
    keep_params = [p for p in bound.params if p.field == "keep"]
    grid = keep_params[0].grid() if keep_params else (1.0,)
    t0 = time.perf_counter()
    for i, keep in enumerate(grid):
        values = bound.uniform_values(float(keep))
        candidate = Candidate(id=f"uniform-{i}", values=values, plan=bound.to_plan(values))
        try:
            result, reason = evaluator(candidate), ""
        except Exception as e:  # noqa: BLE001 - a failed plan is recorded as failed, as in a search
            result, reason = None, f"{e.__class__.__name__}: {e}"
        recorder.add(candidate, result, reason)
    uniform = front_figures(rows_of(recorder), base_fig, limits)
    uniform["keep_grid"] = [float(k) for k in grid]
    uniform["seconds"] = time.perf_counter() - t0

    report = {
        "schema": "automc/bench-search",
        "version": 1,
        "setup": {
            "model": args.model,
            "dataset": args.dataset,
            "space": str(space_path.relative_to(ROOT) if space_path.is_relative_to(ROOT) else space_path),
            "params": len(bound.params),
            "budget": args.budget,
            "limits": limits,
            "objectives": [o.name for o in objectives],
            "seeds": args.seeds,
            "evals": evals,
            "profile": args.profile if profile is not None else None,
            "threads": args.threads,
            "calib_batches": args.calib_batches,
            "proxy": args.proxy,
            "base_epochs": args.base_epochs,
            "val_limit": args.val_limit,
            "base": {**base_fig, "proxy_acc": base_metrics.get("acc"), "test_acc": base_info.get("test_acc")},
            "hv_normalisation": "points (1 - proxy acc, cost / base cost) of feasible trials; reference point (1, 1)",
            "setup_seconds": setup_s,
        },
        "controllers": results,
        "uniform_pruning": uniform,
        "total_seconds": time.perf_counter() - t_start,
        "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("controllers", "uniform_pruning")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
