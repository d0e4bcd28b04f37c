"""``automc train``: train a zoo model on a dataset (or load it from the cache)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from automc.cli.search_cmd import add_data_arguments
from automc.errors import AutomcError

DATA_FLAGS = ("dataset", "data_root", "in_channels", "input_size", "normalize", "augment", "train_subset")
"""The ``automc train`` flags that are ``data.*`` settings (validated as in ``automc search``)."""

HELP = "train a base model on a dataset (cached under $AUTOMC_HOME) and print its test accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model name (automc list models) or tv:<torchvision name>"
    )
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


def run(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise AutomcError(f"--epochs must be at least 1, got {args.epochs}")
    import torch

    from automc.config import SearchConfig
    from automc.models import create
    from automc.pipeline.setup import load_splits
    from automc.train import base_model, check_lr, set_threads

    check_lr(args.lr, "--lr")
    flags = {name: getattr(args, name) for name in DATA_FLAGS}
    data_cfg = SearchConfig().with_overrides(**{k: v for k, v in flags.items() if v is not None}).data

    set_threads()
    create(args.model)  # an unknown model name fails before the data is read
    splits = load_splits(data_cfg, seed=args.seed)
    model, info = base_model(
        args.model,
        args.dataset,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        splits=splits,
        progress=not args.no_progress,
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
