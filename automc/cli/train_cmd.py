"""``automc train``: train a zoo model on a dataset (or load it from the cache), or your own model.

A ``--model package.module:factory`` of the user's code is imported (only because it was
typed here), trained with the dataset's recipe and, not being a zoo name, not cached:
``--weights-out`` keeps its weights for ``automc search --model ... --weights``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from automc.cli.common import add_model_arguments
from automc.cli.search_cmd import add_data_arguments
from automc.errors import AutomcError

DATA_FLAGS = ("dataset", "data_root", "in_channels", "input_size", "normalize", "augment", "train_subset")
"""The ``automc train`` flags that are ``data.*`` settings (validated as in ``automc search``)."""

HELP = "train a base model on a dataset (cached under $AUTOMC_HOME) and print its test accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--dataset", required=True, help="dataset name (automc list datasets) or imagefolder:PATH"
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the dataset's recipe)")
    parser.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default: the dataset's recipe)"
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument(
        "--data-root",
        default=None,
        help="folder holding on-disk datasets (cifar10, fashion-mnist, mnist; base of imagefolder:PATH)",
    )
    add_data_arguments(parser, lambda name, text: f"{text} (default: the dataset's)")
    parser.add_argument("--weights-out", default=None, help="also write the trained state_dict to this path")
    parser.add_argument("--json", action="store_true", help="print the info record as JSON instead of text")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--device", default="auto", help="where to train: auto (CUDA when available), cpu, cuda, cuda:N"
    )
    parser.add_argument(
        "--no-amp", dest="amp", action="store_false", help="no mixed precision when training on CUDA"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: $OMP_NUM_THREADS or the usable cores)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader worker processes (same batches for a seed; default 0 on the CPU, "
        "min(4, cores) on CUDA with pinned memory)",
    )


def run(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise AutomcError(f"--epochs must be at least 1, got {args.epochs}")
    import torch

    from automc.config import SearchConfig
    from automc.device import Placement
    from automc.models import create, user
    from automc.pipeline.setup import announce_data, load_splits
    from automc.train import FitOptions, base_model, check_lr, set_threads

    check_lr(args.lr, "--lr")
    flags = {name: getattr(args, name) for name in DATA_FLAGS}
    overrides = {k: v for k, v in flags.items() if v is not None}
    hardware = {"device": args.device, "threads": args.threads, "amp": args.amp, "workers": args.workers}
    config = SearchConfig().with_overrides(**overrides, **hardware)
    hw = config.hardware
    placement = Placement.of(hw.device, amp=hw.amp, workers=hw.workers)

    set_threads(config.hardware.threads)
    if user.is_import_path(args.model):
        return _train_user_model(args, config, placement)
    create(args.model)  # an unknown model name fails before the data is read
    splits = load_splits(config.data, seed=args.seed)
    announce_data(splits)
    model, info = base_model(
        args.model,
        args.dataset,
        epochs=args.epochs,
        lr=args.lr,
        splits=splits,
        options=FitOptions(seed=args.seed, progress=not args.no_progress, placement=placement),
    )
    if args.weights_out:
        out = Path(args.weights_out)
        if out.parent and not out.parent.is_dir():
            raise AutomcError(f"--weights-out: folder {out.parent} does not exist")
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out)
        info = {**info, "weights_out": str(out)}
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    source = "loaded from cache" if info["cached"] else f"trained in {info['train_seconds']:.1f} s"
    print(
        f"{args.model} on {args.dataset} (seed {args.seed}, {info['recipe']['epochs']} epochs, lr {info['recipe']['lr']:g}): {source}"
    )
    print(f"test accuracy: {100 * info['test_acc']:.2f}%  (val {100 * info['val_acc']:.2f}%)")
    print(f"cached weights: {info['weights_path']}")
    if args.weights_out:
        print(f"weights written to: {info['weights_out']}")
    return 0


def _train_user_model(args: argparse.Namespace, config: Any, placement: Any) -> int:
    """Train the user's ``--model package.module:factory`` with the dataset's recipe (not cached)."""
    import torch

    from automc import train
    from automc.models import user
    from automc.pipeline.setup import announce_data, check_logits, load_splits

    if not args.weights_out:
        raise AutomcError(
            f"--model {args.model}: your own model is not cached; give --weights-out to keep it"
        )
    out = Path(args.weights_out)
    if out.parent and not out.parent.is_dir():
        raise AutomcError(f"--weights-out: folder {out.parent} does not exist")
    net = user.build(args.model, user.parse_kwargs(args.model_kwargs))
    splits = load_splits(config.data, seed=args.seed)
    check_logits(net, splits.train[0][0].unsqueeze(0), splits.num_classes)
    announce_data(splits)
    recipe = train.recipe_for(args.dataset, epochs=args.epochs, lr=args.lr)
    options = train.FitOptions(seed=args.seed, progress=not args.no_progress, placement=placement)
    result = train.train(net, splits, recipe, options=options)
    test = train.evaluate(net, splits.test)
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, out)
    info = {
        "model": args.model,
        "dataset": args.dataset,
        "recipe": asdict(recipe),
        "test_acc": test["acc"],
        "val_acc": result.val_acc,
        "train_seconds": round(result.seconds, 3),
        "device": str(placement.device),
        "weights_out": str(out),
    }
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(
        f"{args.model} on {args.dataset} (seed {args.seed}, {recipe.epochs} epochs, lr {recipe.lr:g}): "
        f"trained in {result.seconds:.1f} s on {placement.device}"
    )
    print(f"test accuracy: {100 * test['acc']:.2f}%  (val {100 * result.val_acc:.2f}%)")
    print(f"weights written to: {out}")
    return 0
