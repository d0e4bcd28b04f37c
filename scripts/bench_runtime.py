"""What the deployment runtime buys, and how well the ONNX Runtime profile predicts it, on this CPU.

Every figure is measured inside this one run (batch 1, ``--threads`` intra-op threads):

* ``speedup``: per model (default resnet20 and mobilenetv2, random weights, CIFAR input
  1x3x32x32), torch eager (BatchNorm folded), ONNX Runtime fp32 and ONNX Runtime int8 (every
  conv/linear layer int8, QDQ static quantization) are timed one after another (an idle ONNX
  Runtime session's worker threads spin, so sessions are not interleaved);
  ``ort_fp32_vs_torch`` = torch ms / ORT fp32 ms and ``ort_int8_vs_fp32`` = ORT fp32 ms /
  ORT int8 ms (both > 1 mean the second is faster).
* ``fidelity``: ``--n`` held-out random variants per model that mix pruning, low rank and
  int8/fp32 layers (``automc.hardware.random_plan`` with ``int8_share``; seeds disjoint
  from the profile's), exported through ONNX Runtime and timed interleaved with the
  profile's repeats, warm-up and statistic. Against the profile's predictions:
  ``within_10pct``, ``rmspe``, ``spearman``; the baselines on the same networks:
  ``macs_spearman`` (MACs only) and ``bitops_spearman`` (sum of MACs x w_bits x a_bits).
  ``overall`` pools both models (its Spearman is the worse model's, as a profile's is).
  What a miss is made of, per model: every variant is timed twice in the run
  (``measurement_self_spearman`` and ``measurement_self_within_10pct``: the second copy as a
  predictor of the first, the timing noise's bound on any predictor's Spearman and share within
  ±10%), and ``refit_loo_*`` refits the profile's network terms leave-one-out
  on the first copy's own timings (``automc.hardware.refit_loo_ms``, the table kept): the
  error of the model's form alone, without the machine's drift since profiling.
  ``relative_within_10pct`` / ``relative_rmspe``: the same on each variant's latency as a
  fraction of the unpruned base model's, timed in the same interleaved run (measured) and
  predicted by the profile (predicted), as a budget given as a fraction of the base's latency
  (``latency=0.5``) is priced; ``base_predicted_over_measured``: how far the machine's speed
  has moved since profiling, which the fraction cancels.
  ``cross_process_*``: the base and the variants (the same plans of the same architecture, with
  the fresh process's own random weights, which the kernels' speed does not depend on) timed again
  in a fresh Python process started after this one's timings (``--retime``), as a predictor of
  this process's timings:
  ``within_10pct``, ``rmspe``, ``spearman``; ``common_scale`` (median ratio of the two
  processes' timings) and ``within_10pct_after_scale`` (that ratio divided out); and
  ``relative_within_10pct`` (each process's timings as fractions of its own base). A profile
  is timed in another process than the networks it predicts, so these bound what any profile
  can reach on this machine at that moment: the drift between processes, which a timing
  repeated inside one run (``measurement_self_*``) does not see.
  ``boundaries_mean``: int8/float precision boundaries per variant (``LatencyEstimate.boundaries``);
  ``off_layout_mean``: layers per variant off the runtime's blocked channel layout
  (``LatencyEstimate.off_layout``; ONNX Runtime CPU's NCHWc, ``channel_block`` in the profile).
  ``aligned_overall`` / ``aligned_per_model``: the same for ``--n`` further variants per model
  drawn alike but with every channel count and rank on the profile's blocked layout
  (``random_plan`` with ``channel_block``): the networks a search with a latency budget
  explores (``SearchSpace.bind``), timed in the same interleaved run.
* ``keep_sweep``: per model, the ``prune`` space's uniform plans (one keep ratio for every
  group, 1.0 down to 0.25 in its 0.05 steps, fp32) timed interleaved with the base model:
  measured and predicted latency as a fraction of the base's, how many run slower than the
  unpruned base (measured, predicted), and the Spearman of prediction against measurement
  along the sweep. Channel counts that do not fit the blocked layout run a generic kernel,
  so latency is not monotone in the keep ratio on this runtime. ``int8``: the same plans
  with every layer at 8-bit weights and activations, timed in the same interleaved run:
  their points, Spearman, and at how many keep ratios int8 runs faster than fp32, measured
  and predicted, and how often the profile calls that right (``int8_pays_agree``): the
  choice a latency budget asks the search to make.

* ``compared_profiles``: with ``--compare-profile NAME`` (repeatable), each other profile's
  ``within_10pct``, ``rmspe``, ``spearman``, ``relative_within_10pct`` and
  ``base_predicted_over_measured`` per model on the same held-out variants, timed once in this
  run: e.g. a profile measured on another CPU with the same instruction sets against this CPU's.

The machine's 1-minute load average is recorded before and after: other processes share
the CPU and slow some periods down.

Run: ``python scripts/bench_runtime.py`` (writes ``reports/bench/runtime.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from automc.schema.hw_profile import profile_name

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"within_10pct": 0.9, "spearman": 0.95}


def _bitops(layers: Any, plan: Any) -> float:
    from automc.cost.flops import layer_geometry

    keep = plan.group_keep(layers)
    total = 0.0
    for spec in layers:
        choice = plan.choice(spec.name)
        total += layer_geometry(spec, choice, keep).macs * choice.w_bits * choice.a_bits
    return total


def _speedups(case: Any, runtime: Any, threads: int, repeats: int) -> dict[str, float]:
    """torch eager, ORT fp32 and ORT all-int8 of ``case``'s base model, timed one after another."""
    import functools

    from automc.hardware.runtimes import int8_layers
    from automc.hardware.timing import TimingProtocol, fold_bn, pinned_threads, time_callables
    from automc.plan import CompressionPlan, LayerChoice

    x = case.example_input
    all_int8 = CompressionPlan(layers={s.name: LayerChoice(w_bits=8, a_bits=8) for s in case.layers})
    with tempfile.TemporaryDirectory() as tmp, pinned_threads(threads):
        fp32 = runtime.export(case.model, x, Path(tmp) / "fp32.onnx")
        int8 = runtime.export(
            case.model, x, Path(tmp) / "int8.onnx", int8_layers=int8_layers(all_int8), calib=[x]
        )
        folded = fold_bn(case.model)
        xn = x.numpy()
        fns: list[Callable[[], Any]] = [
            functools.partial(folded, x),
            functools.partial(runtime.session(fp32, threads=threads), xn),
            functools.partial(runtime.session(int8, threads=threads), xn),
        ]
        # one at a time: an idle ONNX Runtime session's worker threads spin
        torch_t, fp32_t, int8_t = (
            time_callables([fn], TimingProtocol(warmup=10, repeats=repeats, sample_ms=2.0))[0] for fn in fns
        )
    return {
        "torch_eager_ms": round(torch_t.min_ms, 4),
        "ort_fp32_ms": round(fp32_t.min_ms, 4),
        "ort_int8_ms": round(int8_t.min_ms, 4),
        "ort_fp32_vs_torch": round(torch_t.min_ms / fp32_t.min_ms, 3),
        "ort_int8_vs_fp32": round(fp32_t.min_ms / int8_t.min_ms, 3),
        "ort_fp32_vs_torch_median": round(torch_t.median_ms / fp32_t.median_ms, 3),
        "ort_int8_vs_fp32_median": round(fp32_t.median_ms / int8_t.median_ms, 3),
    }


def _timed(
    case: Any, plans: list[Any], profile: Any, runtime: Any, threads: int, repeats: int, seed: int, what: str
) -> list[Any]:
    """``plans`` of ``case`` exported through ``runtime`` and timed in one interleaved run with the
    profile's warm-up and statistic."""
    from automc import compress
    from automc.hardware import TimingProtocol, measure_variants

    return measure_variants(
        [case],
        [plans],
        lambda m, p, x: compress.apply(m, p, x),
        TimingProtocol(
            warmup=profile.measurement.warmup,
            repeats=repeats,
            statistic=profile.measurement.statistic,
            threads=threads,
            seed=seed,
        ),
        runtime=runtime,
        progress=True,
        desc=f"{case.name} {what}",
    )


def _retime_in_fresh_process(
    name: str, plans: list[Any], args: argparse.Namespace, repeats: int
) -> list[float]:
    """``plans`` of model ``name`` timed by this script run again as ``--retime`` in a fresh
    Python process (see the module docstring); the latencies in order."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="automc-retime-") as tmp:
        request, answer = Path(tmp) / "plans.json", Path(tmp) / "ms.json"
        request.write_text(json.dumps({"model": name, "plans": [p.to_dict() for p in plans]}))
        script = str(Path(__file__).resolve())
        cmd = [sys.executable, script, "--profile", args.profile, "--seed", str(args.seed)]
        cmd += ["--repeats", str(repeats), "--retime", str(request), "--out", str(answer)]
        subprocess.run(cmd, check=True)
        return [float(v) for v in json.loads(answer.read_text())]


def _retime(args: argparse.Namespace) -> int:
    """``--retime``: time the plans of ``args.retime`` as the main run does; write their latencies."""
    import torch

    from automc.hardware.runtimes import get
    from automc.plan import CompressionPlan
    from automc.schema.hw_profile import resolve_profile

    request = json.loads(Path(args.retime).read_text())
    profile = resolve_profile(args.profile)
    case = _case(request["model"], profile.runtime.batch, torch)
    plans = [CompressionPlan.from_dict(d) for d in request["plans"]]
    runtime = get(profile.runtime.framework)
    repeats = args.repeats or profile.measurement.repeats
    timed = _timed(
        case, plans, profile, runtime, profile.runtime.threads, repeats, args.seed, "fresh process"
    )
    Path(args.out).write_text(json.dumps([v.measured_ms for v in timed]))
    return 0


def _case(name: str, batch: int, torch: Any) -> Any:
    """The profiled case of model ``name`` (random weights, CIFAR input at ``batch``)."""
    from automc import graph, models
    from automc.hardware import ProfileCase

    model = models.create(name).eval()
    x = torch.randn(batch, 3, 32, 32)
    return ProfileCase(name=name, model=model, example_input=x, layers=tuple(graph.layers(model, x)))


def _cross_process(first: list[float], elsewhere: list[float]) -> dict[str, float]:
    """Timings of a fresh process (``elsewhere``, base first) as a predictor of this one's (``first``)."""
    import statistics

    from automc.cost.latency import fidelity

    row = fidelity(elsewhere[1:], first[1:])
    scale = statistics.median(a / b for a, b in zip(elsewhere[1:], first[1:]))
    rescaled = fidelity([a / scale for a in elsewhere[1:]], first[1:])
    relative = fidelity([a / elsewhere[0] for a in elsewhere[1:]], [b / first[0] for b in first[1:]])
    return {
        "cross_process_within_10pct": row["within_10pct"],
        "cross_process_rmspe": row["rmspe"],
        "cross_process_spearman": row["spearman"],
        "cross_process_common_scale": scale,
        "cross_process_within_10pct_after_scale": rescaled["within_10pct"],
        "cross_process_relative_within_10pct": relative["within_10pct"],
    }


def _fidelity_row(
    case: Any, variants: list[Any], again: list[Any], base: Any, profile: Any
) -> tuple[dict[str, float], list[float]]:
    """The profile's fidelity on ``variants`` (see the module docstring) and its predictions;
    ``again``: the same networks timed a second time in the run; ``base``: the unpruned
    network timed in the same run."""
    from automc.cost.latency import fidelity, predict_latency, spearman
    from automc.hardware import refit_loo_ms

    estimates = [predict_latency(case.layers, v.plan, profile) for v in variants]
    predicted = [e.total_ms for e in estimates]
    measured = [v.measured_ms for v in variants]
    row = _against_measured(case, predicted, measured, base, profile)
    self_agreement = fidelity([v.measured_ms for v in again], measured)
    row["measurement_self_spearman"] = self_agreement["spearman"]
    row["measurement_self_within_10pct"] = self_agreement["within_10pct"]
    refit = fidelity(refit_loo_ms(case.layers, variants, profile), measured)
    row["refit_loo_within_10pct"] = refit["within_10pct"]
    row["refit_loo_rmspe"] = refit["rmspe"]
    row["refit_loo_spearman"] = refit["spearman"]
    row["boundaries_mean"] = sum(e.boundaries for e in estimates) / len(estimates)
    row["off_layout_mean"] = sum(e.off_layout for e in estimates) / len(estimates)
    row["macs_spearman"] = spearman([float(v.macs) for v in variants], measured)
    row["bitops_spearman"] = spearman([_bitops(case.layers, v.plan) for v in variants], measured)
    row["int8_layer_share_mean"] = sum(
        sum(v.plan.choice(s.name).w_bits == 8 for s in case.layers) / len(case.layers) for v in variants
    ) / len(variants)
    return {k: (int(v) if k == "n" else round(float(v), 4)) for k, v in row.items()}, predicted


def _against_measured(
    case: Any, predicted: list[float], measured: list[float], base: Any, profile: Any
) -> dict[str, float]:
    """``fidelity`` of ``predicted`` against ``measured``, and the same on each as a fraction of
    the ``base`` timed in the same run (``relative_*``, ``base_predicted_over_measured``)."""
    from automc.cost.latency import fidelity, predict_latency
    from automc.plan import CompressionPlan

    row = fidelity(predicted, measured)
    base_ms = predict_latency(case.layers, CompressionPlan(), profile).total_ms
    relative = fidelity([p / base_ms for p in predicted], [m / base.measured_ms for m in measured])
    row["relative_within_10pct"] = relative["within_10pct"]
    row["relative_rmspe"] = relative["rmspe"]
    row["base_predicted_over_measured"] = base_ms / base.measured_ms
    return row


def _compared_row(case: Any, variants: list[Any], base: Any, profile: Any) -> dict[str, float]:
    """Another profile's fidelity on ``variants`` and their ``base``, all timed in this run."""
    from automc.cost.latency import predict_latency

    predicted = [predict_latency(case.layers, v.plan, profile).total_ms for v in variants]
    row = _against_measured(case, predicted, [v.measured_ms for v in variants], base, profile)
    keys = ("within_10pct", "rmspe", "spearman", "relative_within_10pct", "base_predicted_over_measured")
    return {k: round(float(row[k]), 4) for k in keys}


def _keep_sweep(
    case: Any, profile: Any, runtime: Any, threads: int, repeats: int, seed: int
) -> dict[str, Any]:
    """The ``prune`` space's uniform plans at fp32 and int8, timed interleaved with the base
    (see the module docstring)."""
    from dataclasses import replace

    from automc.cost.latency import predict_latency, spearman
    from automc.space import SearchSpace

    bound = SearchSpace.load(ROOT / "search_spaces" / "prune.yaml").bind(list(case.layers), model=case.name)
    grid = sorted({v for p in bound.params if p.field == "keep" for v in p.grid() if v >= 0.25}, reverse=True)
    fp32 = [bound.to_plan(bound.uniform_values(k)) for k in grid]
    int8 = [
        p.with_layers({s.name: replace(p.choice(s.name), w_bits=8, a_bits=8) for s in case.layers})
        for p in fp32
    ]
    timed = _timed(case, fp32 + int8, profile, runtime, threads, repeats, seed, "keep sweep")
    measured = [v.measured_ms / timed[0].measured_ms for v in timed]
    estimates = [predict_latency(case.layers, p, profile) for p in fp32 + int8]
    predicted = [e.total_ms / estimates[0].total_ms for e in estimates]
    n = len(grid)

    def points(lo: int) -> list[dict[str, Any]]:
        return [
            {"keep": k, "measured": round(m, 4), "predicted": round(p, 4), "off_layout": e.off_layout}
            for k, m, p, e in zip(grid, measured[lo:], predicted[lo:], estimates[lo:])
        ]

    pays_measured = [measured[n + i] < measured[i] for i in range(n)]
    pays_predicted = [predicted[n + i] < predicted[i] for i in range(n)]
    return {
        "slower_than_base_measured": sum(m > 1.0 for m in measured[1:n]),
        "slower_than_base_predicted": sum(p > 1.0 for p in predicted[1:n]),
        "spearman": round(spearman(predicted[:n], measured[:n]), 4),
        "points": points(0),
        "int8": {
            "spearman": round(spearman(predicted[n:], measured[n:]), 4),
            "int8_pays_measured": sum(pays_measured),
            "int8_pays_predicted": sum(pays_predicted),
            "int8_pays_agree": sum(a == b for a, b in zip(pays_measured, pays_predicted)),
            "points": points(n),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--profile",
        default="auto",
        type=profile_name,
        help="device profile (auto: the shipped one for this CPU)",
    )
    ap.add_argument("--model", action="append", help="models (default resnet20, mobilenetv2)")
    ap.add_argument("--n", type=int, default=30, help="held-out variants per model (default 30)")
    ap.add_argument("--seed", type=int, default=1000, help="variant seed; the profile uses 0 and 1")
    ap.add_argument("--repeats", type=int, help="samples per network (default: the profile's repeats)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "runtime.json"))
    ap.add_argument(
        "--compare-profile",
        action="append",
        default=[],
        type=profile_name,
        help="another profile to score on the same timed variants (repeatable)",
    )
    ap.add_argument(
        "--retime",
        metavar="PLANS_JSON",
        help="only time the plans in this file, write their latencies to --out",
    )
    args = ap.parse_args(argv)
    if args.retime:
        return _retime(args)

    import torch

    from automc.cost.latency import fidelity
    from automc.hardware import LEVEL_JITTER, random_plan
    from automc.hardware.runtimes import get
    from automc.hardware.variants import INT8_SHARE
    from automc.plan import CompressionPlan
    from automc.schema.hw_profile import resolve_profile

    profile = resolve_profile(args.profile)
    compared = {name: resolve_profile(name) for name in args.compare_profile}
    runtime = get(profile.runtime.framework)
    threads = profile.runtime.threads
    repeats = args.repeats or profile.measurement.repeats
    torch.manual_seed(args.seed)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    rng = random.Random(args.seed)
    speedup: dict[str, dict[str, float]] = {}
    per_model: dict[str, dict[str, float]] = {}
    points: dict[str, list[list[float]]] = {}
    sweeps: dict[str, dict[str, Any]] = {}
    aligned: dict[str, dict[str, float]] = {}
    compared_rows: dict[str, dict[str, dict[str, float]]] = {name: {} for name in compared}
    pooled_aligned: tuple[list[float], list[float]] = ([], [])
    pred_all: list[float] = []
    meas_all: list[float] = []
    for name in args.model or ["resnet20", "mobilenetv2"]:
        case = _case(name, profile.runtime.batch, torch)
        speedup[name] = _speedups(case, runtime, threads, repeats)
        print(f"{name}: {json.dumps(speedup[name])}", file=sys.stderr)
        block = profile.runtime.channel_block
        plans = {
            kind: [
                random_plan(
                    case.layers,
                    rng,
                    level_jitter=LEVEL_JITTER if i % 2 else None,
                    model=name,
                    int8_share=INT8_SHARE,
                    channel_block=block if kind == "aligned" else 0,
                )
                for i in range(args.n)
            ]
            for kind in (("any", "aligned") if block > 1 else ("any",))
        }
        networks = [p for kind in plans for p in plans[kind]]
        base, *timed = _timed(
            case,
            [CompressionPlan(), *networks, *networks],
            profile,
            runtime,
            threads,
            repeats,
            args.seed,
            "variants",
        )
        for k, kind in enumerate(plans):
            first = timed[k * args.n : (k + 1) * args.n]
            again = timed[len(networks) + k * args.n : len(networks) + (k + 1) * args.n]
            row, predicted = _fidelity_row(case, first, again, base, profile)
            if kind == "aligned":
                aligned[name] = row
                pooled_aligned[0].extend(predicted)
                pooled_aligned[1].extend(v.measured_ms for v in first)
                continue
            measured = [v.measured_ms for v in first]
            elsewhere = _retime_in_fresh_process(name, [CompressionPlan(), *plans[kind]], args, repeats)
            row.update(
                {k: round(v, 4) for k, v in _cross_process([base.measured_ms, *measured], elsewhere).items()}
            )
            per_model[name] = row
            for other, other_profile in compared.items():
                compared_rows[other][name] = _compared_row(case, first, base, other_profile)
            points[name] = [
                [round(p, 4), round(m, 4), int(v.macs)] for p, m, v in zip(predicted, measured, first)
            ]
            pred_all += predicted
            meas_all += measured
        print(f"{name}: {json.dumps(per_model[name])}", file=sys.stderr)
        if name in aligned:
            print(f"{name} aligned: {json.dumps(aligned[name])}", file=sys.stderr)
        sweeps[name] = _keep_sweep(case, profile, runtime, threads, repeats, args.seed)
        print(
            f"{name} keep sweep: {json.dumps({k: v for k, v in sweeps[name].items() if k != 'points'})}",
            file=sys.stderr,
        )

    def pooled_row(predicted: list[float], measured: list[float], rows: Any) -> dict[str, Any]:
        pooled = fidelity(predicted, measured)
        rows = list(rows)
        shares = [k for k in ("relative_within_10pct", "cross_process_within_10pct") if k in rows[0]]
        return {
            "n": int(pooled["n"]),
            "within_10pct": round(pooled["within_10pct"], 4),
            "rmspe": round(pooled["rmspe"], 4),
            "spearman": min(r["spearman"] for r in rows),
            "macs_spearman": min(r["macs_spearman"] for r in rows),
            "bitops_spearman": min(r["bitops_spearman"] for r in rows),
            **{k: round(sum(r[k] * r["n"] for r in rows) / sum(r["n"] for r in rows), 4) for k in shares},
        }

    overall = pooled_row(pred_all, meas_all, per_model.values())
    aligned_overall = pooled_row(*pooled_aligned, aligned.values()) if aligned else {}
    met = {
        "within_10pct": overall["within_10pct"] >= TARGETS["within_10pct"],
        "spearman": overall["spearman"] >= TARGETS["spearman"],
        "spearman_above_baselines": all(
            r["spearman"] > max(r["macs_spearman"], r["bitops_spearman"]) for r in per_model.values()
        ),
    }
    result: dict[str, Any] = {
        "command": "python scripts/bench_runtime.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.date.today().isoformat(),
        "profile": args.profile,
        "runtime": {
            "name": runtime.name,
            "version": runtime.version,
            "provider": runtime.provider,
            "graph_optimization": runtime.graph_optimization,
            "torch": torch.__version__,
        },
        "threads": threads,
        "batch": profile.runtime.batch,
        "seed": args.seed,
        "repeats": repeats,
        "statistic": profile.measurement.statistic,
        "load_average_1min_before": round(load_before, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "wall_s": round(time.perf_counter() - started, 1),
        "speedup": speedup,
        "fidelity": {
            "overall": overall,
            "per_model": per_model,
            "aligned_overall": aligned_overall,
            "aligned_per_model": aligned,
        },
        "keep_sweep": sweeps,
        **({"compared_profiles": compared_rows} if compared else {}),
        "targets": TARGETS,
        "targets_met": met,
        "points_predicted_measured_macs": points,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}: {json.dumps(overall)} targets met: {json.dumps(met)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
