"""``automc sensitivity``: per-layer proxy accuracy vs keep ratio and vs weight bits (CSV + PNG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from automc.cli.common import add_model_arguments
from automc.errors import AutomcError

HELP = "per-layer pruning/quantization sensitivity (proxy accuracy vs keep ratio and bits) as CSV + PNG"


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise AutomcError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise AutomcError(f"{flag}: give at least one value")
    return values


def _ints(text: str, flag: str) -> list[int]:
    values = _floats(text, flag)
    if any(v != int(v) for v in values):
        raise AutomcError(f"{flag}: expected comma-separated integers, got {text!r}")
    return [int(v) for v in values]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--device",
        default="auto",
        help="where the proxy scores: auto (CUDA when available), cpu, cuda, cuda:N",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: $OMP_NUM_THREADS)")
    parser.add_argument("--dataset", required=True, help="dataset name (automc list datasets)")
    parser.add_argument(
        "--weights", default=None, help="state_dict to analyse (default: the cached base model)"
    )
    parser.add_argument("--keep", default="0.25,0.5,0.75", help="keep ratios to try (default 0.25,0.5,0.75)")
    parser.add_argument("--bits", default="2,4,8", help="weight bit widths to try (default 2,4,8)")
    parser.add_argument(
        "--criterion", default="l1", help="pruning criterion (automc list criteria; default l1)"
    )
    parser.add_argument("--quantizer", default="uniform", help="weight quantizer (default uniform)")
    parser.add_argument("--out", default="sensitivity", help="output folder (default ./sensitivity)")
    parser.add_argument("--data-root", default=None, help="folder holding on-disk datasets (cifar10)")
    parser.add_argument(
        "--val-limit", type=int, default=1000, help="val samples the proxy scores on (default 1000)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the base model and proxy batches (default 0)"
    )


def run(args: argparse.Namespace) -> int:
    keeps = _floats(args.keep, "--keep")
    bits = _ints(args.bits, "--bits")
    if args.val_limit < 1:
        raise AutomcError(f"--val-limit must be at least 1, got {args.val_limit}")
    if args.weights is not None and not Path(args.weights).is_file():
        raise AutomcError(f"--weights: no such file {args.weights}")
    from automc.compress import criteria, quantizers

    criterion = criteria.get(
        args.criterion
    )  # data-driven criteria get the proxy's calibration inputs, no labels
    quantizers.get(args.quantizer)

    from automc import graph, sensitivity
    from automc.data import load
    from automc.device import resolve
    from automc.models import create, load_weights, user
    from automc.proxy import AdaptiveBNProxy, ProxyBatches, ProxyData
    from automc.train import FitOptions, base_model, set_threads

    device = resolve(args.device)
    set_threads(args.threads)
    splits = load(args.dataset, args.data_root, seed=args.seed)
    if user.is_import_path(args.model):  # the user's own model, analysed as it is (or with --weights)
        model = user.build(args.model, user.parse_kwargs(args.model_kwargs))
        if args.weights is not None:
            load_weights(model, args.weights)
        model.eval()
    elif args.weights is not None:
        model = create(args.model, num_classes=splits.num_classes, in_channels=splits.in_channels)
        load_weights(model, args.weights)
        model.eval()
    else:
        model, _ = base_model(
            args.model, args.dataset, splits=splits, options=FitOptions(seed=args.seed, progress=False)
        )
    data = ProxyData.from_splits(
        splits, ProxyBatches(calib_batches=4, calib_batch_size=64, val_limit=args.val_limit), seed=args.seed
    )
    example = splits.example_input()
    layers = graph.layers(model, example)
    score = sensitivity.proxy_scorer(
        model,
        example,
        AdaptiveBNProxy(data=data).to(device),
        calib_batches=data.calib_inputs if criterion.needs_data else (),
        seed=args.seed,
    )

    def progress(text: str) -> None:
        sys.stderr.write(f"sensitivity: {text}\n")

    rows = sensitivity.analyse(
        layers,
        score,
        keeps=keeps,
        bits=bits,
        criterion=args.criterion,
        quantizer=args.quantizer,
        progress=progress if sys.stderr.isatty() else None,
    )
    out = Path(args.out)
    csv_path = sensitivity.write_csv(rows, out / "sensitivity.csv")
    png_path = sensitivity.plot(rows, out / "sensitivity.png")
    base = rows[0].acc
    worst = min((r for r in rows[1:]), key=lambda r: r.acc, default=None)
    print(
        f"{args.model} on {args.dataset}: base proxy accuracy {100 * base:.2f}% over {len(rows) - 1} points"
    )
    if worst is not None:
        print(f"most sensitive: {worst.layer} at {worst.param}={worst.value:g} -> {100 * worst.acc:.2f}%")
    print(f"wrote {csv_path} and {png_path}")
    return 0
