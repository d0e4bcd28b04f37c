"""Speed of the analytic cost estimate vs counting the compressed model with fvcore.

``bench_speedup()`` measures, for resnet20 and mobilenetv2 (CIFAR input 1x3x32x32):

* ``us_per_estimate``: median microseconds of one ``CostModel.estimate`` call over many
  random candidate plans (random per-group keep ratios, bits, ranks), each plan priced for
  the first time by a model that has already priced the others (what a search sees: the
  per-layer memo helps only when a layer configuration repeats);
* ``us_per_estimate_cold``: the same with the per-layer memo emptied before each call
  (pure arithmetic, the worst case);
* ``fvcore_ms``: median milliseconds of ``FlopCountAnalysis(compressed, x).total()`` on
  models already compressed with ``compress.apply`` (tracing only, not the apply);
* ``apply_ms``: median milliseconds of ``compress.apply`` for the same plans;
* ``estimator_speedup_vs_fvcore`` = ``fvcore_ms`` / cold estimate time (conservative:
  the fvcore path also needs the apply, see ``speedup_vs_apply_plus_fvcore``).

Times are wall-clock medians with torch pinned to one thread (``cpu_us_*``: the same as
process CPU time, less disturbed by other processes); the machine's load average is
recorded, since other processes share the CPU. Run: ``python scripts/bench_cost_speed.py``
(writes ``reports/bench/cost_speed.json``); ``scripts/bench_cost.py`` merges the result
into ``reports/bench/cost.json``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "reports" / "bench" / "cost_speed.json"
MODELS = ("resnet20", "mobilenetv2")


def _random_plan(layers: list[Any], rng: random.Random) -> Any:
    from automc.plan import CompressionPlan, LayerChoice

    groups = sorted({s.group for s in layers if s.prunable})
    keep = {g: rng.uniform(0.2, 1.0) for g in groups}
    choices = {}
    for spec in layers:
        rank = None
        if spec.kind in ("conv2d", "linear") and rng.random() < 0.3:
            rank = max(1, int(spec.max_rank * rng.uniform(0.2, 0.6)))
        bits = rng.choice([32, 8, 4])
        choices[spec.name] = LayerChoice(
            keep_ratio=keep[spec.group] if spec.prunable else 1.0,
            w_bits=bits,
            a_bits=32 if bits == 32 else 8,
            rank=rank,
        )
    return CompressionPlan(layers=choices)


def _estimate_us(layers: list[Any], plans: list[Any], *, cold: bool) -> tuple[float, float]:
    """Median wall and CPU microseconds of one estimate over ``plans``."""
    from automc.cost import CostModel

    model = CostModel()
    model.estimate(layers, plans[0])
    compiled = model._compile(layers)
    wall, cpu = [], []
    for plan in plans:
        if cold:
            for memo in compiled.memo:
                memo.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        model.estimate(layers, plan)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall) * 1e6, statistics.median(cpu) * 1e6


def bench_speedup(*, n_plans: int = 300, n_fvcore: int = 5, fvcore_repeats: int = 3, seed: int = 0) -> dict:
    """Measure estimator speed vs fvcore on resnet20 and mobilenetv2; return the figures."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    from automc import compress, graph, models

    torch.set_num_threads(1)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    result: dict[str, Any] = {
        "command": "python scripts/bench_cost_speed.py",
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_before": round(os.getloadavg()[0], 2),
        "n_plans": n_plans,
        "n_fvcore_plans": n_fvcore,
        "models": {},
    }
    for name in MODELS:
        torch.manual_seed(seed)
        model = models.create(name).eval()
        x = torch.zeros(1, 3, 32, 32)
        layers = graph.layers(model, x)
        rng = random.Random(seed)
        plans = [_random_plan(layers, rng) for _ in range(n_plans)]
        warm_us, warm_cpu_us = _estimate_us(layers, plans, cold=False)
        cold_us, cold_cpu_us = _estimate_us(layers, plans, cold=True)
        fv_ms, apply_ms = [], []
        for plan in plans[:n_fvcore]:
            t0 = time.perf_counter()
            compressed = compress.apply(model, plan, x)
            apply_ms.append((time.perf_counter() - t0) * 1e3)
            for _ in range(fvcore_repeats):
                t0 = time.perf_counter()
                analysis = FlopCountAnalysis(compressed, x)
                analysis.unsupported_ops_warnings(False)
                analysis.uncalled_modules_warnings(False)
                analysis.total()
                fv_ms.append((time.perf_counter() - t0) * 1e3)
        fvcore_ms = statistics.median(fv_ms)
        apply_med = statistics.median(apply_ms)
        result["models"][name] = {
            "layers": len(layers),
            "us_per_estimate": round(warm_us, 1),
            "us_per_estimate_cold": round(cold_us, 1),
            "cpu_us_per_estimate": round(warm_cpu_us, 1),
            "cpu_us_per_estimate_cold": round(cold_cpu_us, 1),
            "fvcore_ms": round(fvcore_ms, 2),
            "apply_ms": round(apply_med, 2),
            "estimator_speedup_vs_fvcore": round(fvcore_ms * 1e3 / cold_us, 1),
            "speedup_vs_apply_plus_fvcore": round((fvcore_ms + apply_med) * 1e3 / cold_us, 1),
        }
    result["estimator_speedup_vs_fvcore"] = min(
        m["estimator_speedup_vs_fvcore"] for m in result["models"].values()
    )
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    return result


def main() -> int:
    sys.path.insert(0, str(ROOT))
    result = bench_speedup()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
