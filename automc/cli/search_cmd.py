"""``automc search``: the main job — search, fine-tune the Pareto winners, report."""

from __future__ import annotations

import argparse

HELP = "search per-layer pruning/quantization/low-rank under budgets, fine-tune the Pareto winners, write a report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="resnet20", help="zoo name or tv:<torchvision model> (default resnet20)"
    )
    p.add_argument(
        "--weights",
        help="state_dict of the base model (loaded with weights_only=True); default: train and cache one",
    )
    p.add_argument(
        "--dataset", default="digits", help="digits (embedded), cifar10, imagefolder:PATH, synthetic"
    )
    p.add_argument("--data-root", help="folder of a local dataset (cifar10)")
    p.add_argument(
        "--space",
        default="joint",
        help="search-space YAML path or shipped name (prune, quant, lowrank, joint)",
    )
    p.add_argument(
        "--budget",
        action="append",
        default=None,
        metavar="METRIC=LIMIT",
        help="hard budget, repeatable or comma-separated: flops=0.3 (fraction of base), flops=20M, "
        "params=1M, size=1MB, latency=2ms, energy=0.5mJ (default flops=0.3)",
    )
    p.add_argument(
        "--objectives", default="acc,macs", help="comma list: acc, kl, macs, params, size, latency, energy"
    )
    p.add_argument(
        "--controller",
        default="optuna-tpe",
        help="random, optuna-tpe, optuna-nsga2, ray, amc (see automc list controllers)",
    )
    p.add_argument(
        "--trials", type=int, default=50, help="total trials (a resumed search stops at this total)"
    )
    p.add_argument(
        "--profile", default="cpu-x86-2core", help="device profile name or YAML path ('none' to skip)"
    )
    p.add_argument("--storage", help="Optuna storage URL or path (default sqlite:///<out>/study.db)")
    p.add_argument("--study", help="study name (default <model>-<dataset>-<controller>-s<seed>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run/report folder (default reports/<study>)")
    p.add_argument(
        "--base-epochs", type=int, help="epochs for training the base model (default: the recipe's)"
    )
    p.add_argument(
        "--base-lr", type=float, help="peak learning rate for training the base model (default: the recipe's)"
    )
    p.add_argument("--finetune-top", type=int, default=3, help="fine-tune K winners spread along the front")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--kd-temperature", type=float, default=4.0)
    p.add_argument(
        "--kd-alpha", type=float, default=0.9, help="weight of the distillation loss (1-alpha: labels)"
    )
    p.add_argument("--calib-batches", type=int, default=4, help="batches for adaptive-BN recalibration")
    p.add_argument(
        "--proxy",
        default="short_train",
        help="how candidates are scored: short_train (default: --proxy-steps SGD steps distilled from "
        "the base model, then BatchNorm recalibration) or adaptive_bn (recalibration only: ~4x faster, "
        "ranks worse, see README)",
    )
    p.add_argument("--proxy-steps", type=int, default=10, help="SGD steps of the short_train proxy")
    p.add_argument("--ray-address", help="join this Ray cluster (also RAY_ADDRESS) with --controller ray")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs per trial with --controller ray")
    p.add_argument("--gpus-per-trial", type=float, default=0, help="GPUs per trial with --controller ray")
    p.add_argument("--no-onnx", action="store_true", help="skip ONNX export of the winners")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from automc.engine import search, summary_table

    budgets = [b for item in (args.budget or ["flops=0.3"]) for b in item.split(",") if b.strip()]
    result = search(
        model=args.model,
        dataset=args.dataset,
        space=args.space,
        budgets=budgets,
        objectives=[o for o in args.objectives.split(",") if o.strip()],
        controller=args.controller,
        trials=args.trials,
        profile=None if args.profile in ("", "none") else args.profile,
        storage=args.storage,
        study=args.study,
        seed=args.seed,
        out=args.out,
        weights=args.weights,
        data_root=args.data_root,
        base_epochs=args.base_epochs,
        base_lr=args.base_lr,
        finetune_top=args.finetune_top,
        finetune_epochs=args.finetune_epochs,
        kd_temperature=args.kd_temperature,
        kd_alpha=args.kd_alpha,
        calib_batches=args.calib_batches,
        proxy=args.proxy,
        proxy_steps=args.proxy_steps,
        ray_address=args.ray_address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        export_onnx=not args.no_onnx,
        progress=not args.quiet,
    )
    print(summary_table(result))
    return 0
