"""The search loop and the end-to-end pipeline — the only place that wires controller,
cost model, compression and proxy together.

``search(...)``: base model (trained and cached if not given) → layer graph → bound
search space → budgets checked against the cheapest plan → controller asks plans →
infeasible ones priced by the cost model alone → feasible ones compressed and scored by
the proxy → everything recorded in one Optuna storage (resumable) → Pareto front → K
winners spread along it → fine-tuned with knowledge distillation → real MACs/latency
measured → exported (state_dict, plan JSON, ONNX) → report.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from automc.errors import AutomcError
from automc.plan import CompressionPlan, LayerSpec, Measurement

DEFAULT_SPACE = "joint"


@dataclass(frozen=True)
class Winner:
    """A fine-tuned Pareto winner with its measured figures and exported files."""

    trial: int
    plan: CompressionPlan
    figures: Mapping[str, Any]
    files: Mapping[str, str]
    model: Any = None


@dataclass(frozen=True)
class SearchResult:
    """What ``search`` returns.

    Attributes:
        storage: Optuna storage URL holding every trial.
        study: study name.
        trials: the trials as ``automc.report.TrialRow`` records.
        pareto: trial numbers on the feasible Pareto front.
        winners: fine-tuned winners (empty with ``finetune_top=0``).
        base: figures of the base model.
        report_dir: folder of the rendered report.
    """

    storage: str
    study: str
    trials: tuple[Any, ...]
    pareto: tuple[int, ...]
    winners: tuple[Winner, ...] = ()
    base: Mapping[str, Any] = field(default_factory=dict)
    report_dir: Path | None = None


def resolve_space(name_or_path: str) -> Path:
    """A shipped space name (``joint``) or a path to a search-space YAML file."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for root in (Path.cwd() / "search_spaces", Path(__file__).resolve().parent.parent / "search_spaces"):
        cand = root / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    raise AutomcError(
        f"search space {name_or_path!r}: file not found (give a path or a shipped name: prune, quant, lowrank, joint)"
    )


def profile_digest(profile: Any) -> str:
    """Short hash of a device profile's content ('' without one): a re-measured profile at the
    same path prices candidates differently, so a study must not resume across it."""
    if profile is None:
        return ""
    body = json.dumps(profile.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def storage_url(storage: str | None, out: Path) -> str:
    """Default storage: SQLite in the run folder; a bare path becomes a SQLite URL (``.log`` = journal file)."""
    if not storage:
        return f"sqlite:///{out / 'study.db'}"
    if "://" in storage or storage.endswith(".log"):
        return storage
    return f"sqlite:///{storage}"


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def default_study(model: str, dataset: str, controller: str, seed: int) -> str:
    return _SAFE.sub("_", f"{model}-{dataset}-{controller}-s{seed}")


class Evaluator:
    """Scores one candidate: cost first (microseconds), proxy only if within budget.

    Picklable, so Ray can ship it to workers. Raises for a failed candidate; the
    controller records the failure with its reason and the search goes on.
    """

    def __init__(
        self,
        *,
        model: Any,
        layers: Sequence[LayerSpec],
        example_input: Any,
        proxy: Any,
        cost_model: Any,
        limits: Mapping[str, float],
        objectives: Sequence[Any],
        seed: int = 0,
    ) -> None:
        self.model = model
        self.layers = list(layers)
        self.example_input = example_input
        self.proxy = proxy
        self.cost_model = cost_model
        self.limits = dict(limits)
        self.objectives = list(objectives)
        self.seed = seed

    def cost(self, plan: CompressionPlan) -> Any:
        return self.cost_model.estimate(self.layers, plan)

    def __call__(self, candidate: Any) -> Measurement:
        import torch

        from automc import budget, compress

        plan = candidate.plan
        report = self.cost(plan)
        if report.unsupported:
            names = ", ".join(sorted(report.unsupported)[:3])
            raise AutomcError(f"cost model cannot price layer(s) {names}")
        totals = dict(report.total)
        cons = budget.constraints(totals, self.limits)
        info: dict[str, Any] = {"cost": totals}
        if any(v > 0 for v in cons.values()):
            info["proxy_skipped"] = True
            return Measurement(objectives=self._objectives(totals, None), constraints=cons, info=info)
        torch.manual_seed(self.seed)
        calib = self.proxy.calibration_batches()
        compressed = compress.apply(self.model, plan, self.example_input, calib_batches=calib, seed=self.seed)
        metrics = dict(self.proxy.evaluate(compressed, plan))
        info["proxy"] = metrics
        return Measurement(objectives=self._objectives(totals, metrics), constraints=cons, info=info)

    def _objectives(
        self, totals: Mapping[str, float], metrics: Mapping[str, float] | None
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        for o in self.objectives:
            if o.name in totals:
                out[o.name] = float(totals[o.name])
            elif metrics is None:
                out[o.name] = 0.0 if o.direction == "maximize" else 1e9
            else:
                v = float(metrics[o.name])
                if not math.isfinite(v):
                    raise AutomcError(f"proxy returned non-finite {o.name}")
                out[o.name] = v
        return out


@dataclass(frozen=True)
class SearchSetup:
    """Everything a search scores candidates with: data, base model, layer table, bound
    space, cost model, resolved budget limits and the proxy (adaptive BN or short training)."""

    splits: Any
    base: Any
    base_info: Mapping[str, Any]
    example: Any
    layers: tuple[LayerSpec, ...]
    bound: Any
    cost_model: Any
    base_cost: Mapping[str, float]
    limits: Mapping[str, float]
    proxy: Any

    def cost_fn(self, plan: CompressionPlan) -> Mapping[str, float]:
        """Cost totals of ``plan`` (microseconds: layer table arithmetic, no tracing)."""
        return self.cost_model.estimate(self.layers, plan).total

    def evaluator(self, objectives: Sequence[Any], seed: int = 0) -> Evaluator:
        return Evaluator(
            model=self.base,
            layers=self.layers,
            example_input=self.example,
            proxy=self.proxy,
            cost_model=self.cost_model,
            limits=self.limits,
            objectives=objectives,
            seed=seed,
        )


SEARCH_PROXIES = ("adaptive_bn", "short_train")
SHORT_TRAIN_BATCHES = 32
"""Labelled train batches the ``short_train`` proxy cycles through (fewer when it takes fewer steps)."""
SHORT_TRAIN_BATCH_SIZE = 64


def check_proxy(proxy: str, proxy_steps: int) -> None:
    """Refuse a proxy a search cannot use, or a non-positive step count."""
    if proxy not in SEARCH_PROXIES:
        raise AutomcError(f"--proxy: unknown search proxy {proxy!r} (known: {', '.join(SEARCH_PROXIES)})")
    if isinstance(proxy_steps, bool) or not isinstance(proxy_steps, int) or proxy_steps < 1:
        raise AutomcError(f"--proxy-steps must be a positive integer, got {proxy_steps!r}")


NEAR_CHANCE = 2.0
"""A base model whose val accuracy is below this multiple of chance (1 / classes) is
reported: a search on it ranks noise."""


def warn_if_near_chance(base: Any, splits: Any, model: str) -> bool:
    """Print one warning line on stderr when ``base`` is near chance on ``splits.val``."""
    from automc import train

    acc = train.evaluate(base, splits.val)["acc"]
    chance = 1.0 / splits.num_classes
    if acc >= NEAR_CHANCE * chance:
        return False
    sys.stderr.write(
        f"automc: warning: base model {model} reaches {acc:.1%} val accuracy, near chance "
        f"({chance:.1%}): the search would rank noise; train it longer (--base-epochs), at another "
        "learning rate (--base-lr) or pass trained --weights\n"
    )
    return True


MIN_SCORED_FOR_WARNING = 5
"""Candidates the proxy must have scored before :func:`warn_if_proxy_blind` judges it."""


def warn_if_proxy_blind(trials: Sequence[Any], num_classes: int, proxy_label: str) -> bool:
    """Print one warning line on stderr when most scored candidates' proxy accuracy is near chance.

    ``trials`` are ``automc.report.data.TrialRow``; those the proxy scored carry ``proxy["acc"]``.
    ``proxy_label`` is the proxy as the search records it (``adaptive_bn``, ``short_train (10 steps)``).
    An accuracy proxy whose median score is below ``NEAR_CHANCE`` x chance cannot rank the
    candidates (``scripts/bench_proxy.py``: adaptive-BN at median 17-19% on digits ranks
    against the fine-tuned accuracy, or not at all, while short training still ranks them).
    """
    accs = [float(t.proxy["acc"]) for t in trials if "acc" in t.proxy]
    chance = 1.0 / num_classes
    if len(accs) < MIN_SCORED_FOR_WARNING:
        return False
    median = sorted(accs)[len(accs) // 2]
    if median >= NEAR_CHANCE * chance:
        return False
    fix = "use --proxy short_train" if proxy_label == "adaptive_bn" else "raise --proxy-steps"
    sys.stderr.write(
        f"automc: warning: the {proxy_label} proxy scores a median {median:.1%} accuracy over {len(accs)} "
        f"candidates, near chance ({chance:.1%}): its ranking is mostly noise; {fix} or loosen the budget\n"
    )
    return True


def prepare(
    *,
    model: str,
    dataset: str,
    space: Any,
    budgets: Sequence[Any],
    profile: Any = None,
    seed: int = 0,
    weights: str | None = None,
    data_root: str | None = None,
    base_epochs: int | None = None,
    base_lr: float | None = None,
    calib_batches: int = 4,
    calib_batch_size: int = 128,
    val_limit: int | None = None,
    kl_teacher: bool = False,
    proxy: str = "short_train",
    proxy_steps: int = 10,
    progress: bool = True,
) -> SearchSetup:
    """Load the data and base model (trained and cached unless ``weights``), bind ``space``
    (a loaded ``SearchSpace``) to the model's layers, resolve ``budgets`` (parsed budget
    specs) against the base cost and check the cheapest plan fits, and build the proxy:
    ``adaptive_bn`` (``kl_teacher`` gives it the base model as teacher for the ``kl``
    metric) or ``short_train`` (``proxy_steps`` SGD steps distilled from the base model,
    then adaptive BN; it always reports ``kl``)."""
    import torch

    from automc import budget as budget_mod
    from automc import cost as cost_mod
    from automc import data as data_mod
    from automc import graph, models, train
    from automc.proxy import AdaptiveBNProxy, ProxyData, ShortTrainProxy

    threads = int(os.environ.get("AUTOMC_THREADS") or os.environ.get("OMP_NUM_THREADS") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    splits = data_mod.load(dataset, root=data_root, seed=seed)
    example = splits.train[0][0].unsqueeze(0)
    if weights:
        base = models.create(
            model, num_classes=splits.num_classes, in_channels=splits.in_channels, weights=weights
        )
        base_info: dict[str, Any] = {"weights": str(weights)}
    else:
        untrained = models.create(model, num_classes=splits.num_classes, in_channels=splits.in_channels)
        graph.require_modelled(untrained, example)
        base, base_info = train.base_model(
            model,
            dataset,
            epochs=base_epochs,
            lr=base_lr,
            seed=seed,
            splits=splits,
            data_root=data_root,
            progress=progress,
        )
    base.eval()
    layers = tuple(graph.layers(base, example))
    warn_if_near_chance(base, splits, model)
    bound = space.bind(layers, model=model)
    cost_model = cost_mod.CostModel(profile=profile)

    def cost_fn(plan: CompressionPlan) -> Mapping[str, float]:
        return cost_model.estimate(layers, plan).total

    base_cost = dict(cost_fn(CompressionPlan(model=model)))
    limits = budget_mod.resolve(list(budgets), base_cost)
    budget_mod.check_feasible_space(bound, cost_fn, limits)
    check_proxy(proxy, proxy_steps)
    short = proxy == "short_train"
    proxy_data = ProxyData.from_splits(
        splits,
        calib_batches=calib_batches,
        calib_batch_size=calib_batch_size,
        val_limit=val_limit,
        train_batches=min(proxy_steps, SHORT_TRAIN_BATCHES) if short else 0,
        train_batch_size=SHORT_TRAIN_BATCH_SIZE,
        seed=seed,
    )
    scorer: Any
    if short:
        scorer = ShortTrainProxy(data=proxy_data, teacher=base, steps=proxy_steps)
    else:
        scorer = AdaptiveBNProxy(data=proxy_data, teacher=base if kl_teacher else None)
    return SearchSetup(
        splits=splits,
        base=base,
        base_info=base_info,
        example=example,
        layers=layers,
        bound=bound,
        cost_model=cost_model,
        base_cost=base_cost,
        limits=limits,
        proxy=scorer,
    )


def _progress(total: int, desc: str, enabled: bool, initial: int = 0) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True
    )


def search(
    *,
    model: str = "resnet20",
    dataset: str = "digits",
    space: str = DEFAULT_SPACE,
    budgets: Sequence[str] = ("flops=0.3",),
    objectives: Sequence[str] = ("acc", "macs"),
    controller: str = "optuna-tpe",
    trials: int = 50,
    profile: str | None = "cpu-x86-2core",
    storage: str | None = None,
    study: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    weights: str | None = None,
    data_root: str | None = None,
    base_epochs: int | None = None,
    base_lr: float | None = None,
    finetune_top: int = 3,
    finetune_epochs: int = 3,
    kd_temperature: float = 4.0,
    kd_alpha: float = 0.9,
    calib_batches: int = 4,
    batch_size: int = 128,
    proxy: str = "short_train",
    proxy_steps: int = 10,
    ray_address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    export_onnx: bool = True,
    progress: bool = True,
) -> SearchResult:
    """Run the whole pipeline; see the module docstring. Returns a ``SearchResult``.

    Rerunning with the same ``storage`` and ``study`` continues the search: completed
    trials are kept and the run stops when ``trials`` trials are complete in total.
    Bad input is rejected with an ``AutomcError`` before anything is written.
    """
    from automc import budget as budget_mod
    from automc import cost as cost_mod
    from automc import train
    from automc.search import registry
    from automc.space import SearchSpace

    # ---- validate everything cheap before any heavy work or any write ----
    if trials < 1:
        raise AutomcError(f"--trials must be >= 1, got {trials}")
    if finetune_top < 0 or finetune_epochs < 0:
        raise AutomcError("--finetune-top and --finetune-epochs must be >= 0")
    train.check_lr(base_lr, "--base-lr")
    if not (kd_temperature > 0 and 0.0 <= kd_alpha <= 1.0):
        raise AutomcError("--kd-temperature must be > 0 and --kd-alpha in [0, 1]")
    check_proxy(proxy, proxy_steps)
    proxy_label = proxy if proxy == "adaptive_bn" else f"{proxy} ({proxy_steps} steps)"
    space_path = resolve_space(space)
    space_def = SearchSpace.load(space_path)
    from automc.compress import criteria as criteria_mod

    unknown = [c for c in space_def.spec.criteria if c not in criteria_mod.names()]
    if unknown:
        raise AutomcError(
            f"{space_path}: criterion: unknown pruning criterion {unknown[0]!r} "
            f"(known: {', '.join(criteria_mod.names())})"
        )
    budget_specs = budget_mod.parse_budgets(list(budgets))
    objs = budget_mod.parse_objectives(list(objectives))
    registry.get_factory(controller)
    prof = cost_mod.load_profile(profile) if profile else None
    needs_profile = {"latency_ms", "energy_mj"} & ({o.name for o in objs} | {b.metric for b in budget_specs})
    if "latency_ms" in needs_profile and (prof is None or not getattr(prof, "has_latency", True)):
        raise AutomcError("a latency budget or objective needs --profile with a measured latency table")
    out_dir = Path(out) if out else Path("reports") / default_study(model, dataset, controller, seed)
    study_name = study or default_study(model, dataset, controller, seed)
    url = storage_url(storage, out_dir)

    setup = prepare(
        model=model,
        dataset=dataset,
        space=space_def,
        budgets=budget_specs,
        profile=prof,
        seed=seed,
        weights=weights,
        data_root=data_root,
        base_epochs=base_epochs,
        base_lr=base_lr,
        calib_batches=calib_batches,
        calib_batch_size=batch_size,
        kl_teacher="kl" in {o.name for o in objs},
        proxy=proxy,
        proxy_steps=proxy_steps,
        progress=progress,
    )
    splits, base, example, layers = setup.splits, setup.base, setup.example, setup.layers
    cost_model, cost_fn, limits, proxy = setup.cost_model, setup.cost_fn, setup.limits, setup.proxy
    identity = CompressionPlan(model=model)

    meta = {
        "model": model,
        "dataset": dataset,
        "space": str(space_path),
        "objectives": [{"name": o.name, "direction": o.direction} for o in objs],
        "budgets": list(budgets),
        "limits": limits,
        "controller": controller,
        "proxy": proxy_label,
        "profile": str(profile or ""),
        "profile_digest": profile_digest(prof),
        "seed": seed,
        "layer_order": [s.name for s in layers],
    }
    from automc.search.storage import Recorder

    out_dir.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(url, study_name, objs, meta)
    options: dict[str, Any] = {}
    if controller == "ray":
        options["address"] = ray_address or os.environ.get("RAY_ADDRESS")
        options["storage_path"] = str((out_dir / "ray").resolve())
        options["cpus_per_trial"] = cpus_per_trial
        options["gpus_per_trial"] = gpus_per_trial
    ctrl = registry.create(
        controller,
        space=setup.bound,
        objectives=objs,
        recorder=recorder,
        seed=seed,
        budgets=limits,
        cost_fn=cost_fn,
        **options,
    )
    evaluator = setup.evaluator(objs, seed=seed)

    done = recorder.completed()
    primary = next((o.name for o in objs if o.direction == "maximize"), objs[0].name)
    bar = _progress(trials, "search", progress, initial=min(done, trials))
    best = {"value": -math.inf}

    def on_result(candidate: Any, result: Measurement | None, reason: str) -> None:
        if result is not None and result.feasible and primary in result.objectives:
            best["value"] = max(best["value"], float(result.objectives[primary]))
        bar.update(1)
        if math.isfinite(best["value"]):
            bar.set_postfix_str(f"best feasible {primary}={best['value']:.4f}")

    t0 = time.perf_counter()
    ctrl.drive(evaluator, trials, on_result=on_result)
    bar.close()
    search_s = time.perf_counter() - t0

    # ---- base figures, winners, report ----
    from automc.pareto import select_spread
    from automc.report import ReportData, render

    data = ReportData.from_storage(url, study_name)
    warn_if_proxy_blind(data.trials, setup.splits.num_classes, proxy_label)
    front = data.pareto_numbers()
    rows = {t.number: t for t in data.trials}
    pts = [[rows[n].values[o.name] for o in objs] for n in front]
    chosen = (
        [front[i] for i in select_spread(pts, [o.direction for o in objs], finetune_top)]
        if finetune_top
        else []
    )
    plans = {n: CompressionPlan.from_dict(rows[n].plan) for n in chosen}
    base_ms, *winner_ms = _latencies_ms(
        [base] + [float_architecture(base, plans[n], example, seed) for n in chosen], example, cost_model
    )
    base_fig = _base_figures(base, splits, proxy, identity, cost_model, layers, example, base_ms)
    base_fig["search_seconds"] = search_s
    recorder.set_study_attr("base", base_fig)
    winners = []
    wbar = _progress(len(chosen), "fine-tune", progress)
    for number, latency_ms in zip(chosen, winner_ms):
        winners.append(
            _finish_winner(
                number,
                plans[number],
                rows[number],
                base,
                splits,
                proxy,
                cost_model,
                layers,
                example,
                limits,
                out_dir,
                finetune_epochs,
                kd_temperature,
                kd_alpha,
                seed,
                export_onnx,
                progress,
                latency_ms,
            )
        )
        wbar.update(1)
    wbar.close()
    recorder.set_study_attr(
        "winners",
        [dict(w.figures, trial=w.trial, plan=w.plan.to_dict(), files=dict(w.files)) for w in winners],
    )
    data = ReportData.from_storage(url, study_name)
    render(data, out_dir)
    return SearchResult(
        storage=url,
        study=study_name,
        trials=data.trials,
        pareto=tuple(front),
        winners=tuple(winners),
        base=base_fig,
        report_dir=out_dir,
    )


def measured_macs(model: Any, example_input: Any) -> int:
    """Conv + linear MACs of a real (compressed) model, counted by fvcore."""
    from fvcore.nn import FlopCountAnalysis

    model.eval()
    fca = FlopCountAnalysis(model, example_input)
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    ops = fca.by_operator()
    return int(sum(v for k, v in ops.items() if k in ("conv", "linear", "addmm", "matmul", "bmm", "einsum")))


def float_architecture(base: Any, plan: CompressionPlan, example_input: Any, seed: int = 0) -> Any:
    """The plan's architecture (pruned, factorised, sparse) at 32 bits, for timing.

    Fake-quantization simulates low-bit arithmetic with extra float ops, so timing the
    fake-quantized model on a CPU measures the simulation, not a deployment; device
    profiles price a layer at the precision they measured (the shipped CPU profile: fp32),
    so the measured latency that is compared with the prediction is the fp32 architecture.
    """
    from automc import compress

    fp32 = CompressionPlan(
        layers={n: replace(c, w_bits=32, a_bits=32) for n, c in plan.layers.items()},
        criterion=plan.criterion,
        model=plan.model,
        fingerprint=plan.fingerprint,
    )
    return compress.apply(base, fp32, example_input, seed=seed)


def _latencies_ms(models: Sequence[Any], example_input: Any, cost_model: Any) -> list[float]:
    """Measured latencies of ``models``, timed together as the search's device profile was timed
    (statistic, repeats, warm-up; threads of the profile).

    The minimum of more samples is lower, so the repeats must match for the measured and
    predicted latencies to be comparable. Without a profile: the median of 30 samples.
    """
    from automc.profiler import measure_as_profiled, measure_models_ms

    profile = cost_model.profile
    if profile is None:
        return measure_models_ms(models, example_input)
    return measure_as_profiled(profile, models, example_input)


def _latency_flags(report: Any) -> dict[str, Any]:
    """``{"latency_flags": {layer: note}}`` for the layers (and ``(network)``) a latency
    prediction priced off the profile's table (roofline, unprofiled network): a rougher
    prediction. Empty without a latency prediction."""
    if "latency_ms" not in report.total:
        return {}
    return {"latency_flags": {k: v for k, v in report.flags.items() if v.startswith("latency")}}


def _base_figures(
    base: Any,
    splits: Any,
    proxy: Any,
    identity: CompressionPlan,
    cost_model: Any,
    layers: Sequence[LayerSpec],
    example: Any,
    latency_ms: float,
) -> dict[str, Any]:
    import copy

    from automc import train

    report = cost_model.estimate(layers, identity)
    cost = report.total
    fig: dict[str, Any] = {k: float(v) for k, v in cost.items()}
    fig.update(_latency_flags(report))
    fig["test_acc"] = float(train.evaluate(base, splits.test)["acc"])
    fig["proxy_acc"] = float(proxy.evaluate(copy.deepcopy(base), identity)["acc"])
    fig["macs_measured"] = measured_macs(base, example)
    fig["params"] = int(sum(p.numel() for p in base.parameters()))
    fig["latency_ms_measured"] = latency_ms
    return fig


def _finish_winner(
    number: int,
    plan: CompressionPlan,
    row: Any,
    base: Any,
    splits: Any,
    proxy: Any,
    cost_model: Any,
    layers: Sequence[LayerSpec],
    example: Any,
    limits: Mapping[str, float],
    out_dir: Path,
    epochs: int,
    temperature: float,
    alpha: float,
    seed: int,
    export_onnx: bool,
    progress: bool,
    latency_ms: float,
) -> Winner:
    import copy

    import torch

    from automc import budget, compress, train
    from automc.proxy import recalibrate_bn

    calib = proxy.calibration_batches()
    model = compress.apply(base, plan, example, calib_batches=calib, seed=seed)
    # usually a cache hit; on a miss the short_train proxy would train its argument in place
    proxy_metrics = dict(proxy.evaluate(copy.deepcopy(model), plan))
    recalibrate_bn(model, calib)
    before = train.evaluate(model, splits.test)["acc"]
    if epochs:
        train.finetune(
            model,
            splits,
            teacher=base,
            epochs=epochs,
            temperature=temperature,
            alpha=alpha,
            seed=seed,
            progress=progress,
        )
    after = train.evaluate(model, splits.test)
    model.eval()
    report = cost_model.estimate(layers, plan)
    cost = dict(report.total)
    measured = {"macs": float(measured_macs(model, example)), "latency_ms": latency_ms}
    measured_cons = budget.constraints({**cost, **measured}, limits)
    figures: dict[str, Any] = {k: float(v) for k, v in cost.items()}
    figures.update(
        proxy_acc=float(proxy_metrics.get("acc", row.values.get("acc", math.nan))),
        test_acc_before=float(before),
        test_acc=float(after["acc"]),
        test_loss=float(after["loss"]),
        macs_measured=measured["macs"],
        latency_ms_measured=latency_ms,
        params=int(cost.get("params", sum(p.numel() for p in model.parameters()))),
        meets_budget_measured=all(v <= 1e-9 for v in measured_cons.values()),
        measured_constraints=measured_cons,
    )
    figures.update(_latency_flags(report))
    wdir = out_dir / "winners" / f"trial{number}"
    wdir.mkdir(parents=True, exist_ok=True)
    files = {"state_dict": str(wdir / "model.pt"), "plan": str(wdir / "plan.json")}
    torch.save(
        {"state_dict": model.state_dict(), "plan": plan.to_json(), "model": plan.model}, files["state_dict"]
    )
    Path(files["plan"]).write_text(plan.to_json(indent=2), encoding="utf-8")
    if export_onnx:
        onnx_path = wdir / "model.onnx"
        try:
            torch.onnx.export(model, (example,), str(onnx_path), opset_version=17, dynamo=False)
            files["onnx"] = str(onnx_path)
        except Exception as e:  # noqa: BLE001 - export is best effort; the reason is reported
            figures["onnx_error"] = f"{e.__class__.__name__}: {' '.join(str(e).split())[:200]}"
    return Winner(trial=number, plan=plan, figures=figures, files=files, model=model)


def summary_table(result: SearchResult) -> str:
    """Plain-text summary printed at the end of ``automc search``."""
    from automc.cost.latency import NETWORK_FLAG_KEY

    lines = [f"{'model':<14}{'test acc':>10}{'MACs':>12}{'lat pred':>10}{'lat meas':>10}{'budget ok':>10}"]
    b = result.base
    lines.append(
        f"{'base':<14}{b.get('test_acc', math.nan):>10.4f}{b.get('macs', 0) / 1e6:>11.2f}M"
        f"{b.get('latency_ms', math.nan):>9.3f}{'*' if b.get('latency_flags') else ' '}"
        f"{b.get('latency_ms_measured', math.nan):>10.3f}{'':>10}"
    )
    for w in result.winners:
        f = w.figures
        rough = "*" if f.get("latency_flags") else " "
        lines.append(
            f"{'trial ' + str(w.trial):<14}{f['test_acc']:>10.4f}{f['macs_measured'] / 1e6:>11.2f}M"
            f"{f.get('latency_ms', math.nan):>9.3f}{rough}{(f.get('latency_ms_measured') or math.nan):>10.3f}"
            f"{'yes' if f['meets_budget_measured'] else 'NO':>10}"
        )
    flagged = [b.get("latency_flags") or {}] + [w.figures.get("latency_flags") or {} for w in result.winners]
    if any(NETWORK_FLAG_KEY in f for f in flagged):
        model = (result.winners[0].plan.model if result.winners else "") or "MODEL"
        lines.append(
            "* latency predicted without a profile of this network (global overhead fit, roofline for "
            f"unprofiled layer shapes): add it with automc profile --model {model} --out NEW.yaml"
        )
    elif any(flagged):
        lines.append(
            "* latency predicted partly off the profile's table (roofline estimate; see pareto.json "
            "latency_flags): re-profile with a finer --fractions grid"
        )
    lines.append(
        f"storage: {result.storage} (study {result.study}); open with: optuna-dashboard {result.storage}"
    )
    if result.report_dir:
        lines.append(f"report: {result.report_dir / 'index.html'}")
        for w in result.winners:
            lines.append(f"winner trial {w.trial}: " + ", ".join(f"{k}={v}" for k, v in w.files.items()))
    return "\n".join(lines)
