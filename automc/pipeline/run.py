"""One search run: validate, set up, drive the controller into the storage, finish the winners, report."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automc.errors import AutomcError

if TYPE_CHECKING:
    from automc.config import SearchConfig
    from automc.pipeline.setup import UserParts
    from automc.pipeline.winners import Winner

CONFIG_FILE = "config.yaml"
"""The effective configuration, written into the run folder (``automc search --config`` re-runs it)."""

MIN_SCORED_FOR_WARNING = 5
"""Candidates the proxy must have scored before :func:`warn_if_proxy_blind` judges it."""


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search` returns.

    Attributes:
        storage: Optuna storage URL holding every trial.
        study: study name.
        trials: the trials as ``automc.search.storage.TrialRecord`` records.
        pareto: trial numbers on the feasible Pareto front.
        winners: fine-tuned winners (empty with ``finetune.top = 0``).
        base: figures of the base model.
        report_dir: folder of the rendered report.
        config: the effective configuration of the run.
        recommendation: the winner to ship (``automc.report.data.Recommendation``).
    """

    storage: str
    study: str
    trials: tuple[Any, ...]
    pareto: tuple[int, ...]
    winners: tuple[Winner, ...] = ()
    base: Mapping[str, Any] = field(default_factory=dict)
    report_dir: Path | None = None
    config: Any = None
    recommendation: Any = None


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
    """The study name of a run that names none: ``<model>-<dataset>-<controller>-s<seed>``."""
    return _SAFE.sub("_", f"{model}-{dataset}-{controller}-s{seed}")


def function_path(fn: Any) -> str:
    """``module:qualname`` of the user's function as a study records it ('' for none)."""
    if fn is None:
        return ""
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"


def proxy_label(config: SearchConfig) -> str:
    """The proxy as the study records it (part of the resume key): ``adaptive_bn``,
    ``short_train (10 steps, lr 0.005)``."""
    name = config.proxy.name
    return name if name == "adaptive_bn" else f"{name} ({config.proxy.steps} steps, lr {config.proxy.lr:g})"


def warn_if_proxy_blind(trials: Sequence[Any], num_classes: int, label: str) -> bool:
    """Print one warning line on stderr when most scored candidates' proxy accuracy is near chance.

    ``trials`` are ``automc.search.storage.TrialRecord``; those the proxy scored carry
    ``proxy["acc"]``. ``label`` is the proxy as the search records it (:func:`proxy_label`).
    An accuracy proxy whose median score is near chance (``setup.near_chance``) cannot rank the
    candidates (``scripts/bench_proxy.py``: adaptive-BN at median 17-19% on digits ranks
    against the fine-tuned accuracy, or not at all, while short training still ranks them).
    """
    from automc.pipeline.setup import near_chance

    accs = [float(t.proxy["acc"]) for t in trials if "acc" in t.proxy]
    chance = 1.0 / num_classes
    if len(accs) < MIN_SCORED_FOR_WARNING:
        return False
    median = sorted(accs)[len(accs) // 2]
    if median >= near_chance(num_classes):
        return False
    fix = "use --proxy short_train" if label == "adaptive_bn" else "raise --proxy-steps"
    sys.stderr.write(
        f"automc: warning: the {label} proxy scores a median {median:.1%} accuracy over {len(accs)} "
        f"candidates, near chance ({chance:.1%}): its ranking is mostly noise; {fix} or loosen the budget\n"
    )
    return True


def _progress(total: int, desc: str, enabled: bool, initial: int = 0) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True
    )


def _controller_options(config: SearchConfig, out_dir: Path) -> dict[str, Any]:
    """Options of the configured controller: Ray settings (``ray``; ``ilp`` scores its probes on
    Ray when a cluster address is given) and the warm start (a controller without the
    ``warm_start`` option refuses it with one line)."""
    dist = config.distributed
    address = dist.ray_address or os.environ.get("RAY_ADDRESS")
    options: dict[str, Any] = {}
    if config.controller.warm_start:
        options["warm_start"] = config.controller.warm_start
    if config.controller.name == "ilp" and address:
        options.update(
            ray=True, address=address, cpus_per_task=dist.cpus_per_trial, gpus_per_task=dist.gpus_per_trial
        )
    if config.controller.name != "ray":
        return options
    return {
        **options,
        "address": address,
        "storage_path": str((out_dir / "ray").resolve()),
        "cpus_per_trial": dist.cpus_per_trial,
        "gpus_per_trial": dist.gpus_per_trial,
    }


def search(
    config: SearchConfig | None = None,
    *,
    data: Any = None,
    evaluate: Any = None,
    train_step: Any = None,
    **overrides: Any,
) -> SearchResult:
    """Run the whole pipeline of ``config`` and return a :class:`SearchResult`.

    Base model (trained and cached unless ``base.weights``) → layer graph → bound search
    space → budgets checked against the cheapest plan → the controller asks plans →
    over-budget ones priced by the cost model alone → the rest compressed and scored by the
    proxy → everything recorded in one Optuna storage (resumable) → Pareto front → winners
    spread along it → fine-tuned with knowledge distillation → real MACs/latency measured →
    exported (state_dict, plan JSON, ONNX) → report.

    Args:
        config: the run (default: ``SearchConfig()``).
        data: your own ``automc.data.Splits`` (train/val/test ``Dataset``s or ``DataLoader``s
            of ``(input, target)``) instead of ``data.dataset``; the run records it under
            ``Splits.name`` and caches base models by a hash of its tensors.
        evaluate: your ``(model, dataset) -> {"acc": float, ...}`` (higher ``acc`` is better)
            for models whose quality is not top-1 accuracy: it measures the base model and
            the fine-tuned winners (``automc.pipeline.setup.scorer``). The search's proxy
            keeps scoring top-1 val accuracy.
        train_step: your ``(model, (inputs, targets)) -> loss`` (a scalar tensor) or
            ``-> (loss, logits)`` for models whose training loss is not cross-entropy
            (``automc.train.TrainStep``): it trains the base model (when automc trains
            it; then it is not cached), the ``short_train`` proxy's candidates and the
            winners. Where automc distills from the base model (proxy, fine-tuning), a step
            returning ``(loss, logits)`` gets ``alpha * T^2 * KL(teacher || logits) +
            (1 - alpha) * loss``; one returning the loss alone is used as it is. It is run
            once on the base model before the search; a bad result is an ``AutomcError``.
        **overrides: fields to change, by their flat names (``trials=60``, ``model="resnet20"``;
            see ``automc.config.FLAT_NAMES``). ``model`` may also be your own ``nn.Module``
            (trained or not): a copy of it is the base model, used as it is unless
            ``base_epochs`` asks to train it; the run records it by its class path
            (``my_pkg.models:Net``) unless ``base.model`` already names its import path.
            ``model="my_pkg.models:build_net"`` imports that factory and calls it with
            ``model_kwargs`` (a JSON object); a config file naming an import path is
            refused unless the path is given here (code is never imported from data).

    Rerunning with the same storage and study continues the search: completed trials are
    kept and the run stops when ``controller.trials`` trials are finished in total. Bad
    input is rejected with an ``AutomcError`` before anything is written. Torch's thread
    count is ``hardware.threads`` (or ``$AUTOMC_THREADS``/``$OMP_NUM_THREADS``) during the
    run and restored afterwards.
    """
    from automc.hardware.timing import pinned_threads
    from automc.pipeline.setup import UserParts, run_threads

    config, module = _effective(config, overrides)
    if data is not None and config.data.dataset != getattr(data, "name", config.data.dataset):
        config = config.with_overrides(dataset=data.name)
    with pinned_threads(run_threads(config)):
        user = UserParts(model=module, data=data, evaluate=evaluate, train_step=train_step)
        return _search(config, user)


def _effective(config: SearchConfig | None, overrides: dict[str, Any]) -> tuple[SearchConfig, Any]:
    """``config`` with ``overrides`` applied, and the user's module when ``model=`` is one."""
    from automc.config import SearchConfig
    from automc.models import user
    from automc.models.user import class_path, is_import_path

    module = overrides.pop("model") if not isinstance(overrides.get("model", ""), str) else None
    config = (
        (config or SearchConfig()).with_overrides(**overrides) if overrides else (config or SearchConfig())
    )
    if module is None and is_import_path(overrides.get("model", "")):
        module = user.build(config.base.model, user.parse_kwargs(config.base.model_kwargs, "model_kwargs"))
    if module is None:
        user.refuse_from_data(config.base.model, "config base.model")
        return config, None
    from torch import nn

    if not isinstance(module, nn.Module):
        raise AutomcError(f"model= must be a model name or a torch nn.Module, got {type(module).__name__}")
    if not is_import_path(config.base.model):
        config = config.with_overrides(model=class_path(module))
    return config, module


def _search(config: SearchConfig, user: UserParts) -> SearchResult:
    """:func:`search` of the effective ``config`` (threads already pinned); ``user``: the
    user's base model, data, accuracy function and training step."""
    from automc import budget as budget_mod
    from automc import cost as cost_mod
    from automc import resources
    from automc.pipeline import checks, outcome
    from automc.pipeline import winners as winners_mod
    from automc.pipeline.setup import prepare, progress_enabled
    from automc.plan import CompressionPlan
    from automc.report import ReportData, render
    from automc.report.data import recommend
    from automc.search import registry
    from automc.search.base import is_unscored
    from automc.search.storage import Recorder
    from automc.space import SearchSpace

    progress = progress_enabled(config)
    # ---- validate everything cheap before any heavy work or any write ----
    space_path = resources.find_space(config.space)
    space_def = SearchSpace.load(space_path)
    from automc.compress import criteria as criteria_mod

    for criterion in space_def.spec.criteria:
        criteria_mod.REGISTRY.check(criterion, where=f"{space_path}: criterion")
    budget_specs = budget_mod.parse_budgets(list(config.budgets))
    objs = budget_mod.parse_objectives(list(config.objectives))
    registry.get_factory(config.controller.name)
    prof = cost_mod.load_profile(config.hardware.profile) if config.hardware.profile else None
    needs_profile = {"latency_ms", "energy_mj"} & ({o.name for o in objs} | {b.metric for b in budget_specs})
    if "latency_ms" in needs_profile and (prof is None or not getattr(prof, "has_latency", True)):
        raise AutomcError("a latency budget or objective needs --profile with a measured latency table")
    from automc.schema.hw_profile import profile_name

    model, dataset = config.base.model, config.data.dataset
    name = default_study(model, dataset, config.controller.name, config.seed)
    out_dir = Path(config.output.out) if config.output.out else Path("reports") / name
    study_name = checks.check_study_name(config.output.study or name)
    url = storage_url(config.output.storage, out_dir)
    checks.check_outputs(out_dir=out_dir, url=url, study=study_name)
    if config.controller.name == "ray":
        from automc.search.ray_tune import preflight

        preflight(_controller_options(config, out_dir))
    if config.output.new_study:
        study_name = checks.fresh_study(url, study_name)
    run_dir = checks.run_folder(out_dir, study_name)
    label = proxy_label(config)
    meta: dict[str, Any] = {
        "model": model,
        "dataset": dataset,
        "space": str(space_path),
        "objectives": [{"name": o.name, "direction": o.direction} for o in objs],
        "budgets": list(config.budgets),
        "controller": config.controller.name,
        "proxy": label,
        "train_step": function_path(user.train_step),
        "profile": profile_name(config.hardware.profile or ""),
        "profile_digest": profile_digest(prof),
        "seed": config.seed,
        "config": config.to_dict(),
    }
    checks.check_resume(url, study_name, meta)

    setup = prepare(
        config,
        space=space_def,
        budgets=budget_specs,
        profile=prof,
        kl_teacher="kl" in {o.name for o in objs},
        user=user,
    )
    meta["data"] = setup.splits.facts()
    meta["limits"] = setup.limits
    meta["layer_order"] = [s.name for s in setup.layers]
    meta["channel_block"] = setup.bound.channel_block
    run_dir.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(url, study_name, objs, meta)
    config.dump(run_dir / CONFIG_FILE)
    ctrl = registry.create(
        config.controller.name,
        space=setup.bound,
        objectives=objs,
        recorder=recorder,
        seed=config.seed,
        budgets=setup.limits,
        cost_fn=setup.cost_fn,
        **_controller_options(config, run_dir),
    )
    trials = config.controller.trials
    primary = next((o.name for o in objs if o.direction == "maximize"), objs[0].name)
    bar = _progress(trials, "search", progress, initial=min(recorder.scored(), trials))
    best = {"value": -math.inf}

    def on_result(candidate: Any, result: Any, reason: str) -> None:
        if result is not None and result.feasible and primary in result.objectives:
            best["value"] = max(best["value"], float(result.objectives[primary]))
        if not is_unscored(result, objs):
            bar.update(1)
        if math.isfinite(best["value"]):
            bar.set_postfix_str(f"best feasible {primary}={best['value']:.4f}")

    t0 = time.perf_counter()
    try:
        ctrl.drive(setup.evaluator(objs, seed=config.seed), trials, on_result=on_result)
    finally:
        recorder.close()
    bar.close()
    search_s = time.perf_counter() - t0

    # ---- base figures, winners, report ----
    data = ReportData.from_storage(url, study_name)
    warn_if_proxy_blind(data.trials, setup.splits.num_classes, label)
    outcome.warn_if_nothing_feasible(data.trials, setup.limits)
    front = data.pareto_numbers()
    rows = {t.number: t for t in data.trials}
    chosen = winners_mod.choose(rows, front, objs, config.finetune.top, config.finetune.choose)
    plans = {n: CompressionPlan.from_dict(rows[n].plan) for n in chosen}
    timed = [setup.base] + [
        winners_mod.float_architecture(setup.base, plans[n], setup.example, config.seed) for n in chosen
    ]
    base_ms, *winner_ms = winners_mod.latencies_ms(timed, setup.example, setup.cost_model)
    base_fig = winners_mod.base_figures(setup, model, base_ms)
    base_fig["search_seconds"] = search_s
    fix = outcome.profile_fix(model, profile=setup.cost_model.profile, input_shape=tuple(setup.example.shape))
    if outcome.warn_if_profile_off(base_fig, fix=fix):
        base_fig["profile_error"] = outcome.profile_error(base_fig)
        base_fig["profile_fix"] = fix
    recorder.set_study_attr("base", base_fig)
    winners = []
    wbar = _progress(len(chosen), "fine-tune", progress)
    for number, latency in zip(chosen, winner_ms):
        winners.append(
            winners_mod.finish(
                rows[number], plans[number], setup, config, run_dir, latency, base_fig.get("latency_ms")
            )
        )
        wbar.update(1)
    wbar.close()
    recorder.set_study_attr(
        "winners",
        [dict(w.figures, trial=w.trial, plan=w.plan.to_dict(), files=dict(w.files)) for w in winners],
    )
    data = ReportData.from_storage(url, study_name)
    render(data, run_dir)
    return SearchResult(
        recommendation=recommend(data.winners),
        storage=url,
        study=study_name,
        trials=data.trials,
        pareto=tuple(front),
        winners=tuple(winners),
        base=base_fig,
        report_dir=run_dir,
        config=config,
    )
