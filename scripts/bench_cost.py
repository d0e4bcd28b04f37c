"""Fidelity of the latency predictor on held-out compressed networks, measured on this CPU.

For each model (default resnet20 and mobilenetv2, CIFAR input 1x3x32x32), two populations
of ``--n`` random fp32 compressed variants each (each plan factorises a share of its
conv/linear layers drawn from ``automc.hardware.RANK_SHARE``, 0-80%, at random ranks;
seeds disjoint from those the profile was fitted/validated on) are built with
``automc.compress.apply``, BatchNorm-folded and timed end to end:

* ``latency`` (population ``levels``): a network-wide keep level drawn from 0.25-1, each
  dependency group keeping ``level * U(1 - jitter, 1 + jitter)`` (``--level-jitter``,
  default 0.2). The variants spread from heavily to lightly compressed, as the points of a
  search's Pareto front do.
* ``latency_independent`` (population ``independent``): each group's keep ratio drawn on
  its own from 0.25-1, so the variants cluster in the middle of the MACs range (a narrow
  latency span: there, run-to-run noise caps any rank correlation).

Each population of one model, with a second copy of each network, is timed in one
interleaved run (threads pinned, warm-up, shuffled repeats: ``automc.hardware.
measure_variants``), taking the statistic the profile was measured with
(``measurement.statistic``: min or median of the samples). The first copy is compared
with ``automc.cost.latency.predict_latency`` from the device profile:

    n, within_10pct, rmspe, spearman (predicted vs measured),
    flops_spearman (MACs vs measured: the FLOPs-only baseline),
    measurement_self_spearman (first copy vs second copy: a yardstick for the timing noise),
    base_measured_ms / base_predicted_ms (the uncompressed model, timed in the same run:
        how fast this process runs against the profiling run),
    base_anchored_within_10pct / base_anchored_rmspe (the predictions scaled by
        base_measured / base_predicted: what is left once the process's speed is known)
    refit_loo_within_10pct / refit_loo_rmspe / refit_loo_spearman (the profile's table
        kept, its network terms refitted leave-one-out on this run's variants:
        ``automc.hardware.refit_loo_ms``; the error of the predictor's form alone, without
        the drift of the machine between the profiling process and this one)

It also times one prediction (``predict_us``) and merges in the estimator-vs-fvcore
speed figures of ``scripts/bench_cost_speed.py`` (``bench_speedup()``; with
``--reuse-speed`` the last ``reports/bench/cost_speed.json`` is read instead). The
machine's load average is recorded before and after: other processes share the CPU and
disturb both the profile and these measurements.

Run: ``python scripts/bench_cost.py`` (writes ``reports/bench/cost.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _speed_figures(reuse: bool) -> dict[str, Any] | None:
    path = ROOT / "scripts" / "bench_cost_speed.py"
    cached = ROOT / "reports" / "bench" / "cost_speed.json"
    if reuse and cached.is_file():
        return json.loads(cached.read_text())
    if path.is_file():
        spec = importlib.util.spec_from_file_location("bench_cost_speed", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, "bench_speedup"):
            return module.bench_speedup()
    if cached.is_file():
        return json.loads(cached.read_text())
    return None


def _predict_us(layers: Any, plans: list[Any], profile: Any) -> float:
    from automc.cost.latency import LatencyPredictor

    pred = LatencyPredictor(profile)
    for p in plans:
        pred.predict(layers, p)
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for p in plans:
            pred.predict(layers, p)
        samples.append((time.perf_counter() - t0) / len(plans) * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="hw_profiles/cpu-x86-2core-torch.yaml")
    ap.add_argument("--model", action="append", help="models to validate (default resnet20, mobilenetv2)")
    ap.add_argument("--n", type=int, default=30, help="held-out variants per model (default 30)")
    ap.add_argument("--seed", type=int, default=1000, help="variant seed; the profile uses 0 and 1")
    ap.add_argument(
        "--level-jitter",
        type=float,
        help="relative spread of group keep ratios around the network's level (population levels; "
        "default automc.hardware.LEVEL_JITTER, as the profile's own variants)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        help="samples per network (default: the profile's measurement.repeats; a minimum over "
        "more samples is lower, so measure as the profile did)",
    )
    ap.add_argument("--warmup", type=int, help="warm-up calls per network (default: the profile's)")
    ap.add_argument(
        "--reuse-speed", action="store_true", help="read reports/bench/cost_speed.json, do not re-run"
    )
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "cost.json"))
    args = ap.parse_args(argv)

    import torch

    from automc import compress, graph, models
    from automc.cost.latency import fidelity, predict_latency, spearman
    from automc.hardware import (
        LEVEL_JITTER,
        ProfileCase,
        TimingProtocol,
        measure_variants,
        random_plan,
        refit_loo_ms,
    )
    from automc.plan import CompressionPlan
    from automc.schema.hw_profile import resolve_profile

    profile = resolve_profile(args.profile)
    repeats = args.repeats or profile.measurement.repeats
    warmup = args.warmup if args.warmup is not None else profile.measurement.warmup
    threads = profile.runtime.threads
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    names = args.model or ["resnet20", "mobilenetv2"]
    populations: dict[str, dict[str, dict[str, float]]] = {"levels": {}, "independent": {}}
    predict_us: dict[str, float] = {}
    points: dict[str, dict[str, list[list[float]]]] = {"levels": {}, "independent": {}}
    jitter = LEVEL_JITTER if args.level_jitter is None else args.level_jitter
    rng = random.Random(args.seed)
    level_rng = random.Random(args.seed + 1)
    for name in names:
        model = models.create(name).eval()
        x = torch.randn(profile.runtime.batch, 3, 32, 32)
        case = ProfileCase(name=name, model=model, example_input=x, layers=tuple(graph.layers(model, x)))
        plans = {
            "levels": [
                random_plan(case.layers, level_rng, level_jitter=jitter, model=name) for _ in range(args.n)
            ],
            "independent": [random_plan(case.layers, rng, model=name) for _ in range(args.n)],
        }
        base_plan = CompressionPlan(model=name)
        base_predicted = predict_latency(case.layers, base_plan, profile).total_ms
        for pop, pop_plans in plans.items():
            # each population in its own interleaved run, as the profile timed ~40 networks at a time;
            # the uncompressed base model runs with them, to see how fast this process runs
            variants = measure_variants(
                [case],
                [pop_plans + pop_plans + [base_plan]],
                lambda m, p, x: compress.apply(m, p, x),
                TimingProtocol(
                    warmup=warmup, repeats=repeats, statistic=profile.measurement.statistic, seed=args.seed
                ),
                progress=True,
                desc=f"{name} ({pop})",
            )
            first, second, base_ms = (
                variants[: args.n],
                variants[args.n : 2 * args.n],
                variants[-1].measured_ms,
            )
            predicted = [predict_latency(case.layers, v.plan, profile).total_ms for v in first]
            measured = [v.measured_ms for v in first]
            figures = fidelity(predicted, measured, [float(v.macs) for v in first])
            figures["measurement_self_spearman"] = spearman(measured, [v.measured_ms for v in second])
            figures["base_measured_ms"] = base_ms
            figures["base_predicted_ms"] = base_predicted
            anchor = base_ms / base_predicted
            anchored = fidelity([p * anchor for p in predicted], measured)
            figures["base_anchored_within_10pct"] = anchored["within_10pct"]
            figures["base_anchored_rmspe"] = anchored["rmspe"]
            refit = fidelity(refit_loo_ms(case.layers, first, profile), measured)
            figures["refit_loo_within_10pct"] = refit["within_10pct"]
            figures["refit_loo_rmspe"] = refit["rmspe"]
            figures["refit_loo_spearman"] = refit["spearman"]
            figures["measured_ms_min"] = min(measured)
            figures["measured_ms_max"] = max(measured)
            row = {k: round(float(v), 4) for k, v in figures.items()}
            row["n"] = int(figures["n"])
            populations[pop][name] = row
            points[pop][name] = [
                [round(p, 4), round(m, 4), int(v.macs)] for p, m, v in zip(predicted, measured, first)
            ]
            print(f"{name} ({pop}): {json.dumps(row)}", file=sys.stderr)
        predict_us[name] = round(_predict_us(case.layers, plans["independent"], profile), 2)
        print(f"{name}: predict {predict_us[name]} us", file=sys.stderr)
    load_after = os.getloadavg()[0]
    result: dict[str, Any] = {
        "command": "python scripts/bench_cost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.date.today().isoformat(),
        "profile": args.profile,
        "torch_threads": threads,
        "batch": profile.runtime.batch,
        "seed": args.seed,
        "repeats": repeats,
        "statistic": profile.measurement.statistic,
        "load_average_1min_before": round(load_before, 2),
        "load_average_1min_after": round(load_after, 2),
        "wall_s": round(time.perf_counter() - started, 1),
        "level_jitter": jitter,
        "latency": populations["levels"],
        "latency_independent": populations["independent"],
        "predict_us": predict_us,
        "targets": {"within_10pct": 0.9, "rmspe": 0.10, "spearman": 0.95},
        "points_predicted_measured_macs": points,
    }
    speed = _speed_figures(args.reuse_speed)
    if speed is not None:
        result["estimator_speedup_vs_fvcore"] = speed.get("estimator_speedup_vs_fvcore")
        result["cost_speed"] = speed
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
