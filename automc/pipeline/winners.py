"""The Pareto winners: chosen along the front, fine-tuned with distillation, measured, exported."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automc.errors import AutomcError, one_line
from automc.plan import CompressionPlan

if TYPE_CHECKING:
    from automc.config import SearchConfig
    from automc.pipeline.setup import SearchSetup
    from automc.search.storage import TrialRecord


@dataclass(frozen=True)
class Winner:
    """A fine-tuned Pareto winner with its measured figures and exported files."""

    trial: int
    plan: CompressionPlan
    figures: Mapping[str, Any]
    files: Mapping[str, str]
    model: Any = None


def choose(
    rows: Mapping[int, TrialRecord],
    front: Sequence[int],
    objectives: Sequence[Any],
    k: int,
    how: str = "spread",
) -> list[int]:
    """``k`` trial numbers: ``spread`` along the feasible ``front`` (all of it when it is
    smaller), or the ``best`` feasible complete trials in the first objective (ties: the
    lower trial number)."""
    from automc.pareto import select_spread

    if not k:
        return []
    if how == "best":
        first = objectives[0]
        sign = -1.0 if first.direction == "maximize" else 1.0
        scored = [
            t
            for t in rows.values()
            if t.complete and t.feasible and math.isfinite(t.values.get(first.name, math.nan))
        ]
        scored.sort(key=lambda t: (sign * t.values[first.name], t.number))
        return [t.number for t in scored[:k]]
    pts = [[rows[n].values[o.name] for o in objectives] for n in front]
    return [front[i] for i in select_spread(pts, [o.direction for o in objectives], k)]


def measured_macs(model: Any, example_input: Any) -> int:
    """Conv + linear MACs of a real (compressed) model, counted by fvcore."""
    import warnings

    with warnings.catch_warnings():
        # fvcore's import scripts a loss with torch.jit.script, which torch deprecates
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    model.eval()
    fca = FlopCountAnalysis(model, example_input)
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    ops = fca.by_operator()
    return int(sum(v for k, v in ops.items() if k in ("conv", "linear", "addmm", "matmul", "bmm", "einsum")))


def float_architecture(base: Any, plan: CompressionPlan, example_input: Any, seed: int = 0) -> Any:
    """The plan's architecture (pruned, factorised, sparse) at 32 bits, for torch-eager timing.

    Fake-quantization simulates low-bit arithmetic with extra float ops, so timing the
    fake-quantized model measures the simulation, not a deployment; torch eager executes
    fp32 only, so its measured latency is that of the fp32 architecture. On a runtime with
    int8 kernels the fine-tuned winner is re-measured as it ships (:func:`on_runtime`).
    """
    from automc import compress

    fp32 = CompressionPlan(
        layers={n: replace(c, w_bits=32, a_bits=32) for n, c in plan.layers.items()},
        criterion=plan.criterion,
        model=plan.model,
        fingerprint=plan.fingerprint,
    )
    return compress.apply(base, fp32, example_input, seed=seed)


def latencies_ms(models: Sequence[Any], example_input: Any, cost_model: Any) -> list[dict[str, float]]:
    """Measured latencies of ``models`` with their spread, timed together as the search's device
    profile was timed (statistic, repeats, warm-up; threads of the profile).

    The minimum of more samples is lower, so the repeats must match for the measured and
    predicted latencies to be comparable. Without a profile: the median of 30 samples.

    Returns:
        Per model ``{"latency_ms_measured": the profile's statistic, "latency_ms_measured_min",
        "latency_ms_measured_median", "latency_ms_measured_iqr", "latency_samples"}``.
    """
    import functools

    from automc.hardware.timing import TimingProtocol, fold_bn, pinned_threads, time_callables

    profile = cost_model.profile
    m = profile.measurement if profile is not None else None
    with pinned_threads(profile.runtime.threads if profile is not None else None):
        nets = [fold_bn(net).to(example_input.device) for net in models]
        timings = time_callables(
            [functools.partial(net, example_input) for net in nets],
            TimingProtocol(warmup=m.warmup if m else 10, repeats=m.repeats if m else 30),
            device=example_input.device,
        )
    statistic = m.statistic if m else "median"
    return [
        {
            "latency_ms_measured": t.value(statistic),
            "latency_ms_measured_min": t.min_ms,
            "latency_ms_measured_median": t.median_ms,
            "latency_ms_measured_iqr": t.spread_ms,
            "latency_samples": float(t.count),
        }
        for t in timings
    ]


def latency_flags(report: Any) -> dict[str, Any]:
    """``{"latency_flags": {layer: note}}`` for the layers (and ``(network)``) a latency
    prediction priced off the profile's table (roofline, unprofiled network): a rougher
    prediction. Empty without a latency prediction."""
    if "latency_ms" not in report.total:
        return {}
    return {"latency_flags": {k: v for k, v in report.flags.items() if v.startswith("latency")}}


def base_figures(setup: SearchSetup, model_name: str, latency: Mapping[str, float]) -> dict[str, Any]:
    """Predicted and measured figures of the uncompressed base model ``model_name``
    (``latency``: its entry of :func:`latencies_ms`)."""
    identity = CompressionPlan(model=model_name)
    report = setup.cost_model.estimate(setup.layers, identity)
    fig: dict[str, Any] = {k: float(v) for k, v in report.total.items()}
    fig.update(latency_flags(report))
    fig["val_acc"] = float(setup.base_info["val_acc"])
    fig["test_acc"] = float(setup.base_info["test_acc"])
    fig["proxy_acc"] = float(setup.proxy.evaluate(copy.deepcopy(setup.base), identity)["acc"])
    fig["macs_measured"] = measured_macs(setup.base, setup.example)
    fig["params"] = int(sum(p.numel() for p in setup.base.parameters()))
    fig.update(latency)
    fig.update(base_on_runtime(setup))
    return fig


@dataclass(frozen=True)
class Shipped:
    """A model as it ships on the profile's runtime (:func:`on_runtime`).

    Attributes:
        figures: ``runtime``, ``test_acc_runtime``, ``val_acc_runtime``, ``speedup_measured``
            (base latency / model latency, the two artifacts timed interleaved in one run),
            ``base_latency_ms_runtime`` (that run's base timing), ``runtime_int8_layers`` (count);
            or ``runtime`` and ``runtime_error`` when the model could not be shipped.
        latency: the ``latency_ms_measured*`` figures on the runtime (empty on an error).
        files: ``artifact`` and ``base_artifact`` paths.
    """

    figures: Mapping[str, Any]
    latency: Mapping[str, float]
    files: Mapping[str, str]


RUNTIME_DEVICES = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt"}
"""Execution provider recorded in a profile → the runtime device that uses it (else ``cpu``)."""


def runtime_of(profile: Any) -> tuple[str, str]:
    """``(runtime name, device)`` a device profile was measured on (``torch``/``cpu`` without one)."""
    info = getattr(profile, "runtime", None)
    if info is None:
        return "torch", "cpu"
    return str(getattr(info, "framework", "torch")), RUNTIME_DEVICES.get(
        str(getattr(info, "provider", "")), "cpu"
    )


def timing_figures(timing: Any, statistic: str) -> dict[str, float]:
    """The ``latency_ms_measured*`` figures of a :class:`automc.hardware.Timing`."""
    return {
        "latency_ms_measured": timing.value(statistic),
        "latency_ms_measured_min": timing.min_ms,
        "latency_ms_measured_median": timing.median_ms,
        "latency_ms_measured_iqr": timing.spread_ms,
        "latency_samples": float(timing.count),
    }


def _shipped_error(name: str, e: Exception) -> Shipped:
    reason = one_line(e, 200)
    return Shipped(figures={"runtime": name, "runtime_error": reason}, latency={}, files={})


def on_runtime(
    setup: SearchSetup, config: SearchConfig, model: Any, plan: CompressionPlan, folder: Path
) -> Shipped:
    """Export ``model`` (compressed by ``plan``) and the base model for the profile's runtime
    into ``folder`` (int8 layers calibrated on train batches), time the two artifacts
    interleaved with the profile's protocol, and evaluate the model's test accuracy through
    the runtime. A failure (a model the runtime cannot export) is recorded, not raised.
    """
    from automc.hardware import runtimes
    from automc.hardware.runtimes.winner import calibration_inputs, runtime_accuracy, ship
    from automc.hardware.timing import time_artifacts

    profile = setup.cost_model.profile
    name, device = runtime_of(profile)
    m = profile.measurement if profile is not None else None
    threads = int(profile.runtime.threads) if profile is not None else (config.hardware.threads or 1)
    try:
        rt = runtimes.get(name, device=device)
        base_path, _ = ship(
            rt,
            setup.base,
            CompressionPlan(model=plan.model),
            setup.example,
            folder / f"base{rt.suffix}",
            calib=(),
        )
        calib = calibration_inputs(setup.splits.train, seed=config.seed)
        path, int8 = ship(rt, model, plan, setup.example, folder / f"deploy{rt.suffix}", calib=calib)
        base_t, t = time_artifacts(
            rt,
            [base_path, path],
            setup.example.numpy(),
            threads=threads,
            warmup=m.warmup if m else 10,
            repeats=m.repeats if m else 30,
        )
        acc = runtime_accuracy(rt, path, setup.splits.test, threads=threads)
        val_acc = runtime_accuracy(rt, path, setup.splits.val, threads=threads)
    except Exception as e:  # noqa: BLE001 - shipping is measured, not required; the reason is reported
        return _shipped_error(name, e)
    statistic = m.statistic if m else "median"
    latency = timing_figures(t, statistic)
    figures = {
        "runtime": rt.name,
        "runtime_int8_layers": len(int8),
        "test_acc_runtime": float(acc),
        "val_acc_runtime": float(val_acc),
        "base_latency_ms_runtime": base_t.value(statistic),
        "speedup_measured": base_t.value(statistic) / latency["latency_ms_measured"],
    }
    return Shipped(
        figures=figures, latency=latency, files={"artifact": str(path), "base_artifact": str(base_path)}
    )


RUNTIME_ACC_TOLERANCE = 0.005
"""How far (accuracy, 0.5 points) a shipped artifact's test accuracy may fall below the PyTorch one;
on a test split under 200 samples, one sample's worth (int8 rounding flips a prediction or two)."""


def latency_check(figures: Mapping[str, Any], base_predicted_ms: float | None) -> dict[str, Any]:
    """``latency_error`` (predicted / measured − 1 on the runtime) and, beyond
    :data:`automc.cost.latency.LATENCY_TOLERANCE`, ``latency_check``: why, as far as the run can tell. The reasons:
    layers priced by the roofline; the base model, timed in the same run as the winner, off
    by as much in the same direction (the machine runs at another speed than when profiled);
    a timing spread (IQR) over a third of the latency; else the latency model's own error.
    ``{}`` without both a prediction and a measurement."""
    from automc.cost.latency import LATENCY_TOLERANCE, NETWORK_FLAG_KEY, PRECISION_FLAG_KEY

    pred, meas = figures.get("latency_ms"), figures.get("latency_ms_measured")
    if pred is None or not meas:
        return {}
    err = float(pred) / float(meas) - 1.0
    out: dict[str, Any] = {"latency_error": err}
    if abs(err) <= LATENCY_TOLERANCE:
        return out
    reasons = []
    all_flags = figures.get("latency_flags") or {}
    flags = {k for k in all_flags if k not in (PRECISION_FLAG_KEY, NETWORK_FLAG_KEY)}
    if NETWORK_FLAG_KEY in all_flags:
        reasons.append("the network is not in the profile")
    if flags:
        reasons.append(f"{len(flags)} layers priced by the roofline (outside the profile's table)")
    base_meas = figures.get("base_latency_ms_runtime")
    if base_predicted_ms and base_meas:
        base_err = float(base_predicted_ms) / float(base_meas) - 1.0
        if abs(base_err) > LATENCY_TOLERANCE and base_err * err > 0:
            reasons.append(
                f"the base model, timed in the same run, is {base_err:+.0%} off too: the machine runs "
                "at another speed than when it was profiled"
            )
    iqr = figures.get("latency_ms_measured_iqr")
    if iqr is not None and float(iqr) > float(meas) / 3:
        reasons.append(f"noisy timing (IQR {float(iqr) / float(meas):.0%} of the latency)")
    reasons = reasons or ["the latency model's own error on this network (scripts/bench_runtime.py)"]
    out["latency_check"] = f"predicted {err:+.0%} off the measurement: " + "; ".join(reasons)
    return out


def runtime_accuracy_check(trial: int, figures: Mapping[str, Any], test_samples: int) -> dict[str, Any]:
    """``{"runtime_acc_ok": bool}`` for a winner shipped to a runtime (``{}`` otherwise): whether
    its artifact's test accuracy (on ``test_samples`` samples) is within
    :data:`RUNTIME_ACC_TOLERANCE` of the PyTorch (fake-quant) one, or within one sample where
    that is more. Prints one ``automc: warning:`` line when it is not."""
    import sys

    if "test_acc_runtime" not in figures or "test_acc" not in figures:
        return {}
    runtime, pt = float(figures["test_acc_runtime"]), float(figures["test_acc"])
    tolerance = max(RUNTIME_ACC_TOLERANCE, 1.0 / max(1, test_samples))
    ok = runtime >= pt - tolerance - 1e-9
    if not ok:
        print(
            f"automc: warning: winner trial {trial} reaches {runtime:.2%} test accuracy as shipped on "
            f"{figures.get('runtime')} ({pt:.2%} in PyTorch): its artifact does not compute what was "
            "fine-tuned and it is not recommended",
            file=sys.stderr,
        )
    return {"runtime_acc_ok": ok}


def base_on_runtime(setup: SearchSetup) -> dict[str, Any]:
    """The base model's latency and test accuracy on the profile's runtime, when that is not
    torch (whose latency the search already measured); ``{}`` otherwise."""
    import tempfile

    from automc.hardware import runtimes
    from automc.hardware.runtimes.winner import runtime_accuracy
    from automc.hardware.timing import time_artifacts

    profile = setup.cost_model.profile
    name, device = runtime_of(profile)
    if name == "torch":
        return {"runtime": name}
    m, threads = profile.measurement, int(profile.runtime.threads)
    try:
        rt = runtimes.get(name, device=device)
        with tempfile.TemporaryDirectory() as tmp:
            path = rt.export(setup.base, setup.example, Path(tmp) / f"base{rt.suffix}")
            [t] = time_artifacts(
                rt, [path], setup.example.numpy(), threads=threads, warmup=m.warmup, repeats=m.repeats
            )
            acc = runtime_accuracy(rt, path, setup.splits.test, threads=threads)
    except Exception as e:  # noqa: BLE001 - measured, not required; the reason is reported
        return dict(_shipped_error(name, e).figures)
    return {"runtime": rt.name, "test_acc_runtime": float(acc), **timing_figures(t, m.statistic)}


def identity(setup: SearchSetup, config: SearchConfig) -> dict[str, Any]:
    """Where a winner comes from: base model (its name and ``package.module:Class``), its
    weights, data shape and classes, automc version."""
    import automc
    from automc.models.user import class_path

    info = setup.base_info
    return {
        "automc_version": automc.__version__,
        "model": config.base.model,
        "model_class": class_path(setup.base),
        "dataset": config.data.dataset,
        "seed": config.seed,
        "base_weights": str(info.get("weights") or info.get("weights_path") or ""),
        "input_shape": [int(s) for s in setup.example.shape],
        "num_classes": int(setup.splits.num_classes),
        "in_channels": int(setup.splits.in_channels),
    }


WINNER_SCHEMA = "automc/winner"
"""Schema of ``winners/trialN/winner.json``: the winner's identity, figures and files."""


def finish(
    row: TrialRecord,
    plan: CompressionPlan,
    setup: SearchSetup,
    config: SearchConfig,
    out_dir: Path,
    latency: Mapping[str, float],
    base_predicted_ms: float | None = None,
) -> Winner:
    """Fine-tune the winner of ``row`` with KD from the base model (with the user's
    ``setup.train_step`` in place of cross-entropy when given), measure it and write its files.

    ``latency`` is the winner's entry of :func:`latencies_ms`, ``base_predicted_ms`` the base
    model's predicted latency (:func:`base_figures`), for :func:`latency_check`; the fine-tuned model's
    latency measured on the profile's runtime (:func:`on_runtime`) replaces it when the
    model could be shipped there. The files in ``winners/trialN/`` each say what they are:
    ``model.pt`` (readable by :func:`automc.compress.load_compressed`: state dict, plan,
    input shape, classes, ``meta`` = :func:`identity`), ``plan.json`` (the plan, naming the
    model and its layer fingerprint), ``winner.json`` (identity, figures, files),
    ``model.onnx`` (the fake-quantized model, the identity in its metadata properties) and
    the runtime's artifacts ``deploy.<suffix>`` (what ships: fp32, int8 where the plan
    says ≤ 8 bits) and ``base.<suffix>`` (the base model it is timed against).
    """
    import json

    from automc import budget, compress, train
    from automc.hardware.runtimes.deploy import torch_onnx_export
    from automc.pipeline.setup import progress_enabled
    from automc.proxy import recalibrate_bn

    seed, ft = config.seed, config.finetune
    calib = setup.proxy.calibration_batches()
    model = compress.apply(setup.base, plan, setup.example, calib_batches=calib, seed=seed)
    # usually a cache hit; on a miss the short_train proxy would train its argument in place
    proxy_metrics = dict(setup.proxy.evaluate(copy.deepcopy(model), plan))
    recalibrate_bn(model, calib)
    before = setup.accuracy(model, setup.splits.test)["acc"]
    if ft.epochs:
        train.finetune(
            model,
            setup.splits,
            replace(train.FINETUNE_RECIPE, epochs=ft.epochs),
            distillation=train.Distillation(
                teacher=setup.base, temperature=ft.kd_temperature, alpha=ft.kd_alpha
            ),
            options=train.FitOptions(seed=seed, progress=progress_enabled(config), placement=setup.placement),
            train_step=setup.train_step,
        )
    val = setup.accuracy(model, setup.splits.val)
    after = setup.accuracy(model, setup.splits.test)
    model.cpu().eval()
    wdir = out_dir / "winners" / f"trial{row.number}"
    wdir.mkdir(parents=True, exist_ok=True)
    shipped = on_runtime(setup, config, model, plan, wdir)
    latency = {**latency, **shipped.latency}
    report = setup.cost_model.estimate(setup.layers, plan)
    cost = dict(report.total)
    measured = {
        "macs": float(measured_macs(model, setup.example)),
        "latency_ms": latency["latency_ms_measured"],
    }
    measured_cons = budget.constraints({**cost, **measured}, setup.limits)
    figures: dict[str, Any] = {k: float(v) for k, v in cost.items()}
    figures.update(
        proxy_acc=float(proxy_metrics.get("acc", row.values.get("acc", math.nan))),
        val_acc=float(val["acc"]),
        test_acc_before=float(before),
        test_acc=float(after["acc"]),
        macs_measured=measured["macs"],
        params=int(cost.get("params", sum(p.numel() for p in model.parameters()))),
        meets_budget_measured=all(v <= 1e-9 for v in measured_cons.values()),
        measured_constraints=measured_cons,
    )
    if "loss" in after:  # a user's evaluate= may measure accuracy only
        figures["test_loss"] = float(after["loss"])
    figures.update(latency)
    figures.update(latency_flags(report))
    figures.update(shipped.figures)
    figures.update(runtime_accuracy_check(row.number, figures, len(setup.splits.test)))
    figures.update(latency_check(figures, base_predicted_ms))
    ident = {**identity(setup, config), "trial": row.number}
    files = {
        "model": str(wdir / "model.pt"),
        "plan": str(wdir / "plan.json"),
        "winner": str(wdir / "winner.json"),
        **shipped.files,
    }
    compress.save_compressed(
        files["model"],
        model,
        plan,
        model_name=config.base.model,
        input_shape=ident["input_shape"],
        num_classes=ident["num_classes"],
        in_channels=ident["in_channels"],
        meta=ident,
    )
    Path(files["plan"]).write_text(plan.to_json(indent=2), encoding="utf-8")
    if config.output.export_onnx:
        onnx_path = wdir / "model.onnx"
        try:
            torch_onnx_export(model, (setup.example,), onnx_path)
            _describe_onnx(onnx_path, ident)
            files["onnx"] = str(onnx_path)
        except Exception as e:  # noqa: BLE001 - export is best effort; the reason is reported
            figures["onnx_error"] = one_line(e, 200)
    manifest = {"schema": WINNER_SCHEMA, "version": 1, **ident, "figures": figures, "files": files}
    Path(files["winner"]).write_text(
        json.dumps(manifest, indent=2, sort_keys=True, default=float), encoding="utf-8"
    )
    return Winner(trial=row.number, plan=plan, figures=figures, files=files, model=model)


def _describe_onnx(path: Path, ident: Mapping[str, Any]) -> None:
    """Write ``ident`` into the ONNX file's metadata properties (``automc.<key>`` = JSON text)."""
    import json

    import onnx

    proto = onnx.load(str(path))
    for key, value in ident.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"automc.{key}", json.dumps(value)
    onnx.save(proto, str(path))


def load_winner(run_dir: str | Path, trial: int | None = None) -> Any:
    """See :func:`automc.load_winner`."""
    import json

    from automc.compress import load_compressed

    root = Path(run_dir)
    if trial is None:
        pareto = root / "pareto.json"
        if not pareto.is_file():
            raise AutomcError(f"{root}: no pareto.json (not an automc search folder); name a trial")
        try:
            trial = json.loads(pareto.read_text(encoding="utf-8")).get("recommended", {}).get("trial")
        except (ValueError, AttributeError):
            raise AutomcError(f"{pareto}: not a pareto.json written by automc") from None
        if trial is None:
            raise AutomcError(f"{pareto}: no recommended winner (none meets every budget); name a trial")
    path = root / "winners" / f"trial{int(trial)}" / "model.pt"
    if not path.is_file():
        have = (
            sorted(p.name for p in (root / "winners").glob("trial*")) if (root / "winners").is_dir() else []
        )
        raise AutomcError(f"{root}: no winner trial {trial} (winners: {', '.join(have) or 'none'})")
    return load_compressed(path)
