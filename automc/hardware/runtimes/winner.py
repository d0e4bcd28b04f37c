"""A compressed model as it ships on a runtime: its artifact, latency and accuracy there (torch).

:func:`ship` exports a model for a runtime (int8 where the plan's layers are at ≤ 8 bits
and the runtime executes int8, fp32 otherwise), :func:`runtime_accuracy` evaluates an
artifact through the runtime itself, and :func:`export_winner` re-exports a winner recorded
in a search's run folder (``winners/trialN/model.pt`` + ``plan.json``, ``config.yaml``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from automc.errors import AutomcError
from automc.hardware.runtimes import Runtime, accuracy, get, int8_layers
from automc.plan import CompressionPlan

__all__ = ["Export", "calibration_inputs", "export_winner", "runtime_accuracy", "ship"]

CALIB_BATCHES = 8
CALIB_BATCH_SIZE = 32


@dataclass(frozen=True)
class Export:
    """A re-exported winner.

    Attributes:
        path: the artifact written.
        runtime: the runtime's name.
        int8_layers: the layers exported as int8 kernels.
        test_acc_runtime: test accuracy of the artifact, run by the runtime.
        test_acc_recorded: the (PyTorch, fake-quant) test accuracy the search recorded
            for this winner, or ``None`` when the run folder has none.
    """

    path: Path
    runtime: str
    int8_layers: tuple[str, ...]
    test_acc_runtime: float
    test_acc_recorded: float | None


def calibration_inputs(train: Any, *, seed: int) -> tuple[torch.Tensor, ...]:
    """``CALIB_BATCHES`` input batches of ``CALIB_BATCH_SIZE`` samples drawn (seeded) from ``train``."""
    n = len(train)
    if n == 0:
        raise AutomcError("the train split is empty; int8 calibration needs training inputs")
    gen = torch.Generator().manual_seed(int(seed))
    need = CALIB_BATCHES * CALIB_BATCH_SIZE
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(-(-need // n))])[:need]
    x = torch.stack([train[int(i)][0] for i in order])
    return tuple(b.contiguous() for b in x.split(CALIB_BATCH_SIZE))


def ship(
    runtime: Runtime,
    model: Any,
    plan: CompressionPlan,
    example: torch.Tensor,
    out: Path,
    *,
    calib: Sequence[torch.Tensor],
) -> tuple[Path, tuple[str, ...]]:
    """Export ``model`` (compressed by ``plan``) for ``runtime`` to ``out``.

    Returns:
        The artifact and the layers exported as int8 (none on a runtime without ``int8``).
    """
    int8 = tuple(sorted(int8_layers(plan))) if "int8" in runtime.precisions else ()
    path = runtime.export(model, example, out, int8_layers=int8, calib=calib if int8 else ())
    return path, int8


def runtime_accuracy(
    runtime: Runtime, artifact: Path, dataset: Any, *, threads: int, batch_size: int = 256
) -> float:
    """Top-1 accuracy of ``artifact`` on ``dataset``, every batch run by ``runtime``."""
    from automc import data

    session = runtime.session(artifact, threads=threads)
    return accuracy(session, data.loader(dataset, batch_size, shuffle=False))


def _recorded_test_acc(run_dir: Path, trial: int) -> float | None:
    pareto = run_dir / "pareto.json"
    if not pareto.is_file():
        return None
    try:
        winners = json.loads(pareto.read_text(encoding="utf-8")).get("winners") or []
    except (OSError, ValueError, AttributeError):
        return None
    for w in winners:
        if isinstance(w, dict) and w.get("trial") == trial and isinstance(w.get("test_acc"), (int, float)):
            return float(w["test_acc"])
    return None


def export_winner(run_dir: Path, trial: int, runtime: str, out: Path, *, device: str = "cpu") -> Export:
    """Re-export the winner of ``trial`` recorded in the search run folder ``run_dir``.

    The fine-tuned model is rebuilt from ``winners/trial<N>/model.pt`` by
    :func:`automc.compress.load_compressed` (plain tensors, ``weights_only``), int8 layers are
    calibrated on the train split of the dataset in ``config.yaml`` (the batches a search
    calibrates its winners with), and the artifact's test accuracy is measured through the
    runtime.

    Raises:
        AutomcError: the run folder lacks the config or the winner, an unreadable model
            file, or the runtime is not installed.
    """
    from automc import data as data_mod
    from automc.compress import load_compressed
    from automc.config import SearchConfig

    rt = get(runtime, device=device)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise AutomcError(f"{run_dir} is not a search run folder: it has no config.yaml")
    wdir = run_dir / "winners" / f"trial{trial}"
    weights, plan_path = wdir / "model.pt", wdir / "plan.json"
    if not (weights.is_file() and plan_path.is_file()):
        winners = run_dir / "winners"
        known = sorted(p.name for p in winners.glob("trial*")) if winners.is_dir() else []
        raise AutomcError(
            f"{run_dir} has no fine-tuned winner for trial {trial} (winners: {', '.join(known) or 'none'})"
        )
    config = SearchConfig.load(config_path)
    plan = CompressionPlan.from_json(plan_path.read_text(encoding="utf-8"), where=str(plan_path))
    model = load_compressed(weights)
    splits = data_mod.load(config.data.dataset, root=config.data.root, seed=config.seed)
    example = splits.train[0][0].unsqueeze(0)
    calib = calibration_inputs(splits.train, seed=config.seed)
    path, int8 = ship(rt, model, plan, example, Path(out), calib=calib)
    threads = config.hardware.threads or 1
    acc = runtime_accuracy(rt, path, splits.test, threads=threads)
    return Export(
        path=path,
        runtime=rt.name,
        int8_layers=int8,
        test_acc_runtime=acc,
        test_acc_recorded=_recorded_test_acc(run_dir, trial),
    )
