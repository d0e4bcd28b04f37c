"""Benchmark the pruning criteria at equal MACs: resnet20 on digits -> reports/bench/criteria.json.

For each MACs budget (fraction of the base model's conv/linear MACs) one uniform keep
ratio is chosen (the largest whose predicted MACs fit the budget; it depends only on
shapes, so every criterion gets the same ratio and the same MACs). For each criterion
and seed: ``compress.apply`` with seeded calibration batches, the same short
fine-tune (``automc.train.finetune``, plain cross-entropy), then test accuracy. EPruner
is also run with its adaptive per-group keep ratios (``epruner_keep_ratio``), whose MACs
are reported as they come. MACs are measured on the compressed model with forward hooks.

Usage::

    .venv/bin/python scripts/bench_criteria.py [--seeds 3] [--epochs 2] [--budgets 0.5,0.3]
        [--criteria l1,l2,random,taylor,thinet,lasso,epruner,correlation] [--out reports/bench/criteria.json]

All numbers are measured in the run; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sized
from pathlib import Path
from typing import cast

import torch
from torch import nn

DEFAULT_CRITERIA = "l1,l2,random,taylor,thinet,lasso,epruner,correlation"


def measured_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of every conv/linear call for one sample, counted with hooks."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += output[0].numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        for h in handles:
            h.remove()
    return total


def predicted_macs(layers, keep_of_group) -> int:
    """MACs of a plan from the traced shapes, with the shared rounding rule ``kept_channels``."""
    from automc.plan import kept_channels

    total = 0
    for spec in layers:
        ratio = keep_of_group.get(spec.group, 1.0) if spec.prunable else 1.0
        out = kept_channels(spec.out_channels, ratio)
        fan_in = sum(
            (kept_channels(ch, keep_of_group.get(g, 1.0)) if g >= 0 else ch) * mult
            for g, ch, mult in spec.in_segments
        )
        if spec.kind == "dwconv2d":
            per_out = spec.kernel[0] * spec.kernel[1]
        else:
            per_out = fan_in // spec.groups * spec.kernel[0] * spec.kernel[1]
        total += out * spec.out_hw[0] * spec.out_hw[1] * per_out
    return total


def ratio_for_budget(layers, budget: float) -> float:
    """Largest uniform keep ratio (step 0.005) whose predicted MACs are within ``budget`` x base."""
    groups = {s.group for s in layers if s.prunable}
    base = predicted_macs(layers, {})
    best = 0.005
    for step in range(1, 201):
        r = step / 200
        if predicted_macs(layers, dict.fromkeys(groups, r)) <= budget * base:
            best = r
    return best


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "spread": max(values) - min(values),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--budgets", default="0.5,0.3")
    parser.add_argument("--criteria", default=DEFAULT_CRITERIA)
    parser.add_argument("--calib-batches", type=int, default=2)
    parser.add_argument("--out", default="reports/bench/criteria.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    from automc import compress, data, graph
    from automc.compress.criteria.clustering import epruner_keep_ratio
    from automc.plan import CompressionPlan, LayerChoice, layers_fingerprint
    from automc.train import FitOptions, Recipe, base_model, evaluate, finetune

    started = time.perf_counter()
    splits = data.load("digits", None, seed=0)
    base, info = base_model("resnet20", "digits", splits=splits, options=FitOptions(progress=False))
    example = splits.example_input()
    layers = graph.layers(base, example)
    base_macs = measured_macs(base, example)
    base_acc = evaluate(base, splits.test)["acc"]
    budgets = [float(b) for b in args.budgets.split(",")]
    criteria = [c.strip() for c in args.criteria.split(",") if c.strip()]

    def calibration(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(cast(Sized, splits.train)), generator=gen)[: args.calib_batches * 64]
        xs = torch.stack([splits.train[int(i)][0] for i in idx])
        ys = torch.tensor([int(splits.train[int(i)][1]) for i in idx])
        return list(xs.split(64)), list(ys.split(64))

    def run(plan: CompressionPlan, seed: int) -> dict[str, float]:
        batches, targets = calibration(seed)
        t0 = time.perf_counter()
        model = compress.apply(base, plan, example, calib_batches=batches, calib_targets=targets, seed=seed)
        apply_s = time.perf_counter() - t0
        macs = measured_macs(model, example)
        ft = finetune(
            model, splits, Recipe(epochs=args.epochs, lr=0.01), options=FitOptions(seed=seed, progress=False)
        )
        return {
            "acc": evaluate(model, splits.test)["acc"],
            "macs": macs,
            "apply_seconds": apply_s,
            "finetune_seconds": ft.seconds,
        }

    results = []
    for budget in budgets:
        ratio = ratio_for_budget(layers, budget)
        plan_layers = CompressionPlan.uniform(layers, keep_ratio=ratio)
        for name in criteria:
            plan = CompressionPlan(
                layers=dict(plan_layers.layers), criterion=name, fingerprint=plan_layers.fingerprint
            )
            runs = [run(plan, seed) for seed in range(args.seeds)]
            results.append(
                {
                    "criterion": name,
                    "budget_macs_fraction": budget,
                    "keep_ratio": ratio,
                    "macs": runs[0]["macs"],
                    "macs_fraction": runs[0]["macs"] / base_macs,
                    "test_acc": [r["acc"] for r in runs],
                    "test_acc_summary": summary([r["acc"] for r in runs]),
                    "apply_seconds_median": statistics.median(r["apply_seconds"] for r in runs),
                    "finetune_seconds_median": statistics.median(r["finetune_seconds"] for r in runs),
                }
            )
            print(
                f"budget {budget:.2f} keep {ratio:.3f} {name:12s} acc {results[-1]['test_acc_summary']['median']:.4f} "
                f"(spread {results[-1]['test_acc_summary']['spread']:.4f}) apply {results[-1]['apply_seconds_median']:.1f}s",
                file=sys.stderr,
            )

    info_graph = graph.trace(base, example)
    group_ratio = {}
    for gid, group in info_graph.groups.items():
        if gid < 0:
            continue
        producers = [info_graph.module(n) for n in group.producers]
        rows = torch.cat(
            [cast(torch.Tensor, m.weight).detach().reshape(group.channels, -1) for m in producers], dim=1
        )
        group_ratio[gid] = epruner_keep_ratio(rows)
    adaptive = CompressionPlan(
        layers={s.name: LayerChoice(keep_ratio=group_ratio[s.group]) for s in layers if s.prunable},
        criterion="epruner",
        fingerprint=layers_fingerprint(layers),
    )
    runs = [run(adaptive, seed) for seed in range(args.seeds)]
    epruner_adaptive = {
        "criterion": "epruner",
        "keep_ratio_per_group": {str(g): r for g, r in sorted(group_ratio.items())},
        "macs": runs[0]["macs"],
        "macs_fraction": runs[0]["macs"] / base_macs,
        "test_acc": [r["acc"] for r in runs],
        "test_acc_summary": summary([r["acc"] for r in runs]),
        "apply_seconds_median": statistics.median(r["apply_seconds"] for r in runs),
    }
    report = {
        "bench": "criteria",
        "model": "resnet20",
        "dataset": "digits",
        "base_test_acc": base_acc,
        "base_macs": base_macs,
        "base_cached": bool(info.get("cached")),
        "finetune_epochs": args.epochs,
        "seeds": args.seeds,
        "calib_samples": args.calib_batches * 64,
        "results": results,
        "epruner_adaptive": epruner_adaptive,
        "total_seconds": time.perf_counter() - started,
        "machine": {
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} in {report['total_seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
