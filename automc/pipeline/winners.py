"""The Pareto winners: chosen along the front, fine-tuned with distillation, measured, exported."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    rows: Mapping[int, TrialRecord], front: Sequence[int], objectives: Sequence[Any], k: int
) -> list[int]:
    """``k`` trial numbers spread along the feasible ``front`` (all of it when it is smaller)."""
    from automc.pareto import select_spread

    if not k:
        return []
    pts = [[rows[n].values[o.name] for o in objectives] for n in front]
    return [front[i] for i in select_spread(pts, [o.direction for o in objectives], k)]


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


def latencies_ms(models: Sequence[Any], example_input: Any, cost_model: Any) -> list[float]:
    """Measured latencies of ``models``, timed together as the search's device profile was timed
    (statistic, repeats, warm-up; threads of the profile).

    The minimum of more samples is lower, so the repeats must match for the measured and
    predicted latencies to be comparable. Without a profile: the median of 30 samples.
    """
    from automc.hardware import measure_as_profiled, measure_models_ms

    profile = cost_model.profile
    if profile is None:
        return measure_models_ms(models, example_input)
    return measure_as_profiled(profile, models, example_input)


def latency_flags(report: Any) -> dict[str, Any]:
    """``{"latency_flags": {layer: note}}`` for the layers (and ``(network)``) a latency
    prediction priced off the profile's table (roofline, unprofiled network): a rougher
    prediction. Empty without a latency prediction."""
    if "latency_ms" not in report.total:
        return {}
    return {"latency_flags": {k: v for k, v in report.flags.items() if v.startswith("latency")}}


def base_figures(setup: SearchSetup, model_name: str, latency_ms: float) -> dict[str, Any]:
    """Predicted and measured figures of the uncompressed base model ``model_name``."""
    from automc import train

    identity = CompressionPlan(model=model_name)
    report = setup.cost_model.estimate(setup.layers, identity)
    fig: dict[str, Any] = {k: float(v) for k, v in report.total.items()}
    fig.update(latency_flags(report))
    fig["test_acc"] = float(train.evaluate(setup.base, setup.splits.test)["acc"])
    fig["proxy_acc"] = float(setup.proxy.evaluate(copy.deepcopy(setup.base), identity)["acc"])
    fig["macs_measured"] = measured_macs(setup.base, setup.example)
    fig["params"] = int(sum(p.numel() for p in setup.base.parameters()))
    fig["latency_ms_measured"] = latency_ms
    return fig


def finish(
    row: TrialRecord,
    plan: CompressionPlan,
    setup: SearchSetup,
    config: SearchConfig,
    out_dir: Path,
    latency_ms: float,
) -> Winner:
    """Fine-tune the winner of ``row`` with KD from the base model, measure it and write its files."""
    import torch

    from automc import budget, compress, train
    from automc.proxy import recalibrate_bn

    seed, ft = config.seed, config.finetune
    calib = setup.proxy.calibration_batches()
    model = compress.apply(setup.base, plan, setup.example, calib_batches=calib, seed=seed)
    # usually a cache hit; on a miss the short_train proxy would train its argument in place
    proxy_metrics = dict(setup.proxy.evaluate(copy.deepcopy(model), plan))
    recalibrate_bn(model, calib)
    before = train.evaluate(model, setup.splits.test)["acc"]
    if ft.epochs:
        train.finetune(
            model,
            setup.splits,
            teacher=setup.base,
            epochs=ft.epochs,
            temperature=ft.kd_temperature,
            alpha=ft.kd_alpha,
            seed=seed,
            progress=config.output.progress,
        )
    after = train.evaluate(model, setup.splits.test)
    model.eval()
    report = setup.cost_model.estimate(setup.layers, plan)
    cost = dict(report.total)
    measured = {"macs": float(measured_macs(model, setup.example)), "latency_ms": latency_ms}
    measured_cons = budget.constraints({**cost, **measured}, setup.limits)
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
    figures.update(latency_flags(report))
    wdir = out_dir / "winners" / f"trial{row.number}"
    wdir.mkdir(parents=True, exist_ok=True)
    files = {"state_dict": str(wdir / "model.pt"), "plan": str(wdir / "plan.json")}
    torch.save(
        {"state_dict": model.state_dict(), "plan": plan.to_json(), "model": plan.model}, files["state_dict"]
    )
    Path(files["plan"]).write_text(plan.to_json(indent=2), encoding="utf-8")
    if config.output.export_onnx:
        onnx_path = wdir / "model.onnx"
        try:
            torch.onnx.export(model, (setup.example,), str(onnx_path), opset_version=17, dynamo=False)
            files["onnx"] = str(onnx_path)
        except Exception as e:  # noqa: BLE001 - export is best effort; the reason is reported
            figures["onnx_error"] = f"{e.__class__.__name__}: {' '.join(str(e).split())[:200]}"
    return Winner(trial=row.number, plan=plan, figures=figures, files=files, model=model)
