"""Checks of a finished search that say when its result is empty or doubtful (torch-free).

Each prints at most one ``automc: warning:`` line on stderr naming what to change.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from automc.budget import format_amount

PROFILE_TOLERANCE = 0.15
"""Relative error of the profile's base-model latency prediction above which the run warns."""


def cheapest_candidate(trials: Sequence[Any], limits: Mapping[str, float]) -> Any:
    """The priced trial closest to the budget: the smallest worst ``cost / limit`` (``None`` if none)."""
    priced = [t for t in trials if t.priced and all(m in t.cost for m in limits)]
    if not priced or not limits:
        return None
    return min(priced, key=lambda t: max(float(t.cost[m]) / float(v) for m, v in limits.items()))


def warn_if_nothing_feasible(trials: Sequence[Any], limits: Mapping[str, float]) -> bool:
    """One warning line when no candidate met the budget: the cheapest one's cost against each
    limit and the levers (a looser budget, more trials, a space with lower keep ratios).

    Args:
        trials: the study's ``automc.search.storage.TrialRecord`` records.
        limits: the absolute budget limits per cost metric.

    Returns:
        Whether it warned.
    """
    if any(t.complete and t.feasible for t in trials):
        return False
    best = cheapest_candidate(trials, limits)
    failed = [t for t in trials if t.failure.strip()]
    if best is None and failed:
        why = failed[0].failure.strip().splitlines()[0][:300]
        where = f"{len(failed)} of them failed (trial {failed[0].number}: {why})"
    elif best is None:
        where = "no candidate was priced"
    else:
        costs = ", ".join(
            f"{m} {format_amount(m, float(best.cost[m]))} {'>' if float(best.cost[m]) > v else '<='} "
            f"{format_amount(m, v)}"
            for m, v in limits.items()
        )
        where = f"the cheapest (trial {best.number}) costs {costs}"
    sys.stderr.write(
        f"automc: warning: no feasible candidate in {len(trials)} trials: {where}; loosen the budget, "
        "run more trials (--trials) or use a space with lower keep ratios (--space)\n"
    )
    return True


def profile_error(base: Mapping[str, Any]) -> float | None:
    """Relative error ``predicted / measured - 1`` of the base model's latency (``None`` without both)."""
    pred, meas = base.get("latency_ms"), base.get("latency_ms_measured")
    if pred is None or not meas:
        return None
    return float(pred) / float(meas) - 1.0


def profile_fix(model: str, *, profile: Any = None, input_shape: Sequence[int] = ()) -> str:
    """The command that measures a profile of ``model`` on this machine for the runtime and
    device the run's ``profile`` was measured on (``automc.pipeline.winners.runtime_of``; torch
    eager records no provider, so its device is the profile's device kind), at the run's input
    shape, into a new file the next run names with ``--profile``.

    A model defined in the script that ran (``__main__:Net``) cannot be imported by the
    command: it is told to move into an importable module.
    """
    parts = ["automc profile"]
    if profile is not None:
        from automc.pipeline.winners import runtime_of

        name, device = runtime_of(profile)
        device = profile.device.kind if device == "cpu" else device
        parts += [f"--runtime {name}", f"--device {device}", f"--threads {profile.runtime.threads}"]
    parts.append(f"--model {model}")
    if len(input_shape) == 4:
        parts.append(f"--input {'x'.join(str(v) for v in input_shape)}")
    fix = " ".join([*parts, "--out my-device.yaml"]) + ", then --profile my-device.yaml"
    if model.startswith("__main__:"):
        fix += f" ({model.split(':', 1)[1]} must first move from your script into an importable module)"
    return fix


def warn_if_profile_off(base: Mapping[str, Any], *, fix: str) -> bool:
    """One warning line when the profile predicts the base model's latency more than
    :data:`PROFILE_TOLERANCE` off this run's measurement: latency budgets then judge
    candidates for another machine.

    Args:
        base: the base model's figures (``latency_ms`` predicted, ``latency_ms_measured``).
        fix: the command that re-profiles (:func:`profile_fix`).

    Returns:
        Whether it warned.
    """
    err = profile_error(base)
    if err is None or abs(err) <= PROFILE_TOLERANCE:
        return False
    sys.stderr.write(
        "automc: warning: the profile predicts the base model at "
        f"{format_amount('latency_ms', float(base['latency_ms']))}, measured "
        f"{format_amount('latency_ms', float(base['latency_ms_measured']))} here ({err:+.0%}): latency "
        f"budgets are judged for another machine; re-profile on this one: {fix}\n"
    )
    return True


def warn_if_other_cpu(profile: Any, *, fix: str) -> bool:
    """One warning line when a CPU ``profile`` was measured on a CPU whose kernel-deciding
    instruction sets or model differ from this one's (:func:`automc.hardware.cpu.other_cpu`):
    the runtime runs other kernels here, or the same ones at another speed, so latency
    (budgets, objectives) is priced for another machine. Said before anything trains.

    Args:
        profile: the run's device profile.
        fix: the command that re-profiles (:func:`profile_fix`).

    Returns:
        Whether it warned.
    """
    from automc.hardware.cpu import other_cpu

    reason = other_cpu(profile)
    if reason is None:
        return False
    sys.stderr.write(
        f"automc: warning: {reason}: latency is priced for another machine; re-profile on this one: {fix}\n"
    )
    return True
