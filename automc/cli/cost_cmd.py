"""``automc cost``: price a model (optionally compressed by a plan) without running it.

Prints a per-layer table and totals: MACs, params, size, peak activation memory, energy
(compute + memory, from the energy table) and, with a device profile, latency at the
profile's batch size. A layer that cannot be priced, or a module computing outside
conv/linear layers (attention, ``Conv1d``, an LSTM: ``GraphInfo.unmodelled``), makes the
command fail (exit 2) unless ``--allow-unsupported`` is given, in which case totals are
lower bounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from automc.cli.common import add_model_arguments, parse_input_shape, read_plan
from automc.errors import AutomcError, UnsupportedLayerError

HELP = "Price a model/plan analytically: MACs, params, size, peak activation, energy, latency."

SPARSITY_NOTE = (
    "MACs are dense multiply-accumulates (BatchNorm folded, batch 1): unstructured sparsity saves size "
    "and memory traffic, not MACs"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--weights", help="state_dict file to load (checked against the model)")
    parser.add_argument("--plan", help="compression plan JSON (default: the uncompressed model)")
    parser.add_argument("--input", default="1x3x32x32", help="example input shape, e.g. 1x3x32x32")
    parser.add_argument("--num-classes", type=int, default=10, help="classifier outputs (default 10)")
    parser.add_argument(
        "--profile",
        help="device profile name or path (hw_profiles/NAME.yaml): buffer size, energy table, latency",
    )
    parser.add_argument(
        "--energy-table", help="energy table name or path (default: the profile's, else energy-45nm)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print {total, per_layer, unsupported, flags} as JSON"
    )
    parser.add_argument(
        "--allow-unsupported",
        action="store_true",
        help="print lower bounds instead of failing on unpriceable layers",
    )


def _check_plan_fits(plan: Any, path: str, model_name: str, layers: Any) -> None:
    """``plan.validate_for(layers)`` with the plan file named in the error; a plan for another model is refused."""
    if plan.model and plan.model != model_name:
        raise AutomcError(f"--plan {path}: plan is for model {plan.model!r}, not --model {model_name!r}")
    try:
        plan.validate_for(layers)
    except AutomcError as e:
        raise AutomcError(f"--plan {path}: {e}") from None


def _fmt_count(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3f}{unit}"
    return f"{v:.0f}"


def _fmt_bytes(v: float) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}B"


def _fmt_uj(mj: float | None) -> str:
    return "-" if mj is None else f"{mj * 1e3:.3f}"


def run(args: argparse.Namespace) -> int:
    shape = parse_input_shape(args.input)
    if len(shape) != 4:
        raise AutomcError(f"--input: {args.input!r} must be NxCxHxW, e.g. 1x3x32x32")
    from automc.cost import CostModel, load_energy_table, load_profile

    profile = load_profile(args.profile) if args.profile else None
    table = load_energy_table(args.energy_table) if args.energy_table else None
    plan = read_plan(args.plan) if args.plan else None

    import torch

    from automc import graph
    from automc.cost.flops import layer_geometry
    from automc.models import user
    from automc.plan import CompressionPlan

    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = user.from_flag(
        args.model,
        args.model_kwargs,
        num_classes=args.num_classes,
        in_channels=shape[1],
        weights=args.weights,
    )
    model.eval()
    info = graph.trace(model, torch.zeros(shape))
    layers = list(info.layers)
    if plan is None:
        plan = CompressionPlan(model=args.model)
    else:
        _check_plan_fits(plan, args.plan, args.model, layers)

    cost_model = CostModel(profile=profile, energy_table=table)
    report = cost_model.estimate(layers, plan)
    if info.unmodelled:
        outside = {name: f"not a conv2d/linear layer: {what}" for name, what in info.unmodelled.items()}
        report = dataclasses.replace(report, unsupported={**report.unsupported, **outside})
    if report.unsupported and not args.allow_unsupported:
        names = sorted(report.unsupported)
        shown = "; ".join(f"{n}: {report.unsupported[n]}" for n in names[:3])
        more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
        raise UnsupportedLayerError(
            f"cannot price {len(names)} layer(s): {shown}{more}; pass --allow-unsupported to print lower bounds"
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        return 0

    keep = plan.group_keep(layers)
    header = (
        f"{'layer':<28} {'kind':<8} {'in->out':>11} {'MACs':>10} {'params':>9} {'size':>10} {'peak act':>10}"
    )
    header += f" {'E comp uJ':>10} {'E mem uJ':>10}"
    has_latency = "latency_ms" in report.total
    if has_latency:
        header += f" {'lat ms':>8}"
    print(header)
    for spec in layers:
        row = report.per_layer.get(spec.name)
        if row is None:
            print(f"{spec.name:<28} {spec.kind:<8} unsupported: {report.unsupported.get(spec.name, '')}")
            continue
        geo = layer_geometry(spec, plan.choice(spec.name), keep)
        chans = f"{geo.in_features}->{geo.out_channels}"
        line = (
            f"{spec.name:<28} {spec.kind:<8} {chans:>11} {_fmt_count(row['macs']):>10} {_fmt_count(row['params']):>9}"
            f" {_fmt_bytes(row['size_bytes']):>10} {_fmt_bytes(row['peak_activation_bytes']):>10}"
            f" {_fmt_uj(row.get('energy_compute_mj')):>10} {_fmt_uj(row.get('energy_memory_mj')):>10}"
        )
        if has_latency:
            line += f" {row.get('latency_ms', float('nan')):>8.4f}"
        print(line)
    t = report.total
    print()
    print(f"MACs                  {_fmt_count(t['macs'])} ({int(t['macs'])})")
    print(f"params                {_fmt_count(t['params'])} ({int(t['params'])})")
    print(f"size                  {_fmt_bytes(t['size_bytes'])} ({int(t['size_bytes'])} bytes)")
    print(
        f"peak activation       {_fmt_bytes(t['peak_activation_bytes'])} (largest layer input + output, batch 1)"
    )
    print(
        f"energy                {t['energy_mj'] * 1e3:.3f} uJ = compute {t['energy_compute_mj'] * 1e3:.3f}"
        f" + memory {t['energy_memory_mj'] * 1e3:.3f} (energy table {cost_model.energy_table.name})"
    )
    if has_latency and profile is not None:
        batch = profile.runtime.batch
        print(f"latency               {t['latency_ms']:.4f} ms (batch {batch}, profile {profile.device.id})")
    else:
        print("latency               - (pass --profile for a latency prediction)")
    print(f"note: {SPARSITY_NOTE} (sparse-effective MACs {_fmt_count(t['macs_sparse_effective'])})")
    for name, note in sorted(report.flags.items()):
        print(f"flag: {name}: {note}")
    for name, why in sorted(report.unsupported.items()):
        print(f"unsupported (totals are lower bounds): {name}: {why}")
    return 0
