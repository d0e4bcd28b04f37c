"""Benchmark the search controllers at equal evaluation budgets and equal wall time -> reports/bench/search.json.

For one model/dataset (default resnet20 on the embedded digits data) and one MACs budget
(default 30% of the base model), every controller runs ``max(--evals)`` proxy
evaluations per seed; the first 50 (and 150, ...) trials of a run are exactly what a run
with that many trials would have produced, so each budget is read off the same run.
Per controller and budget it reports the median and IQR over seeds of:

* the hypervolume of the feasible (proxy accuracy, MACs) front and of the (proxy
  accuracy, latency) front (latency only with a device profile), with points normalised
  to ``(1 - acc, cost / base cost)`` and the fixed reference point ``(1, 1)``;
* the best proxy accuracy found within the MACs budget.

A controller spelled ``NAME+WARM`` (``optuna-tpe+ilp``, ``optuna-nsga2+ilp``, ``amc+ilp``,
``optuna-tpe+uniform``, ``optuna-tpe+uniform+ilp``) is warm-started that way
(:mod:`automc.search.warm_start`); a plain ``NAME`` runs without a warm start (``none``, not
the controller's default ``uniform``), as the committed JSONs were measured. The ``ilp`` solver first scores one probe
per value of every dimension with the proxy; those probes are not trials, so they are
reported as ``probes`` next to the trials, and their time is part of the run's wall
time. At equal wall time (``--wall-seconds``; default: the median run time of the first
``ilp`` or ``+ilp`` controller) each controller is judged on the trials it had finished
by then, the solver's probing included: the probes are scored once (they do not depend
on the seed) and their measured time, ``probe_seconds`` (one cost tabulation included), is
added to every ``ilp`` and ``+ilp`` run's clock. The plain ``ilp`` run is deterministic
(the seed changes nothing), so it runs once (n = 1). ``--solver-evals`` caps the plain ``ilp`` run (it
is deterministic and each ask is one MILP solve; the target compares it at a third of
random search's evaluations). ``--dataset fashion-mnist --train-subset 5000 --val-limit 500``
keeps the base model's training and the proxy's scoring small enough for two CPU cores.

A uniform-pruning baseline (every keep ratio on the space's grid, bits and ranks at
identity) is evaluated once; it has only as many distinct plans as grid values.
Every number in the JSON is measured in this run.

    .venv/bin/python scripts/bench_search.py --seeds 5 --evals 50,150 \
        --controllers random,optuna-tpe,optuna-nsga2,ilp,optuna-tpe+ilp,optuna-nsga2+ilp
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automc.schema.hw_profile import profile_name

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="digits", help="digits, fashion-mnist, ... (as automc search)")
    p.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="train the base model on a seeded random N of the train images (DataOptions.train_subset)",
    )
    p.add_argument("--space", default="joint", help="shipped space name or path")
    p.add_argument("--budget", default="flops=0.3")
    p.add_argument("--controllers", default="random,optuna-tpe,optuna-nsga2")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument(
        "--solver-evals",
        type=int,
        default=None,
        help="evaluations of the plain ilp controller (default: the largest --evals); budgets above it are not reported for it",
    )
    p.add_argument("--evals", default="50,150", help="comma list of evaluation budgets")
    p.add_argument(
        "--wall-seconds",
        default="",
        help="comma list of wall-time budgets in seconds (default: the first ilp controller's median run time)",
    )
    p.add_argument(
        "--profile",
        default="auto",
        type=profile_name,
        help="device profile for latency (auto: the shipped one for this CPU; '' = none)",
    )
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


def _stopwatch(finished: list[float], t0: float) -> Any:
    """An ``on_result`` callback appending each trial's finish time (seconds since ``t0``)."""
    return lambda *_: finished.append(time.perf_counter() - t0)


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
    from automc.search.solver import SENSITIVITY_ATTR, IlpController
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
        train_subset=args.train_subset,
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

    figure_keys = ("hv_acc_macs", "hv_acc_latency", "best_acc_within_macs_budget", "feasible")
    results: dict[str, Any] = {}
    solver_specs = [c for c in controllers if c == "ilp" or c.endswith("+ilp")]
    probe_cache: Any = None
    probe_s = 0.0
    if solver_specs:
        probe_recorder = Recorder(None, "ilp-probes", objectives, {"model": args.model, "controller": "ilp"})
        solver = IlpController(
            space=bound,
            objectives=objectives,
            recorder=probe_recorder,
            budgets=limits,
            cost_fn=cost_fn,
        )
        t0 = time.perf_counter()
        solver.prepare(evaluator)
        probe_s = time.perf_counter() - t0
        probe_cache = probe_recorder.study.user_attrs[SENSITIVITY_ATTR]
    runs: dict[str, list[tuple[list[dict[str, Any]], list[float]]]] = {}
    for spec in controllers:
        name, _, warm = spec.partition("+")
        cap = args.solver_evals if spec == "ilp" and args.solver_evals is not None else max(evals)
        budgets = [n for n in evals if n <= cap] or [cap]
        per_budget: dict[int, list[dict[str, Any]]] = {n: [] for n in budgets}
        seconds, probes = [], []
        runs[spec] = []
        charged = probe_s if spec in solver_specs else 0.0
        for seed in range(1 if spec == "ilp" else args.seeds):
            meta = {"model": args.model, "space": str(space_path), "controller": spec, "seed": seed}
            recorder = Recorder(None, f"{spec}-s{seed}", objectives, meta)
            if charged:
                recorder.set_study_attr(SENSITIVITY_ATTR, probe_cache)
            ctrl = registry.create(
                name,
                space=bound,
                objectives=objectives,
                recorder=recorder,
                seed=seed,
                budgets=limits,
                cost_fn=cost_fn,
                **(
                    {"warm_start": warm or "none"}
                    if "warm_start" in registry.get_factory(name).OPTIONS
                    else {}
                ),
            )
            finished: list[float] = []
            t0 = time.perf_counter()
            ctrl.drive(evaluator, cap, on_result=_stopwatch(finished, t0))
            seconds.append(time.perf_counter() - t0 + charged)
            finished = [t + charged for t in finished]
            probes.append(len(recorder.study.user_attrs.get(SENSITIVITY_ATTR, {}).get("scores", {})))
            rows = rows_of(recorder)
            runs[spec].append((rows, finished))
            for n in budgets:
                per_budget[n].append(front_figures(rows[:n], base_fig, limits))
            print(f"bench_search: {spec} seed {seed}: {seconds[-1]:.0f}s", file=sys.stderr)
        results[spec] = {
            str(n): {
                key: summarise([f[key] for f in per_budget[n] if f[key] is not None]) for key in figure_keys
            }
            for n in budgets
        }
        results[spec]["seconds_per_run"] = summarise(seconds)
        results[spec]["probes"] = summarise([float(p) for p in probes])
    walls = [float(x) for x in args.wall_seconds.split(",") if x.strip()]
    if not walls and solver_specs:
        walls = [float(results[solver_specs[0]]["seconds_per_run"]["median"])]
    for spec, seed_runs in runs.items():
        at_wall = {}
        for wall in walls:
            figures = [
                front_figures([r for r, t in zip(rows, finished) if t <= wall], base_fig, limits)
                for rows, finished in seed_runs
            ]
            at_wall[f"{wall:.1f}s"] = {
                key: summarise([f[key] for f in figures if f[key] is not None]) for key in figure_keys
            }
        results[spec]["equal_wall_time"] = at_wall

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
        "command": shlex.join(
            ["python", "scripts/bench_search.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "setup": {
            "model": args.model,
            "dataset": args.dataset,
            "train_subset": args.train_subset,
            "space": str(space_path.relative_to(ROOT) if space_path.is_relative_to(ROOT) else space_path),
            "params": len(bound.params),
            "budget": args.budget,
            "limits": limits,
            "objectives": [o.name for o in objectives],
            "seeds": args.seeds,
            "evals": evals,
            "solver_evals": args.solver_evals,
            "probe_seconds": probe_s,
            "wall_seconds": walls,
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
