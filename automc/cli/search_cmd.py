"""``automc search``: the main job — search, fine-tune the Pareto winners, report.

The run is one :class:`automc.config.SearchConfig`: ``--config FILE`` loads it (default:
the built-in defaults), then every flag the user gave overrides its field. Flags default
to ``None`` so that an absent flag never overrides the file.
"""

from __future__ import annotations

import argparse
from typing import Any

from automc.config import FLAT_NAMES, SearchConfig, default_of
from automc.errors import AutomcError

HELP = "search per-layer pruning/quantization/low-rank under budgets, fine-tune the Pareto winners, write a report"


def _help(name: str, text: str = "") -> str:
    """``text`` plus where the setting lives in a config file and its default."""
    default = default_of(FLAT_NAMES[name])
    if isinstance(default, tuple):
        default = ",".join(default)
    where = f"config: {FLAT_NAMES[name]}" + ("" if default is None else f", default {default}")
    return f"{text} ({where})" if text else f"({where})"


def add_data_arguments(p: argparse.ArgumentParser, helped: Any) -> None:
    """The data conversion flags (``data.*`` settings), shared with ``automc train``;
    ``helped(name, text)`` words each help text."""
    p.add_argument(
        "--in-channels", type=int, help=helped("in_channels", "image channels given to the model: 1 or 3")
    )
    p.add_argument(
        "--input-size", type=int, help=helped("input_size", "side of the square images given to the model")
    )
    p.add_argument(
        "--normalize",
        help=helped(
            "normalize", "none, imagenet, train (train-split statistics) or MEAN/STD such as 0.5/0.25"
        ),
    )
    p.add_argument(
        "--augment", help=helped("augment", "training augmentation: none, crop, flip or crop+flip")
    )
    p.add_argument(
        "--train-subset",
        type=int,
        help=helped("train_subset", "train on a seeded random N of the train images"),
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", metavar="FILE", help="SearchConfig YAML/JSON file; the flags below override it"
    )
    p.add_argument(
        "--dump-config",
        metavar="PATH",
        help="write the effective config (file + flags) to PATH (.yaml/.yml/.json) and exit without running",
    )
    p.add_argument(
        "--model",
        help=_help(
            "model",
            "zoo name, tv:<torchvision model>, or package.module:factory of your own code (a class or "
            "function returning an nn.Module, imported from PYTHONPATH)",
        ),
    )
    p.add_argument(
        "--model-kwargs",
        metavar="JSON",
        help=_help(
            "model_kwargs", "keyword arguments of a package.module:factory model, e.g. '{\"width\": 2}'"
        ),
    )
    p.add_argument(
        "--train-step",
        metavar="PKG.MOD:FUNCTION",
        help="your training loss, package.module:function(model, (inputs, targets)) -> loss or "
        "(loss, logits), in place of cross-entropy for base training, the short_train proxy and "
        "fine-tuning (Python-only setting: not in the config file)",
    )
    p.add_argument(
        "--evaluate",
        metavar="PKG.MOD:FUNCTION",
        help="your accuracy, package.module:function(model, dataset) -> {'acc': float, ...}, for the "
        "base model and the winners (Python-only setting: not in the config file)",
    )
    p.add_argument(
        "--weights",
        help=_help(
            "weights",
            "state_dict of the base model (loaded with weights_only=True); unset: train and cache one",
        ),
    )
    p.add_argument(
        "--dataset",
        help=_help(
            "dataset", "digits (embedded), fashion-mnist, mnist, cifar10, imagefolder:PATH, synthetic"
        ),
    )
    p.add_argument(
        "--data-root",
        help=_help(
            "data_root", "folder of a local dataset (cifar10, fashion-mnist, mnist; base of imagefolder:PATH)"
        ),
    )
    add_data_arguments(p, _help)
    p.add_argument(
        "--space",
        help=_help("space", "search-space YAML path or shipped name (prune, quant, lowrank, joint)"),
    )
    p.add_argument(
        "--budget",
        dest="budgets",
        action="append",
        metavar="METRIC=LIMIT",
        help=_help(
            "budgets",
            "hard budget, repeatable or comma-separated: flops=0.3 (fraction of base), flops=20M, "
            "params=1M, size=1MB, latency=2ms, energy=0.5mJ",
        ),
    )
    p.add_argument(
        "--objectives", help=_help("objectives", "comma list: acc, kl, macs, params, size, latency, energy")
    )
    p.add_argument(
        "--controller",
        help=_help(
            "controller", "random, optuna-tpe, optuna-nsga2, ray, amc, ilp (see automc list controllers)"
        ),
    )
    p.add_argument(
        "--warm-start",
        metavar="SPEC",
        help=_help(
            "warm_start",
            "plans evaluated first (optuna-tpe, optuna-nsga2, amc): uniform (the default: one keep "
            "ratio for every group at the budget, float and int8), global (Torch-Pruning's global "
            "magnitude ranking at the budget), ilp (the solver's plans), several joined by + "
            "(uniform+global), or none",
        ),
    )
    p.add_argument(
        "--trials",
        type=int,
        help=_help(
            "trials",
            "total scored trials: over-budget candidates only priced do not count (a resumed search stops at this total)",
        ),
    )
    p.add_argument("--profile", help=_help("profile", "device profile name or YAML path ('none' to skip)"))
    p.add_argument(
        "--device",
        help=_help(
            "device",
            "where training, proxy scoring, fine-tuning and evaluation run: auto (CUDA when available), "
            "cpu, cuda, cuda:N; latency is measured as the profile says",
        ),
    )
    p.add_argument(
        "--no-amp",
        dest="amp",
        action="store_false",
        default=None,
        help=_help("amp", "no mixed precision (bf16/fp16 autocast) when training on CUDA"),
    )
    p.add_argument(
        "--threads",
        type=int,
        help=_help(
            "threads", "torch threads for the run; unset: $AUTOMC_THREADS, $OMP_NUM_THREADS or torch's"
        ),
    )
    p.add_argument(
        "--workers",
        type=int,
        help=_help(
            "workers",
            "DataLoader worker processes for training and evaluation (same batches for a seed); "
            "unset: 0 on the CPU, min(4, cores) on CUDA (with pinned memory)",
        ),
    )
    p.add_argument(
        "--channel-block",
        type=int,
        help=_help(
            "channel_block",
            "align pruned channel counts to a blocked channel layout of N channels per block "
            "(0: none); unset: the profile runtime's block when latency is a budget or objective",
        ),
    )
    p.add_argument(
        "--storage", help=_help("storage", "Optuna storage URL or path; unset: sqlite:///<out>/study.db")
    )
    p.add_argument(
        "--study", help=_help("study", "study name; unset: <model>-<dataset>-<controller>-s<seed>")
    )
    p.add_argument(
        "--new-study",
        action="store_true",
        default=None,
        help=_help("new_study", "start a fresh study (<study>-2, -3, ...) when --study already exists"),
    )
    p.add_argument("--seed", type=int, help=_help("seed"))
    p.add_argument("--out", help=_help("out", "run/report folder; unset: reports/<study>"))
    p.add_argument(
        "--base-epochs",
        type=int,
        help=_help("base_epochs", "epochs for training the base model; unset: the recipe's"),
    )
    p.add_argument(
        "--base-lr",
        type=float,
        help=_help("base_lr", "peak learning rate for training the base model; unset: the recipe's"),
    )
    p.add_argument(
        "--finetune-top", type=int, help=_help("finetune_top", "fine-tune K winners spread along the front")
    )
    p.add_argument(
        "--finetune-choose",
        metavar="HOW",
        help=_help(
            "finetune_choose",
            "spread (along the front) or best (the feasible trials best in the first objective, "
            "whatever their cost: for a hard budget)",
        ),
    )
    p.add_argument("--finetune-epochs", type=int, help=_help("finetune_epochs"))
    p.add_argument("--kd-temperature", type=float, help=_help("kd_temperature"))
    p.add_argument(
        "--kd-alpha", type=float, help=_help("kd_alpha", "weight of the distillation loss (1-alpha: labels)")
    )
    p.add_argument(
        "--calib-batches", type=int, help=_help("calib_batches", "batches for adaptive-BN recalibration")
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help=_help("batch_size", "batch size of the recalibration and proxy batches"),
    )
    p.add_argument(
        "--proxy",
        help=_help(
            "proxy",
            "how candidates are scored: short_train (--proxy-steps SGD steps distilled from the base "
            "model, then BatchNorm recalibration) or adaptive_bn (recalibration only: ~4x faster, "
            "ranks worse, see README)",
        ),
    )
    p.add_argument("--proxy-steps", type=int, help=_help("proxy_steps", "SGD steps of the short_train proxy"))
    p.add_argument("--proxy-lr", type=float, help=_help("proxy_lr", "learning rate of the short_train proxy"))
    p.add_argument(
        "--ray-address",
        help=_help("ray_address", "join this Ray cluster (also RAY_ADDRESS) with --controller ray"),
    )
    p.add_argument(
        "--cpus-per-trial", type=float, help=_help("cpus_per_trial", "CPUs per trial with --controller ray")
    )
    p.add_argument(
        "--gpus-per-trial", type=float, help=_help("gpus_per_trial", "GPUs per trial with --controller ray")
    )
    p.add_argument(
        "--no-onnx",
        dest="export_onnx",
        action="store_false",
        default=None,
        help=_help("export_onnx", "skip ONNX export of the winners"),
    )
    p.add_argument(
        "--quiet",
        dest="progress",
        action="store_false",
        default=None,
        help=_help("progress", "no progress bars"),
    )


def _comma_list(items: list[str]) -> list[str]:
    return [t.strip() for item in items for t in item.split(",") if t.strip()]


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flat settings (``FLAT_NAMES`` keys) of the flags the user gave.

    Raises:
        AutomcError: ``--budget`` given with nothing but commas.
    """
    given = {name: getattr(args, name) for name in FLAT_NAMES if getattr(args, name, None) is not None}
    if "budgets" in given:
        given["budgets"] = _comma_list(given["budgets"])
        if not given["budgets"]:
            raise AutomcError("--budget: empty")
    if "objectives" in given:
        given["objectives"] = _comma_list([given["objectives"]])
    if given.get("profile") in ("", "none"):
        given["profile"] = None
    return given


def effective_config(args: argparse.Namespace) -> SearchConfig:
    """``--config`` (or the defaults) with the given flags applied."""
    config = SearchConfig.load(args.config) if args.config else SearchConfig()
    return config.with_overrides(**overrides(args))


def user_model(args: argparse.Namespace, config: SearchConfig) -> dict[str, Any]:
    """``{"model": nn.Module}`` when ``--model`` names the user's own code (``pkg.mod:factory``),
    built with ``config.base.model_kwargs``; ``{}`` otherwise. Only a path typed as
    ``--model`` is ever imported.

    Raises:
        AutomcError: the path does not resolve, the factory raises or returns no ``nn.Module``.
    """
    from automc.models import user

    if not args.model or not user.is_import_path(args.model):
        return {}
    return {"model": user.build(args.model, user.parse_kwargs(config.base.model_kwargs))}


def user_functions(args: argparse.Namespace) -> dict[str, Any]:
    """``train_step=`` and ``evaluate=`` of the ``--train-step`` / ``--evaluate`` import paths
    the user typed (``{}`` for neither).

    Raises:
        AutomcError: a path that does not resolve to a function (``automc.models.user.resolve``).
    """
    from automc.models import user

    flags = {"train_step": "--train-step", "evaluate": "--evaluate"}
    return {
        name: user.resolve(getattr(args, name), flag)
        for name, flag in flags.items()
        if getattr(args, name, None)
    }


def run(args: argparse.Namespace) -> int:
    config = effective_config(args)
    if args.dump_config:
        config.dump(args.dump_config)
        print(f"config written to {args.dump_config}")
        return 0
    from automc.pipeline import search, summary_table

    result = search(config, **user_model(args, config), **user_functions(args))
    print(summary_table(result))
    return 0
