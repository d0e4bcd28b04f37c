"""Search throughput (trials per hour) with 1 and 2 Ray workers on this machine.

Runs the same ``--controller ray`` search (same model, data, space, budget, seed and
number of trials, a fresh storage each) once per worker count. Each run gets a local Ray
instance with exactly ``workers`` CPUs and one CPU per trial, so ``workers`` trials run at
once and each worker's torch uses one thread (the controller sets it to
``cpus_per_trial``). Throughput is ``trials / search seconds``, where search seconds is
the engine's own timing of the controller's drive loop (Ray Tune start-up included, Ray
start-up and base-model training excluded); ``wall_seconds_search_call`` is the whole
``automc.pipeline.search`` call (cached base model loaded, base figures, report; no fine-tuning).

Caveats: the base model is trained for only ``--base-epochs`` (throughput does not
depend on its accuracy); the machine may be shared with other jobs, so the load average
at start and end is recorded next to the numbers, and the two runs happen one after the
other, not interleaved.

Usage: .venv/bin/python scripts/bench_scale.py [--model resnet20 --dataset digits --trials 12]
Writes reports/bench/scale.json (numbers measured in this run only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

THREADS = 2


def one_run(args: argparse.Namespace, workers: int, root: Path) -> dict[str, Any]:
    """One search with ``workers`` Ray workers; returns its measured figures."""
    import optuna
    import ray

    from automc.pipeline import search

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        out = root / f"workers{workers}"
        t0 = time.perf_counter()
        result = search(
            model=args.model,
            dataset=args.dataset,
            space=args.space,
            budgets=[args.budget],
            objectives=["acc", "macs"],
            controller="ray",
            trials=args.trials,
            profile=None,
            out=out,
            seed=args.seed,
            base_epochs=args.base_epochs,
            finetune_top=0,
            export_onnx=False,
            progress=False,
        )
        total_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
    trials = optuna.load_study(study_name=result.study, storage=result.storage).get_trials()
    search_s = float(result.base["search_seconds"])
    nodes = {t.user_attrs.get("info", {}).get("node_id") for t in trials}
    return {
        "workers": workers,
        "cpus_per_trial": 1,
        "trials": len(trials),
        "complete": sum(t.state.name == "COMPLETE" for t in trials),
        "failed": sum(t.state.name == "FAIL" for t in trials),
        "proxy_evaluated": sum(bool(t.user_attrs.get("proxy")) for t in trials),
        "search_seconds": round(search_s, 2),
        "seconds_per_trial": round(search_s / max(len(trials), 1), 3),
        "trials_per_hour": round(len(trials) / search_s * 3600, 1),
        "wall_seconds_search_call": round(total_s, 2),
        "ray_nodes": len(nodes - {None}),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--space", default="joint")
    p.add_argument("--budget", default="flops=0.5")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--workers", default="1,2", help="comma list of worker counts")
    p.add_argument("--base-epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports/bench/scale.json")
    args = p.parse_args()
    torch.set_num_threads(THREADS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from automc import train

    load_start = os.getloadavg()
    t0 = time.perf_counter()
    train.base_model(
        args.model,
        args.dataset,
        epochs=args.base_epochs,
        options=train.FitOptions(seed=args.seed, progress=False),
    )
    base_s = time.perf_counter() - t0
    runs = []
    with tempfile.TemporaryDirectory(prefix="automc-bench-scale-") as tmp:
        for w in [int(x) for x in args.workers.split(",") if x.strip()]:
            runs.append(one_run(args, w, Path(tmp)))
            print(
                f"workers={w}: {runs[-1]['trials_per_hour']} trials/h "
                f"({runs[-1]['search_seconds']} s for {runs[-1]['trials']} trials)",
                file=sys.stderr,
            )
    load_end = os.getloadavg()
    body: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "loadavg_start_1_5_15min": [round(x, 2) for x in load_start],
            "loadavg_end_1_5_15min": [round(x, 2) for x in load_end],
        },
        "setup": {
            "model": args.model,
            "dataset": args.dataset,
            "space": args.space,
            "budget": args.budget,
            "trials_per_run": args.trials,
            "seed": args.seed,
            "base_epochs": args.base_epochs,
            "base_model_seconds": round(base_s, 2),
            "driver_torch_threads": THREADS,
        },
        "runs": runs,
    }
    if len(runs) >= 2:
        body["speedup_vs_first"] = {
            str(r["workers"]): round(r["trials_per_hour"] / runs[0]["trials_per_hour"], 3) for r in runs
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
