"""Benchmark automc against Torch-Pruning baselines -> reports/bench/baselines.json.

One base resnet20 is trained (and cached) by automc on Fashion-MNIST; every method starts
from those weights. Per budget (``--budgets``: fractions of the base model's MACs, and of
its latency measured on the ONNX Runtime profile) and per seed:

* ``automc-joint`` / ``automc-prune``: ``automc.search`` with its default controller and warm
  start (``--warm-start``; default ``uniform``) in the joint (prune + quantization + low rank)
  and the prune-only space; ``automc-joint-amc``:
  the same with ``--other-controller`` (AMC led the controller bench, ``search.json``).
  The search fine-tunes its ``--finetune-top`` winners (``--finetune-choose best``: the
  feasible trials best by the proxy); the reported one is the best on the val split among
  those meeting the budget as measured.
* ``random-joint``: automc's ``random`` controller (no warm start), same space, trials and fine-tune.
* ``tp-l1-uniform`` / ``tp-l1-global`` / ``tp-taylor``: Torch-Pruning ``MetaPruner`` with
  ``MagnitudeImportance(p=1)`` (one ratio for every layer / ``global_pruning=True``) and
  with ``TaylorImportance`` (one ratio; gradients of the cross-entropy on seeded train
  batches). The pruning ratio is bisected until the fvcore MACs meet a MACs budget; at a
  latency budget it is the smallest ratio whose ONNX Runtime latency, timed interleaved with
  the base model, meets it (``scan_ratio``: 18 evenly spaced ratios, then 3 halvings towards
  the one below; latency is not monotone in the ratio on a blocked channel layout). At
  latency budgets each is also run as ``...-int8``: the ratio found on the
  int8 (static QDQ, every conv and linear layer) artifact's latency, fine-tuned in fp32,
  then quantized post-training. ``tp-l1-uniform-aligned`` (latency budgets): uniform L1 with
  ``round_to`` at the runtime's channel block (``OnnxRuntime.channel_block``), what a user who
  knows ONNX Runtime's blocked layout would add; it keeps multiples of the block only, while
  automc's aligned search also keeps fewer channels than a block (``block_layout_channels``).
  Its kept channels are a step function of the ratio (each layer floored to whole blocks, a
  layer left whole where that floor is 0), so its ratio is the grid's, not halved further.

Every model is fine-tuned by ``automc.train.finetune`` with knowledge distillation from
the base model (``FINETUNE_RECIPE`` with ``--finetune-epochs``, the search config's KD
temperature and alpha), with the same seed. MACs are counted by fvcore on the final
models; latency is measured on ONNX Runtime against the base model timed in the same
interleaved run (the profile's warm-up, repeats and statistic). ``--train-subset``,
``--val-subset`` and ``--test-subset`` shrink the splits (seeded; the same for every
method) for runs on a slow or busy machine. The accuracy compared is
the PyTorch test accuracy at MACs budgets and the test accuracy of the shipped ONNX
Runtime artifact at latency budgets. ``margins``: per budget, the automc method with the
best median val accuracy against the baseline with the best median test accuracy,
median over seeds of the paired test-accuracy difference in points, counting only the
results whose shipped model meets the budget by its measured cost (``meets_budget_measured``;
``over_budget`` names the others with their measured fraction of the base).

Each (method, budget, seed) result is written to the JSON as soon as it is done; rerunning
the same command skips those present (a rerun may add budgets), and a JSON written with other
settings, or whose results start from another base model (a base retrained elsewhere), is refused.
``missing`` lists what the command has not measured yet (``--max-minutes`` stops starting
new results after that long; the per-run command, load average and wall time are in ``runs``).

    .venv/bin/python scripts/bench_baselines.py --threads 2
    .venv/bin/python scripts/bench_baselines.py --quick --out /tmp/baselines.json
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from automc.schema.hw_profile import profile_name

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "automc/bench-baselines"
AUTOMC_METHODS = ("automc-joint", "automc-prune", "automc-joint-amc")
SEARCH_BASELINES = ("random-joint",)
TP_METHODS = ("tp-l1-uniform", "tp-l1-global", "tp-taylor")
INT8_METHODS = tuple(f"{m}-int8" for m in TP_METHODS)
ALIGNED_TP = "tp-l1-uniform-aligned"
"""Uniform L1 with Torch-Pruning's ``round_to`` at the runtime's channel block (latency budgets)."""
MAIN = {
    "flops": ("automc-joint", "automc-prune", *TP_METHODS),
    "latency": ("automc-joint", "automc-prune", *INT8_METHODS, "tp-l1-uniform", ALIGNED_TP),
}
"""The main comparison per budget metric, run for every seed before the rest: an interrupted run has it.
At latency budgets automc's prune-only search is in it too: the joint space's cheapest plan may be
priced slower than the base model, and the search then refuses the budget."""
MAX_RATIO = 0.9
"""Largest Torch-Pruning channel ratio tried."""
TAYLOR_BATCHES = 4
TARGET_POINTS = {"flops=0.15": 1.0, "flops=0.3": 0.3, "latency=0.5": 1.0}
"""Targets of the comparison: automc's winner at least this many test-accuracy points above the best baseline."""
DEFAULTS = {
    "train_subset": 2000,
    "val_subset": 1000,
    "test_subset": 2000,
    "base_epochs": 15,
    "trials": 20,
    "finetune_epochs": 2,
    "seeds": 3,
}
"""The defaults: sized for this 2-core machine while it is shared (README, "Against Torch-Pruning")."""
QUICK = {"train_subset": 1000, "base_epochs": 2, "trials": 6, "finetune_epochs": 1, "seeds": 1}
"""What ``--quick`` sets (unless given explicitly)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the dataset's own)")
    p.add_argument(
        "--in-channels",
        type=int,
        default=3,
        help="input channels (default 3: grey replicated to 3 channels, as baselines.json was measured; "
        "the ORT profile holds resnet20 fits for 1 and 3)",
    )
    p.add_argument("--train-subset", type=int, default=None, help="train images (default 2000; 0 = all)")
    p.add_argument("--val-subset", type=int, default=None, help="val images (default 1000; 0 = all)")
    p.add_argument("--test-subset", type=int, default=None, help="test images (default 2000; 0 = all)")
    p.add_argument(
        "--base-epochs", type=int, default=None, help="base-model epochs (default 15; 0 = the recipe's)"
    )
    p.add_argument("--budgets", default="flops=0.3,flops=0.15,latency=0.5")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3)")
    p.add_argument("--trials", type=int, default=None, help="search trials (default 20)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="KD fine-tune epochs (default 2)")
    p.add_argument("--finetune-top", type=int, default=3, help="winners each search fine-tunes (default 3)")
    p.add_argument(
        "--finetune-choose",
        default="best",
        help="how the search picks them (default best: the feasible trials best by the proxy, "
        "what a hard budget asks for; spread: along the front)",
    )
    p.add_argument("--controller", default="optuna-tpe", help="automc's controller (its default)")
    p.add_argument(
        "--warm-start", default=None, help="automc's warm start (default: the controller's, uniform)"
    )
    p.add_argument("--proxy", default=None, help="automc's search proxy (default: the search's, short_train)")
    p.add_argument(
        "--proxy-lr",
        type=float,
        default=None,
        help="the short_train proxy's learning rate (default: the search's)",
    )
    p.add_argument("--other-controller", default="amc", help="the other controller compared")
    p.add_argument("--methods", default="", help="comma list (default: all that apply to a budget)")
    p.add_argument(
        "--profile",
        default="auto",
        type=profile_name,
        help="device profile (auto: the shipped one for this CPU)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no new result after this many minutes (rerun the command to go on; 0 = only rewrite the summary)",
    )
    p.add_argument("--quick", action="store_true", help=f"small run: {QUICK} unless given")
    p.add_argument(
        "--work",
        default=None,
        help="search and artifact folders (default: one per --out under the temp folder)",
    )
    p.add_argument("--out", default=str(ROOT / "reports" / "bench" / "baselines.json"))
    args = p.parse_args(argv)
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK.get(key, value) if args.quick else value)
    for key in ("train_subset", "val_subset", "test_subset", "base_epochs"):
        if getattr(args, key) == 0:
            setattr(args, key, None)
    if args.proxy_lr is None:
        from automc.config import SearchConfig

        args.proxy_lr = SearchConfig().proxy.lr
    return args


SEARCH_SETTINGS = frozenset(
    {
        "trials",
        "finetune_top",
        "finetune_choose",
        "controller",
        "warm_start",
        "proxy",
        "proxy_lr",
        "other_controller",
        "space_criteria",
    }
)
"""Settings only automc's searches read: a rerun that changes only these keeps the Torch-Pruning results."""


def space_criteria() -> dict[str, str]:
    """The pruning criteria of each search space the automc methods search (``search_spaces/``),
    joined by ``+`` where a space searches several."""
    from automc.space import SearchSpace

    return {
        name: "+".join(SearchSpace.load(ROOT / "search_spaces" / f"{name}.yaml").spec.criteria)
        for name in ("joint", "prune")
    }


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What the results depend on: a rerun with other settings must not mix into the JSON.
    (``--budgets`` is not among them: every result is keyed by its budget, and a rerun may add one.)"""
    keep = (
        "model",
        "dataset",
        "data_root",
        "in_channels",
        "train_subset",
        "val_subset",
        "test_subset",
        "base_epochs",
        "trials",
        "finetune_epochs",
        "finetune_top",
        "finetune_choose",
        "controller",
        "warm_start",
        "proxy",
        "other_controller",
        "profile",
        "threads",
        "proxy_lr",
    )
    return {**{k: getattr(args, k) for k in keep}, "space_criteria": space_criteria()}


def methods_for(budget: str, chosen: list[str]) -> list[str]:
    """The methods run at ``budget`` (all that apply, or those of ``chosen`` that apply), the
    main comparison first so that an interrupted run has it."""
    if budget.startswith("latency"):
        pairs = [(f"{m}-int8", m) for m in TP_METHODS]
        apply = (
            "automc-joint",
            "automc-prune",
            *[m for pair in pairs for m in pair],
            ALIGNED_TP,
            *SEARCH_BASELINES,
        )
    else:
        apply = ("automc-joint", *TP_METHODS, *AUTOMC_METHODS[1:], *SEARCH_BASELINES)
    return [m for m in apply if not chosen or m in chosen]


@dataclass
class Context:
    """What every method shares: data, base model and its figures, the runtime and its timing protocol."""

    args: argparse.Namespace
    config: Any
    splits: Any
    base: Any
    base_weights: str
    example: Any
    base_macs: int
    runtime: Any
    base_artifact: Path
    timing: Mapping[str, Any]
    work: Path
    ratios: dict[str, Any]
    """Bisected Torch-Pruning ratios by ``method|budget`` (seed-independent importances only)."""


def summarise(xs: list[float]) -> dict[str, float | int | None]:
    """Median, min and max of ``xs``."""
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def accuracy_keys(budget: str) -> tuple[str, str]:
    """``(test, val)`` accuracy keys compared at ``budget``: the shipped artifact's at latency budgets."""
    return (
        ("test_acc_runtime", "val_acc_runtime") if budget.startswith("latency") else ("test_acc", "val_acc")
    )


def fraction_of(record: Mapping[str, Any], budget: str) -> float | None:
    """The measured cost of ``record`` as a fraction of the base model's, in ``budget``'s metric."""
    key = "latency_fraction" if budget.startswith("latency") else "macs_fraction"
    value = record.get(key)
    return None if value is None else float(value)


def meets_measured(record: Mapping[str, Any], budget: str) -> bool:
    """Whether ``record``'s shipped model meets ``budget`` by its measured cost (fvcore MACs, or the
    runtime latency timed with the base); a cost not measured (a model that did not ship) does not."""
    fraction = fraction_of(record, budget)
    return fraction is not None and fraction <= budget_value(budget) * (1 + 1e-9)


def budget_value(budget: str) -> float:
    from automc.budget import parse_budget

    return float(parse_budget(budget).value)


# ---- measurement ----
def ship_and_time(
    ctx: Context, model: Any, folder: Path, *, int8: bool, seed: int, accuracy: bool
) -> dict[str, Any]:
    """Export ``model`` for ONNX Runtime (fp32, or every conv/linear int8 with seeded calibration),
    time it interleaved with the base artifact (and with its fp32 export when int8), and
    with ``accuracy`` measure its test accuracy there."""
    from torch import nn

    from automc.hardware.runtimes.winner import calibration_inputs, runtime_accuracy
    from automc.hardware.timing import time_artifacts

    rt = ctx.runtime
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = rt.export(model, ctx.example, folder / "fp32.onnx")
    artifacts = [ctx.base_artifact, fp32]
    if int8:
        layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        calib = calibration_inputs(ctx.splits.train, seed=seed)
        artifacts.append(rt.export(model, ctx.example, folder / "int8.onnx", int8_layers=layers, calib=calib))
    timings = time_artifacts(
        rt,
        artifacts,
        ctx.example.numpy(),
        threads=int(ctx.timing["threads"]),
        warmup=int(ctx.timing["warmup"]),
        repeats=int(ctx.timing["repeats"]),
    )
    stat = str(ctx.timing["statistic"])
    base_ms, fp32_ms = timings[0].value(stat), timings[1].value(stat)
    ms = timings[-1].value(stat)
    threads = int(ctx.timing["threads"])
    out = {
        "latency_ms": ms,
        "base_latency_ms": base_ms,
        "latency_fraction": ms / base_ms,
        "speedup": base_ms / ms,
        "int8": int8,
    }
    if accuracy:
        out["test_acc_runtime"] = runtime_accuracy(rt, artifacts[-1], ctx.splits.test, threads=threads)
    if int8:
        out.update(fp32_latency_ms=fp32_ms, int8_speedup=fp32_ms / ms)
    return out


def latency_fraction(ctx: Context, model: Any, *, int8: bool, seed: int) -> float:
    """Measured ONNX Runtime latency of ``model`` over the base model's, timed interleaved."""
    import tempfile

    from torch import nn

    from automc.hardware.runtimes.winner import calibration_inputs
    from automc.hardware.timing import time_artifacts

    rt = ctx.runtime
    with tempfile.TemporaryDirectory() as tmp:
        if int8:
            layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
            calib = calibration_inputs(ctx.splits.train, seed=seed)
            path = rt.export(model, ctx.example, Path(tmp) / "m.onnx", int8_layers=layers, calib=calib)
        else:
            path = rt.export(model, ctx.example, Path(tmp) / "m.onnx")
        base_t, t = time_artifacts(
            rt,
            [ctx.base_artifact, path],
            ctx.example.numpy(),
            threads=int(ctx.timing["threads"]),
            warmup=int(ctx.timing["warmup"]),
            repeats=int(ctx.timing["repeats"]),
        )
    stat = str(ctx.timing["statistic"])
    return float(t.value(stat) / base_t.value(stat))


# ---- Torch-Pruning baselines ----
def tp_prune(ctx: Context, method: str, ratio: float, seed: int) -> Any:
    """A copy of the base model pruned by Torch-Pruning at channel ``ratio`` (a plain, smaller nn.Module)."""
    import torch
    import torch.nn.functional as F
    import torch_pruning as tp
    from torch import nn

    from automc.data import loader

    model = copy.deepcopy(ctx.base).eval()
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    taylor = method.startswith("tp-taylor")
    importance = tp.importance.TaylorImportance() if taylor else tp.importance.MagnitudeImportance(p=1)
    pruner = tp.pruner.MetaPruner(
        model,
        ctx.example,
        importance=importance,
        pruning_ratio=ratio,
        global_pruning=method.startswith("tp-l1-global"),
        max_pruning_ratio=MAX_RATIO,
        ignored_layers=[last],
        round_to=ctx.runtime.channel_block or None if method == ALIGNED_TP else None,
    )
    if taylor:
        model.zero_grad()
        batches = loader(ctx.splits.train, 64, shuffle=True, seed=seed)
        for _, (x, y) in zip(range(TAYLOR_BATCHES), batches, strict=False):
            F.cross_entropy(model(x), y).backward()
    pruner.step()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        model(ctx.example)
    return model.eval()


def bisect_ratio(measure: Callable[[float], float], target: float, steps: int) -> tuple[float, float]:
    """The smallest channel ratio in ``[0, MAX_RATIO]`` whose ``measure`` meets ``target``, to ``steps`` halvings.

    Returns:
        ``(ratio, its measure)``.

    Raises:
        AutomcError: even ``MAX_RATIO`` does not meet the target.
    """
    from automc.errors import AutomcError

    at_hi = measure(MAX_RATIO)
    if at_hi > target:
        raise AutomcError(f"Torch-Pruning at ratio {MAX_RATIO} reaches {at_hi:.3f} of the base, not {target}")
    return _halve(measure, target, 0.0, MAX_RATIO, at_hi, steps)


def _halve(
    measure: Callable[[float], float], target: float, lo: float, hi: float, at_hi: float, steps: int
) -> tuple[float, float]:
    """``(ratio, its measure)`` after ``steps`` halvings of ``[lo, hi]`` (``hi`` meets ``target``,
    its measure ``at_hi``), keeping the smaller half whose upper end meets it."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        value = measure(mid)
        if value <= target:
            hi, at_hi = mid, value
        else:
            lo = mid
    return hi, at_hi


def scan_ratio(
    measure: Callable[[float], float], target: float, points: int, steps: int = 0
) -> tuple[float, float]:
    """The smallest of ``points`` evenly spaced channel ratios in ``(0, MAX_RATIO]`` whose
    ``measure`` meets ``target``, then bisected ``steps`` times towards the grid ratio below it.

    For latency budgets on a runtime with a blocked channel layout: a pruned conv off the
    layout runs a generic kernel, so latency is not monotone in the ratio (a larger ratio can
    be faster), and a bisection over the whole range can stop at a ratio that prunes far more
    than the budget needs. With Torch-Pruning's ``round_to`` the kept channels are a step
    function of the ratio (each layer floored to whole blocks, a layer left whole where that
    floor is 0).

    Returns:
        ``(ratio, its measure)``.

    Raises:
        AutomcError: no ratio meets the target (the smallest measure found is named).
    """
    from automc.errors import AutomcError

    seen = []
    for i in range(1, points + 1):
        ratio = MAX_RATIO * i / points
        value = measure(ratio)
        if value <= target:
            return _halve(measure, target, MAX_RATIO * (i - 1) / points, ratio, value, steps)
        seen.append((value, ratio))
    best, at = min(seen)
    raise AutomcError(
        f"Torch-Pruning reaches at best {best:.3f} of the base (ratio {at:.2f} of {points} up to "
        f"{MAX_RATIO}), not {target}"
    )


def run_tp(ctx: Context, method: str, budget: str, seed: int) -> dict[str, Any]:
    """One Torch-Pruning baseline: find the ratio that meets the budget, fine-tune, measure."""
    import torch

    from automc import train
    from automc.pipeline.winners import measured_macs

    torch.manual_seed(seed)
    target = budget_value(budget)
    int8 = method.endswith("-int8")
    t0 = time.perf_counter()
    # L1 importance does not depend on the seed: its ratio is found once per budget
    cache_key = None if method.startswith("tp-taylor") else f"{method}|{budget}"
    found = ctx.ratios.get(cache_key) if cache_key else None
    if found is None:
        if budget.startswith("latency"):

            def measure(r: float) -> float:
                return latency_fraction(ctx, tp_prune(ctx, method, r, seed), int8=int8, seed=seed)

            ratio, _ = scan_ratio(measure, target, points=18, steps=0 if method == ALIGNED_TP else 3)
        else:

            def measure(r: float) -> float:
                return measured_macs(tp_prune(ctx, method, r, seed), ctx.example) / ctx.base_macs

            ratio, _ = bisect_ratio(measure, target, steps=7)
        found = {"ratio": ratio, "bisect_seconds": time.perf_counter() - t0, "seed": seed}
        if cache_key:
            ctx.ratios[cache_key] = found
    ratio = float(found["ratio"])
    model = tp_prune(ctx, method, ratio, seed)
    reused_s = float(found["bisect_seconds"]) if found["seed"] != seed else 0.0
    prune_s = time.perf_counter() - t0 + reused_s
    before = train.evaluate(model, ctx.splits.test)["acc"]
    ft = ctx.config.finetune
    t1 = time.perf_counter()
    val = None
    if ctx.args.finetune_epochs:
        val = train.finetune(
            model,
            ctx.splits,
            replace(train.FINETUNE_RECIPE, epochs=ctx.args.finetune_epochs),
            distillation=train.Distillation(
                teacher=ctx.base, temperature=ft.kd_temperature, alpha=ft.kd_alpha
            ),
            options=train.FitOptions(seed=seed, progress=False),
        )
    finetune_s = time.perf_counter() - t1
    model.eval()
    macs = measured_macs(model, ctx.example)
    record: dict[str, Any] = {
        "ratio": ratio,
        "ratio_bisected_at_seed": found["seed"],
        "macs": macs,
        "macs_fraction": macs / ctx.base_macs,
        "params": int(sum(p.numel() for p in model.parameters())),
        "test_acc_before": float(before),
        "test_acc": float(train.evaluate(model, ctx.splits.test)["acc"]),
        "val_acc": float(val.val_acc if val is not None else train.evaluate(model, ctx.splits.val)["acc"]),
        "prune_seconds": prune_s,
        "finetune_seconds": finetune_s,
    }
    folder = ctx.work / f"{method}-{budget}-s{seed}"
    record.update(
        ship_and_time(ctx, model, folder, int8=int8, seed=seed, accuracy=budget.startswith("latency"))
    )
    record["wall_seconds"] = time.perf_counter() - t0 + reused_s
    return record


# ---- automc searches ----
def search_settings(method: str, args: argparse.Namespace) -> tuple[str, str]:
    """``(space, controller)`` of an automc search method."""
    if method == "automc-prune":
        return "prune", args.controller
    if method == "automc-joint-amc":
        return "joint", args.other_controller
    if method == "random-joint":
        return "joint", "random"
    return "joint", args.controller


def run_search(ctx: Context, method: str, budget: str, seed: int) -> dict[str, Any]:
    """One ``automc.search`` run from the shared base weights; the winner is the best on val
    among the fine-tuned winners that meet the budget as measured (all of them when none does)."""
    import automc

    space, controller = search_settings(method, ctx.args)
    run_dir = ctx.work / f"{method}-{budget}-s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    result = automc.search(
        ctx.config,
        data=ctx.splits,
        space=space,
        controller=controller,
        budgets=(budget,),
        seed=seed,
        out=str(run_dir),
        **({"warm_start": None} if controller == "random" else {}),
    )
    wall = time.perf_counter() - t0
    _, val_key = accuracy_keys(budget)
    rows = []
    for w in result.winners:
        f = dict(w.figures)
        macs = float(f["macs_measured"])
        row = {
            "trial": w.trial,
            "macs": macs,
            "macs_fraction": macs / ctx.base_macs,
            "params": int(f.get("params", 0)),
            "test_acc_before": float(f["test_acc_before"]),
            "test_acc": float(f["test_acc"]),
            "val_acc": float(f["val_acc"]),
            "int8_layers": int(f.get("runtime_int8_layers", 0)),
        }
        if "speedup_measured" in f:
            row.update(
                latency_ms=float(f["latency_ms_measured"]),
                base_latency_ms=float(f["base_latency_ms_runtime"]),
                latency_fraction=1.0 / float(f["speedup_measured"]),
                speedup=float(f["speedup_measured"]),
                test_acc_runtime=float(f["test_acc_runtime"]),
                val_acc_runtime=float(f["val_acc_runtime"]),
            )
        else:
            row["runtime_error"] = str(f.get("runtime_error", "not shipped"))
        rows.append(row)
    meeting = [r for r in rows if meets_measured(r, budget)]
    pool = meeting or rows
    if not pool:
        return {"error": "no winner (nothing feasible)", "wall_seconds": wall, "trials": len(result.trials)}
    best = max(pool, key=lambda r: float(r.get(val_key, r["val_acc"])))
    feasible = sum(1 for t in result.trials if t.feasible)
    return {
        **best,
        "meets_budget_measured": bool(meeting),
        "winners": rows,
        "trials": len(result.trials),
        "feasible_trials": feasible,
        "search_seconds": float(result.base.get("search_seconds", 0.0)),
        "wall_seconds": wall,
    }


# ---- summary ----
def summary_of(results: Mapping[str, Mapping[str, Any]], budgets: list[str]) -> dict[str, Any]:
    """Per budget and method: median/min/max over seeds of the figures."""
    out: dict[str, Any] = {}
    figures = (
        "test_acc",
        "test_acc_before",
        "val_acc",
        "test_acc_runtime",
        "val_acc_runtime",
        "macs_fraction",
        "macs",
        "latency_ms",
        "latency_fraction",
        "speedup",
        "int8_speedup",
        "wall_seconds",
    )
    for budget in budgets:
        per: dict[str, Any] = {}
        for key, rec in results.items():
            method, b, _ = key.split("|")
            if b != budget or "error" in rec:
                continue
            per.setdefault(method, []).append(rec)
        out[budget] = {
            method: {
                "seeds": len(recs),
                **{f: summarise([float(r[f]) for r in recs if r.get(f) is not None]) for f in figures},
                "meets_budget_measured": sum(meets_measured(r, budget) for r in recs),
            }
            for method, recs in sorted(per.items())
        }
    return out


def margins_of(results: Mapping[str, Mapping[str, Any]], budgets: list[str]) -> dict[str, Any]:
    """Per budget: automc's method with the best median val accuracy against the baseline with the
    best median test accuracy; the margin is the median over seeds of their paired test-accuracy
    difference, in points, or, where no seed has both in budget (``paired`` false), the
    difference of their medians over their own seeds. Only results whose shipped model meets
    the budget by its measured cost count (:func:`meets_measured`, the same rule for automc and
    the baselines: a result at 76% of the base's latency is no answer to a 50% budget);
    ``over_budget`` names the others."""
    out: dict[str, Any] = {}
    for budget in budgets:
        test_key, val_key = accuracy_keys(budget)
        by_method: dict[str, dict[int, Mapping[str, Any]]] = {}
        over: dict[str, float | None] = {}
        for key, rec in results.items():
            method, b, seed = key.split("|")
            if b != budget or "error" in rec or rec.get(test_key) is None:
                continue
            if not meets_measured(rec, budget):
                fraction = fraction_of(rec, budget)
                over[key] = None if fraction is None else round(fraction, 4)
                continue
            by_method.setdefault(method, {})[int(seed[1:])] = rec

        def median(
            method: str, k: str, by: Mapping[str, Mapping[int, Mapping[str, Any]]] = by_method
        ) -> float:
            return statistics.median(float(r[k]) for r in by[method].values())

        ours = [m for m in by_method if m in AUTOMC_METHODS]
        theirs = [m for m in by_method if m not in AUTOMC_METHODS]
        over_theirs = [k for k in over if k.split("|")[0] not in AUTOMC_METHODS]
        if not theirs and not over_theirs:
            continue
        refused = {
            key.split("|")[0]: rec["error"]
            for key, rec in results.items()
            if key.split("|")[1] == budget and key.split("|")[0] in AUTOMC_METHODS and "error" in rec
        }
        if not theirs:  # every baseline ran, none met the budget as measured
            out[budget] = {
                "best_baseline": None,
                "automc_errors": refused,
                "margin_points": None,
                "over_budget": over,
            }
            continue
        if not ours:
            out[budget] = {
                "automc_method": None,
                "automc_errors": refused,
                "margin_points": None,
                "over_budget": over,
            }
            continue
        winner = max(ours, key=lambda m: median(m, val_key))
        baseline = max(theirs, key=lambda m: median(m, test_key))
        seeds = sorted(set(by_method[winner]) & set(by_method[baseline]))
        diffs = [
            100 * (float(by_method[winner][s][test_key]) - float(by_method[baseline][s][test_key]))
            for s in seeds
        ]
        walls = [
            float(by_method[winner][s]["wall_seconds"]) - float(by_method[baseline][s]["wall_seconds"])
            for s in seeds
        ]
        if diffs:
            margin = statistics.median(diffs)
        else:
            margin = 100 * (median(winner, test_key) - median(baseline, test_key))
            walls = [median(winner, "wall_seconds") - median(baseline, "wall_seconds")]
        target = TARGET_POINTS.get(budget)
        out[budget] = {
            "automc_method": winner,
            "automc_test_acc": median(winner, test_key),
            "best_baseline": baseline,
            "baseline_test_acc": median(baseline, test_key),
            "accuracy": test_key,
            "seeds": seeds,
            "paired": bool(diffs),
            "margin_points": margin,
            "margin_points_per_seed": diffs,
            "target_points": target,
            "target_met": None if target is None else margin >= target,
            "extra_wall_seconds": statistics.median(walls),
            "over_budget": over,
        }
    return out


# ---- the run ----
def load_report(path: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON written so far by the same settings, or a fresh report. Where only
    :data:`SEARCH_SETTINGS` changed, the Torch-Pruning results are kept (they do not read
    them), the search results dropped, and the change is listed under ``reruns``.

    Raises:
        AutomcError: the file exists but is not this bench's, or was written with other settings.
    """
    from automc.errors import AutomcError

    if not path.exists():
        return {"schema": SCHEMA, "version": 1, "settings": dict(settings), "results": {}, "runs": []}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AutomcError(f"{path}: not readable as this bench's JSON ({e.__class__.__name__})") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise AutomcError(f"{path}: not a {SCHEMA} JSON; give another --out")
    old = dict(report.get("settings") or {})
    legacy_budgets = old.pop("budgets", None)
    if legacy_budgets and "budgets" not in report:
        report["budgets"] = [b.strip() for b in str(legacy_budgets).split(",") if b.strip()]
    differ = {k for k in set(settings) | set(old) if old.get(k) != settings.get(k)}
    if differ and differ <= SEARCH_SETTINGS:
        rerun = {k: [old.get(k), settings.get(k)] for k in sorted(differ)}
        report["results"] = {k: v for k, v in report.get("results", {}).items() if k.startswith("tp-")}
        report.setdefault("reruns", []).append({"search_settings_changed": rerun})
    elif differ:
        changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v]
        raise AutomcError(
            f"{path} was written with other settings ({'; '.join(changed)}); rerun its command or give another --out"
        )
    report["settings"] = dict(settings)
    return report


def check_same_base(report: Mapping[str, Any], base: Mapping[str, Any]) -> None:
    """Refuse to add results measured from another base model than the JSON's (a base retrained
    elsewhere: training is not bitwise reproducible across machines and thread counts).

    Raises:
        AutomcError: the JSON holds results and its base model is not ``base``.
    """
    from automc.errors import AutomcError

    old = report.get("base")
    if not report.get("results") or not old:
        return
    # a JSON written before the digest was recorded: its base's accuracies tell the bases apart
    keys = ("weights_digest",) if old.get("weights_digest") else ("test_acc", "val_acc")
    if any(old.get(k) != base.get(k) for k in keys):
        raise AutomcError(
            f"the base model differs from the one the JSON's results start from (test acc "
            f"{old.get('test_acc')} there, {base.get('test_acc')} here; retrained?): give another --out, "
            "or put that base model's weights file back in the automc cache"
        )


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def held_out_subsets(splits: Any, *, val: int | None, test: int | None) -> Any:
    """``splits`` with seeded random ``val`` and ``test`` samples of its val and test splits
    (a split stays whole when its count is ``None`` or not smaller); every method sees the same ones."""
    import numpy as np
    from torch.utils.data import Subset

    parts: dict[str, Any] = {}
    sources = list(splits.sources)
    for i, (role, n) in enumerate((("val", val), ("test", test)), start=1):
        total = len(getattr(splits, role))
        if n is None or n >= total:
            continue
        idx = np.sort(np.random.default_rng(i).choice(total, size=n, replace=False))
        parts[role] = Subset(getattr(splits, role), idx.tolist())
        sources[i] = f"seeded random {n:,} of {sources[i]}"
    if not parts:
        return splits
    digest = hashlib.sha256(f"{splits.identity}|val={val}|test={test}".encode()).hexdigest()
    return replace(splits, **parts, sources=tuple(sources), fingerprint=digest)


def prepare_context(args: argparse.Namespace, work: Path) -> tuple[Context, dict[str, Any]]:
    """Load the data, train (or load) the base model, export and time it; the base's figures."""
    from automc import cost, train
    from automc.config import SearchConfig
    from automc.data.splits import tensor_digest
    from automc.hardware import runtimes
    from automc.hardware.timing import time_artifacts
    from automc.pipeline.setup import load_splits
    from automc.pipeline.winners import measured_macs, runtime_of

    config = SearchConfig().with_overrides(
        model=args.model,
        dataset=args.dataset,
        data_root=args.data_root,
        in_channels=args.in_channels,
        train_subset=args.train_subset,
        base_epochs=args.base_epochs,
        trials=args.trials,
        finetune_top=args.finetune_top,
        finetune_choose=args.finetune_choose,
        finetune_epochs=args.finetune_epochs,
        warm_start=args.warm_start,
        **({"proxy": args.proxy} if args.proxy else {}),
        proxy_lr=args.proxy_lr,
        profile=args.profile,
        threads=args.threads,
        device="cpu",
        export_onnx=False,
        progress=False,
    )
    splits = held_out_subsets(load_splits(config.data, seed=0), val=args.val_subset, test=args.test_subset)
    t0 = time.perf_counter()
    base, info = train.base_model(
        args.model,
        args.dataset,
        epochs=args.base_epochs,
        splits=splits,
        data_root=args.data_root,
        options=train.FitOptions(seed=0, progress=True),
    )
    base_s = time.perf_counter() - t0
    config = config.with_overrides(weights=info["weights_path"])
    example = splits.train[0][0].unsqueeze(0)
    profile = cost.load_profile(args.profile)
    name, device = runtime_of(profile)
    rt = runtimes.get(name, device=device)
    m = profile.measurement
    timing = {
        "threads": int(profile.runtime.threads),
        "warmup": m.warmup,
        "repeats": m.repeats,
        "statistic": m.statistic,
    }
    work.mkdir(parents=True, exist_ok=True)
    base_artifact = rt.export(base, example, work / "base.onnx")
    [t] = time_artifacts(
        rt, [base_artifact], example.numpy(), threads=timing["threads"], warmup=m.warmup, repeats=m.repeats
    )
    macs = measured_macs(base, example)
    ctx = Context(
        args=args,
        config=config,
        splits=splits,
        base=base,
        base_weights=str(info["weights_path"]),
        example=example,
        base_macs=macs,
        runtime=rt,
        base_artifact=base_artifact,
        timing=timing,
        work=work,
        ratios={},
    )
    figures = {
        "model": args.model,
        "data": splits.summary(),
        "test_acc": float(info["test_acc"]),
        "val_acc": float(info["val_acc"]),
        "recipe": info.get("recipe"),
        "train_seconds": info.get("train_seconds"),
        "cached": bool(info.get("cached")),
        "seconds_this_run": base_s,
        "macs": macs,
        "params": int(sum(p.numel() for p in base.parameters())),
        "weights_digest": tensor_digest(*base.state_dict().values()),
        "latency_ms": t.value(m.statistic),
        "runtime": rt.name,
        "timing": timing,
    }
    return ctx, figures


def main(argv: list[str] | None = None) -> int:
    from automc.errors import AutomcError

    args = parse_args(argv)
    try:
        return run(args, argv if argv is not None else sys.argv[1:])
    except AutomcError as e:
        print(f"bench_baselines: error: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    from automc.budget import parse_budget
    from automc.errors import AutomcError

    torch.set_num_threads(args.threads)
    run_budgets = [parse_budget(token.strip()).token for token in args.budgets.split(",") if token.strip()]
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    known = set(AUTOMC_METHODS + SEARCH_BASELINES + TP_METHODS + INT8_METHODS)
    if set(chosen) - known:
        raise AutomcError(
            f"unknown --methods {sorted(set(chosen) - known)} (known: {', '.join(sorted(known))})"
        )
    out = Path(args.out)
    report = load_report(out, settings_of(args))
    # one folder per JSON: two runs writing different JSONs must not share the base artifact they time against
    digest = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]
    work = Path(args.work) if args.work else Path(tempfile.gettempdir()) / f"automc-bench-baselines-{digest}"
    t_start = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    ctx, base = prepare_context(args, work)
    check_same_base(report, base)
    report["base"] = base
    budgets = list(dict.fromkeys([*report.get("budgets", []), *run_budgets]))
    report["budgets"] = budgets
    ctx.ratios = report.setdefault("ratios", {})
    results: dict[str, Any] = report["results"]
    run_info: dict[str, Any] = {
        "command": "python scripts/bench_baselines.py " + shlex.join(argv),
        "started": started,
        "load_average_start": list(os.getloadavg()),
        "computed": 0,
    }
    report["runs"].append(run_info)
    order = [
        (method, budget, seed)
        for main_tier in (True, False)
        for seed in range(args.seeds)
        for budget in run_budgets
        for method in methods_for(budget, chosen)
        if (method in MAIN["latency" if budget.startswith("latency") else "flops"]) == main_tier
    ]
    host = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__}

    def save() -> None:
        run_info["wall_seconds"] = time.perf_counter() - t_start
        run_info["load_average_now"] = list(os.getloadavg())
        report["summary"] = summary_of(results, budgets)
        report["margins"] = margins_of(results, budgets)
        report["missing"] = [
            f"{m}|{b}|s{s}"
            for b in budgets
            for s in range(args.seeds)
            for m in methods_for(b, chosen)
            if f"{m}|{b}|s{s}" not in results
        ]
        report["wall_seconds_total"] = sum(float(r.get("wall_seconds", 0.0)) for r in report["runs"])
        report["host"] = host
        write_report(out, report)

    for method, budget, seed in order:
        key = f"{method}|{budget}|s{seed}"
        if key in results:
            continue
        if args.max_minutes is not None and time.perf_counter() - t_start >= 60 * args.max_minutes:
            print(
                f"bench_baselines: --max-minutes {args.max_minutes:g} reached; rerun to go on",
                file=sys.stderr,
            )
            break
        t0 = time.perf_counter()
        try:
            if method.startswith("tp-"):
                record = run_tp(ctx, method, budget, seed)
            else:
                record = run_search(ctx, method, budget, seed)
        except AutomcError as e:
            record = {"error": str(e), "wall_seconds": time.perf_counter() - t0}
        except Exception as e:  # noqa: BLE001 - not stored: a rerun of the command tries it again
            print(f"bench_baselines: {key}: failed ({e.__class__.__name__}: {e})", file=sys.stderr)
            continue
        record["load_average"] = list(os.getloadavg())
        results[key] = record
        run_info["computed"] += 1
        save()
        acc = record.get(accuracy_keys(budget)[0])
        print(
            f"bench_baselines: {key}: test acc {acc if acc is None else round(acc, 4)}, "
            f"{record['wall_seconds']:.0f} s{' ERROR ' + record['error'] if 'error' in record else ''}",
            file=sys.stderr,
        )
    save()
    print(json.dumps(report["margins"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
