"""How well each proxy ranks candidates like accuracy after fine-tuning (fixed MACs budget).

Samples ``--n`` pruning plans of a base model at one MACs budget: random keep ratios per
dependency group, drawn in the ranges of a search space (``--space``, default the shipped
``prune`` space: keep 0.2-1, stem and classifier whole) and rescaled until the plan's
MACs are within ``--tolerance`` of the budget. Each plan is compressed (``--criterion``),
scored by every proxy and fine-tuned with the same short KD recipe ``--ft-seeds`` times
with different seeds. The ground truth is the mean over the seeds; the seeds' agreement
with each other (``finetune_seed_agreement``; with four seeds or more also its ``split_half``:
the mean of half the seeds against the mean of the other half) is a yardstick for the ground
truth's own noise.
The recipe is one epoch by default (``--epochs``): on digits, three epochs bring nearly every
plan back to 96-99% test accuracy, so the fine-tuned accuracies tie within seed noise (two
seeds agree only to Kendall 0.6) and no proxy can be measured against them; after one epoch
they spread over 0.65-0.98 and two seeds agree to Kendall 0.78 / Spearman 0.92. Reported:
Kendall tau / Spearman rho between each proxy and the fine-tuned *test* accuracy and
loss. Sign convention: correlations are computed on "goodness" (acc, -loss, -kl, score),
so positive = the proxy orders candidates as the fine-tuned metric does.

``--extra-calib-batches K`` also scores adaptive-BN with ``K`` calibration batches on the
same compressed models (``adaptive_bn_k<K>``), to see how much the number of batches matters.
``--short-train-steps S`` also scores the ``short_train`` proxy (``S`` SGD steps with KD
from the base on fixed train batches, then adaptive BN) on a copy of each compressed model,
at each ``--short-train-lr`` (default the proxy's own), as ``short_train_s<S>_lr<LR>`` with
its own seconds per candidate.

Also measures the adaptive-BN proxy's speed: seconds per candidate and
``overhead_vs_forward`` = proxy time / time of the bare forward passes over the same
batches (train-mode-BN calibration passes + eval passes) on the same compressed model.

On a larger dataset, ``--train-subset N`` trains the base model and fine-tunes every plan
on a seeded random ``N`` of the train split (val and test unchanged; the base model is
trained once on it and cached) and ``--val-limit N`` scores the proxies on a seeded ``N``
of val.

Usage: .venv/bin/python scripts/bench_proxy.py [--n 30 --budget 0.15 --criterion lasso --epochs 1]
Writes reports/bench/proxy.json (numbers measured in this run only).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence, Sized
from pathlib import Path
from typing import Any, cast

import torch
from scipy import stats
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from automc import compress, data, graph, train
from automc.cost.flops import layer_geometry
from automc.plan import CompressionPlan, LayerChoice, LayerSpec, layers_fingerprint
from automc.proxy import (
    SHORT_TRAIN_LR,
    AdaptiveBNProxy,
    ProxyBatches,
    ProxyData,
    ShortTrainProxy,
    SynFlowProxy,
    VanillaProxy,
)
from automc.resources import find_space
from automc.space import BoundSpace, SearchSpace

THREADS = 2
"""Default torch threads (``--threads``)."""
SAME_PLAN_IMAGES = 2
"""Val images a stored candidate's vanilla accuracy may differ by and still be the same plan (``--ground-truth``)."""
FT_BATCH_SIZE = 64
"""Batch size of the fine-tuning recipe every candidate gets (``train.finetune``'s default)."""


def plan_macs(layers: Sequence[LayerSpec], keep: Mapping[int, float]) -> int:
    """Total MACs of the pruned model (cost engine's layer geometry, shared rounding rule)."""
    return sum(layer_geometry(spec, LayerChoice(), keep).macs for spec in layers)


def make_plan(
    layers: Sequence[LayerSpec], keep: Mapping[int, float], model: str, criterion: str
) -> CompressionPlan:
    choices = {s.name: LayerChoice(keep_ratio=keep[s.group]) for s in layers if keep.get(s.group, 1.0) < 1.0}
    return CompressionPlan(
        layers=choices, criterion=criterion, model=model, fingerprint=layers_fingerprint(layers)
    )


def keep_ranges(space: BoundSpace) -> dict[int, tuple[float, float]]:
    """Each searchable dependency group's keep range in the search space (frozen groups stay whole)."""
    group = {s.name: s.group for s in space.layers}
    out = {}
    for p in space.params:
        if p.field == "keep":
            assert p.low is not None and p.high is not None
            out[group[p.layers[0]]] = (float(p.low), float(p.high))
    return out


def sample_keep(
    layers: Sequence[LayerSpec],
    ranges: Mapping[int, tuple[float, float]],
    target_macs: float,
    tolerance: float,
    rng: random.Random,
) -> dict[int, float] | None:
    """Random keep ratio per group, drawn in its range, scaled (bisection, clamped to the range) so
    the plan's MACs land within ``tolerance`` of the target."""
    raw = {g: rng.uniform(low, high) for g, (low, high) in ranges.items()}

    def keep_at(scale: float) -> dict[int, float]:
        return {g: min(ranges[g][1], max(ranges[g][0], round(r * scale, 4))) for g, r in raw.items()}

    lo, hi = 0.0, 1.0 / min(raw.values())
    for _ in range(50):
        mid = (lo + hi) / 2
        if plan_macs(layers, keep_at(mid)) > target_macs:
            hi = mid
        else:
            lo = mid
    for scale in (lo, hi):
        keep = keep_at(scale)
        if abs(plan_macs(layers, keep) / target_macs - 1.0) <= tolerance:
            return keep
    return None


def bare_forward_seconds(model: nn.Module, pdata: ProxyData) -> float:
    """The forward passes the adaptive-BN proxy makes, without any proxy bookkeeping."""
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    t0 = time.perf_counter()
    for bn in norms:
        bn.train()
    with torch.no_grad():
        for x in pdata.calib_inputs:
            model(x)
    model.eval()
    with torch.inference_mode():
        for x in pdata.val_inputs:
            model(x)
    return time.perf_counter() - t0


def rank_agreement(
    x_acc: Sequence[float], y_acc: Sequence[float], x_loss: Sequence[float], y_loss: Sequence[float]
) -> dict[str, float]:
    """Kendall tau and Spearman rho of the accuracy pair and (``*_loss``) of the loss pair."""
    return {
        "kendall": float(stats.kendalltau(x_acc, y_acc).statistic),
        "spearman": float(stats.spearmanr(x_acc, y_acc).statistic),
        "kendall_loss": float(stats.kendalltau(x_loss, y_loss).statistic),
        "spearman_loss": float(stats.spearmanr(x_loss, y_loss).statistic),
    }


def correlations(
    goodness: Sequence[float], ft_acc: Sequence[float], ft_loss: Sequence[float]
) -> dict[str, float]:
    """A proxy's goodness against fine-tuned accuracy and against minus the fine-tuned loss."""
    return rank_agreement(goodness, ft_acc, goodness, [-v for v in ft_loss])


def seed_agreement(rows: Sequence[Mapping[str, float]], seeds: int) -> dict[str, Any] | None:
    """Kendall / Spearman between fine-tuning seeds 0 and 1 (the ground truth's own noise); with
    four seeds or more also ``split_half``: the mean of the first half of the seeds against the
    mean of the second half, how well two ground truths of half the seeds each agree."""
    if seeds < 2:
        return None
    out: dict[str, Any] = rank_agreement(
        [r["ft_acc_0"] for r in rows],
        [r["ft_acc_1"] for r in rows],
        [r["ft_loss_0"] for r in rows],
        [r["ft_loss_1"] for r in rows],
    )
    if seeds >= 4:
        first, second = range(seeds // 2), range(seeds // 2, 2 * (seeds // 2))

        def mean(row: Mapping[str, float], key: str, half: range) -> float:
            return statistics.mean(row[f"{key}_{i}"] for i in half)

        out["split_half"] = rank_agreement(
            [mean(r, "ft_acc", first) for r in rows],
            [mean(r, "ft_acc", second) for r in rows],
            [mean(r, "ft_loss", first) for r in rows],
            [mean(r, "ft_loss", second) for r in rows],
        )
    return out


def load_ground_truth(args: argparse.Namespace) -> list[dict[str, float]]:
    """The candidates of an earlier run whose fine-tuning this run would repeat exactly."""
    old = json.loads(Path(args.ground_truth).read_text())
    same = {
        "n": (old["n"], args.n),
        "budget": (old["budget"]["macs_fraction"], args.budget),
        "criterion": (old["sampling"]["criterion"], args.criterion),
        "space": (old["sampling"]["space"], args.space),
        "epochs": (old["finetune"]["epochs"], args.epochs),
        "lr": (old["finetune"]["lr"], args.lr),
        "ft seeds": (old["finetune"]["seeds"], args.ft_seeds),
        "calib batches": (old["proxy_data"]["calib_batches"], args.calib_batches),
        "dataset": (old["dataset"], args.dataset),
        "train subset": (old.get("train_subset"), args.train_subset),
        "seed": (
            int(old["command"].split("--seed ")[1].split()[0]) if "--seed " in old["command"] else 0,
            args.seed,
        ),
    }
    for what, (was, now) in same.items():
        if was != now:
            raise SystemExit(f"--ground-truth {args.ground_truth}: {what} was {was!r}, now {now!r}")
    return list(old["candidates"])


def stored_row(
    stored: Sequence[Mapping[str, float]], i: int, row: Mapping[str, float], n_val: int
) -> Mapping[str, float]:
    """Candidate ``i`` of the earlier run, after checking it is the same compressed model: the
    same MACs, and its vanilla accuracy on the ``n_val`` val images within
    :data:`SAME_PLAN_IMAGES` images (another CPU rounds differently, which can flip a near tie)."""
    old = stored[i]
    if (
        abs(old["macs_ratio"] - row["macs_ratio"]) > 1e-5
        or abs(old["vanilla_acc"] - row["vanilla_acc"]) * n_val > SAME_PLAN_IMAGES + 1e-6
    ):
        raise SystemExit(f"--ground-truth: candidate {i + 1} is not the same plan as in the earlier run")
    return old


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument(
        "--data-root", help="folder of an on-disk dataset (cifar10: the folder holding cifar-10-batches-py)"
    )
    ap.add_argument(
        "--train-subset",
        type=int,
        help="train the base model and fine-tune the plans on a seeded random subset of this many "
        "train images (val and test unchanged)",
    )
    ap.add_argument(
        "--val-limit", type=int, help="score the proxies on a seeded random subset of this many val images"
    )
    ap.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    ap.add_argument("--n", type=int, default=30, help="number of sampled plans")
    ap.add_argument("--budget", type=float, default=0.15, help="MACs budget as a fraction of the base model")
    ap.add_argument("--tolerance", type=float, default=0.01, help="relative MACs tolerance around the budget")
    ap.add_argument(
        "--space",
        default="prune",
        help="search space whose keep ranges and frozen layers the plans are drawn from (default prune)",
    )
    ap.add_argument(
        "--criterion",
        default="lasso",
        help="pruning criterion the plans use (default lasso: it keeps the pruned network working, see README)",
    )
    ap.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="fine-tuning epochs per candidate (default 1: longer recipes saturate digits, see above)",
    )
    ap.add_argument(
        "--ft-seeds",
        type=int,
        default=2,
        help="fine-tune every plan with this many seeds; the ground truth is their mean, and their "
        "agreement with each other is a yardstick for the ground truth's noise (default 2)",
    )
    ap.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate")
    ap.add_argument("--calib-batches", type=int, default=8)
    ap.add_argument("--calib-batch-size", type=int, default=64)
    ap.add_argument(
        "--extra-calib-batches",
        type=int,
        action="append",
        default=[],
        help="also score adaptive-BN with this many calibration batches on the same compressed "
        "models (reported as adaptive_bn_k<K>; repeatable)",
    )
    ap.add_argument(
        "--short-train-steps",
        type=int,
        action="append",
        default=[],
        help="also score the short_train proxy with this many SGD steps (on a copy of each compressed "
        "model; reported as short_train_s<STEPS>_lr<LR> with its seconds per candidate; repeatable)",
    )
    ap.add_argument(
        "--short-train-lr",
        type=float,
        action="append",
        default=[],
        help=f"learning rates of the short_train proxy, each with every --short-train-steps "
        f"(default {SHORT_TRAIN_LR:g}, the proxy's own; repeatable)",
    )
    ap.add_argument(
        "--short-train-batches",
        type=int,
        default=32,
        help="labelled train batches (of --calib-batch-size) the short_train proxy cycles through",
    )
    ap.add_argument(
        "--timing-candidates", type=int, default=5, help="candidates used for overhead_vs_forward"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ground-truth",
        help="take the fine-tuned accuracies from this earlier output of the same command instead "
        "of fine-tuning again (fine-tuning is deterministic; the plans, budget, seed and recipe must match)",
    )
    ap.add_argument("--out", default="reports/bench/proxy.json")
    args = ap.parse_args(argv)

    for flag, value in (("--train-subset", args.train_subset), ("--val-limit", args.val_limit)):
        if value is not None and value < 1:
            ap.error(f"{flag} must be >= 1, got {value}")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    splits = data.load(
        args.dataset,
        args.data_root,
        seed=args.seed,
        options=data.DataOptions(train_subset=args.train_subset),
    )
    base, base_info = train.base_model(
        args.model, args.dataset, splits=splits, options=train.FitOptions(seed=args.seed, progress=False)
    )
    base.eval()
    example = splits.example_input(1)
    layers = graph.layers(base, example)
    base_macs = plan_macs(layers, {-1: 1.0})
    target = args.budget * base_macs
    space_path = find_space(args.space)
    ranges = keep_ranges(SearchSpace.load(space_path).bind(layers, model=args.model))

    pdata = ProxyData.from_splits(
        splits,
        ProxyBatches(
            calib_batches=args.calib_batches, calib_batch_size=args.calib_batch_size, val_limit=args.val_limit
        ),
        seed=args.seed,
    )
    adaptive = AdaptiveBNProxy(data=pdata, teacher=base, cache_size=0)
    vanilla = VanillaProxy(data=pdata, cache_size=0)
    synflow = SynFlowProxy(data=pdata, cache_size=0)
    extra = {
        k: AdaptiveBNProxy(
            data=ProxyData.from_splits(
                splits,
                ProxyBatches(
                    calib_batches=k, calib_batch_size=args.calib_batch_size, val_limit=args.val_limit
                ),
                seed=args.seed,
            ),
            cache_size=0,
        )
        for k in args.extra_calib_batches
    }

    short_data = ProxyData.from_splits(
        splits,
        ProxyBatches(
            calib_batches=args.calib_batches,
            calib_batch_size=args.calib_batch_size,
            train_batches=args.short_train_batches,
            train_batch_size=args.calib_batch_size,
            val_limit=args.val_limit,
        ),
        seed=args.seed,
    )
    short = {
        f"s{steps}_lr{lr:g}": ShortTrainProxy(data=short_data, teacher=base, steps=steps, lr=lr, cache_size=0)
        for steps in args.short_train_steps
        for lr in args.short_train_lr or [SHORT_TRAIN_LR]
    }
    short_seconds: dict[str, list[float]] = {variant: [] for variant in short}

    stored = load_ground_truth(args) if args.ground_truth else None
    rng = random.Random(args.seed)
    rows: list[dict[str, float]] = []
    proxy_seconds: list[float] = []
    ratios: list[float] = []
    draws = 0
    while len(rows) < args.n:
        draws += 1
        if draws > 50 * args.n:
            raise SystemExit(
                f"could not hit the MACs budget {args.budget} +- {args.tolerance}; widen --tolerance"
            )
        keep = sample_keep(layers, ranges, target, args.tolerance, rng)
        if keep is None:
            continue
        plan = make_plan(layers, keep, args.model, args.criterion)
        torch.manual_seed(args.seed)
        model = compress.apply(
            base, plan, example, calib_batches=adaptive.calibration_batches(), seed=args.seed
        )
        row: dict[str, float] = {"macs_ratio": plan_macs(layers, keep) / base_macs}
        row["vanilla_acc"] = vanilla.evaluate(model, plan)["acc"]
        row["synflow"] = synflow.evaluate(model, plan)["score"]
        for k, proxy in extra.items():  # before the main proxy, whose recalibration fine-tuning starts from
            row[f"adaptive_bn_acc_k{k}"] = proxy.evaluate(model, plan)["acc"]
        for variant, st_proxy in short.items():
            trainee = copy.deepcopy(model)
            t0 = time.perf_counter()
            st = st_proxy.evaluate(trainee, plan)
            short_seconds[variant].append(time.perf_counter() - t0)
            row[f"short_train_acc_{variant}"] = st["acc"]
            row[f"short_train_loss_{variant}"] = st["loss"]
        if len(ratios) < args.timing_candidates:
            bare, timed = [], []
            for _ in range(3):
                bare.append(bare_forward_seconds(model, pdata))
                t0 = time.perf_counter()
                adaptive.evaluate(model, plan)
                timed.append(time.perf_counter() - t0)
            ratios.append(min(timed) / min(bare))
        t0 = time.perf_counter()
        scored = adaptive.evaluate(model, plan)
        proxy_seconds.append(time.perf_counter() - t0)
        row.update(adaptive_bn_acc=scored["acc"], adaptive_bn_loss=scored["loss"], kl=scored["kl"])
        if stored is not None:
            reused = stored_row(stored, len(rows), row, pdata.n_val)
            row.update({k: v for k, v in reused.items() if k.startswith("ft_")})
        else:
            for k in range(args.ft_seeds):
                student = model if k == args.ft_seeds - 1 else copy.deepcopy(model)
                train.finetune(
                    student,
                    splits,
                    train.Recipe(epochs=args.epochs, lr=args.lr, batch_size=FT_BATCH_SIZE),
                    distillation=train.Distillation(teacher=base),
                    options=train.FitOptions(seed=args.seed + k, progress=False),
                )
                final = train.evaluate(student, splits.test)
                row.update({f"ft_acc_{k}": final["acc"], f"ft_loss_{k}": final["loss"]})
            row["ft_acc"] = statistics.mean(row[f"ft_acc_{k}"] for k in range(args.ft_seeds))
            row["ft_loss"] = statistics.mean(row[f"ft_loss_{k}"] for k in range(args.ft_seeds))
        rows.append(row)
        print(f"[{len(rows)}/{args.n}] " + " ".join(f"{k}={v:.4g}" for k, v in row.items()), file=sys.stderr)

    ft_acc = [r["ft_acc"] for r in rows]
    ft_loss = [r["ft_loss"] for r in rows]
    per_candidate = statistics.mean(proxy_seconds)
    result = {
        "n": len(rows),
        "model": args.model,
        "dataset": args.dataset,
        "train_subset": args.train_subset,
        "train_samples": len(cast(Sized, splits.train)),
        "budget": {"macs_fraction": args.budget, "tolerance": args.tolerance, "base_macs": base_macs},
        "sampling": {
            "space": args.space,
            "groups": len(ranges),
            "keep_low": min(low for low, _ in ranges.values()),
            "criterion": args.criterion,
        },
        "base_test_acc": float(base_info["test_acc"]),
        "finetune": {
            "epochs": args.epochs,
            "lr": args.lr,
            "kd": True,
            "eval_split": "test",
            "seeds": args.ft_seeds,
            "ground_truth": "mean over the seeds",
            "sgd_steps": args.epochs * -(-len(cast(Sized, splits.train)) // FT_BATCH_SIZE),
            **({"ground_truth_from": args.ground_truth} if args.ground_truth else {}),
        },
        "proxy_data": {
            "calib_batches": args.calib_batches,
            "calib_batch_size": args.calib_batch_size,
            "val_limit": args.val_limit,
            "val_samples": pdata.n_val,
        },
        "finetuned_acc_spread": {"min": min(ft_acc), "max": max(ft_acc), "std": statistics.pstdev(ft_acc)},
        "finetune_seed_agreement": seed_agreement(rows, args.ft_seeds),
        "sign_convention": "correlations of proxy goodness (acc, -loss, -kl, score) with ft acc and -ft loss",
        "adaptive_bn": correlations([r["adaptive_bn_acc"] for r in rows], ft_acc, ft_loss),
        "adaptive_bn_loss": correlations([-r["adaptive_bn_loss"] for r in rows], ft_acc, ft_loss),
        "vanilla": correlations([r["vanilla_acc"] for r in rows], ft_acc, ft_loss),
        "zero_cost": {"proxy": "synflow", **correlations([r["synflow"] for r in rows], ft_acc, ft_loss)},
        "kl_teacher": correlations([-r["kl"] for r in rows], ft_acc, ft_loss),
        **{
            f"adaptive_bn_k{k}": correlations([r[f"adaptive_bn_acc_k{k}"] for r in rows], ft_acc, ft_loss)
            for k in extra
        },
        **{
            f"short_train_{variant}": {
                **correlations([r[f"short_train_acc_{variant}"] for r in rows], ft_acc, ft_loss),
                "loss_as_proxy": correlations(
                    [-r[f"short_train_loss_{variant}"] for r in rows], ft_acc, ft_loss
                ),
                "steps": st_proxy.steps,
                "lr": st_proxy.lr,
                "seconds_per_candidate": statistics.mean(short_seconds[variant]),
                "train_batches": args.short_train_batches,
                "batch_size": args.calib_batch_size,
            }
            for variant, st_proxy in short.items()
        },
        "seconds_per_candidate": per_candidate,
        "candidates_per_second": 1.0 / per_candidate,
        "overhead_vs_forward": statistics.median(ratios) if ratios else None,
        "overhead_samples": len(ratios),
        "total_seconds": time.perf_counter() - t_start,
        "command": " ".join([".venv/bin/python", "scripts/bench_proxy.py", *(argv or sys.argv[1:])]),
        "torch_threads": torch.get_num_threads(),
        "candidates": [{k: round(v, 6) for k, v in r.items()} for r in rows],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {
        k: result[k] for k in ("adaptive_bn", "vanilla", "zero_cost", "kl_teacher", "overhead_vs_forward")
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
