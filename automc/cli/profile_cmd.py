"""``automc profile``: measure a device latency profile on this machine."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from automc.cli.common import add_model_arguments, parse_input_shape
from automc.errors import AutomcError

HELP = "measure a device latency profile (layer table, overheads, validation) on this machine"


def _fractions(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise AutomcError(f"cannot parse fractions {text!r}; expected e.g. 0.25,0.5,0.75,1") from None
    if not vals or any(not 0 < v <= 1 for v in vals):
        raise AutomcError(f"fractions must be in (0, 1], got {text!r}")
    return tuple(sorted(set(vals) | {1.0}))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runtime",
        default="torch",
        metavar="NAME",
        help="deployment runtime whose kernels are measured (automc list runtimes): torch (eager, fp32) "
        "or onnxruntime (fp32 and int8 on cpu); default torch",
    )
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda", "tensorrt"],
        help="where to measure (default cpu; tensorrt: onnxruntime's TensorRT execution provider)",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="intra-op threads pinned while measuring (default 2)"
    )
    add_model_arguments(p, repeatable=True)
    p.add_argument(
        "--input",
        action="append",
        metavar="NxCxHxW",
        help="example input shape (default 1x3x32x32; repeatable: every model is profiled at each, "
        "e.g. 1x1x32x32 too for grey images, so each gets its own network fit)",
    )
    p.add_argument(
        "--batch", type=int, default=1, help="batch size of every measurement (replaces N of --input)"
    )
    p.add_argument(
        "--validate",
        type=int,
        default=30,
        metavar="N",
        help="held-out random compressed variants per model timed end to end (default 30; 0 = none)",
    )
    p.add_argument(
        "--fit-variants",
        type=int,
        default=30,
        metavar="K",
        help="random variants per model (plus the base) used to fit the network-level terms (default 30)",
    )
    p.add_argument("--repeats", type=int, default=30, help="timed samples per configuration (default 30)")
    p.add_argument(
        "--statistic",
        choices=["min", "median"],
        default="min",
        help="latency of a configuration = this statistic of its samples (default min: reproducible "
        "on a shared machine; median: the typical call)",
    )
    p.add_argument("--warmup", type=int, default=5, help="warm-up calls per configuration (default 5)")
    p.add_argument(
        "--fractions",
        type=_fractions,
        default=None,
        help="channel grid as fractions of each layer's channels (default 1/8 steps: 0.125,...,1)",
    )
    p.add_argument("--id", dest="profile_id", help="profile id (default: the --out file name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", help="profile YAML to write (default hw_profiles/<device>-<threads>thread-<runtime>.yaml)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    for key in ("threads", "batch", "repeats"):
        if getattr(args, key) < 1:
            raise AutomcError(f"--{key} must be >= 1, got {getattr(args, key)}")
    for key in ("validate", "fit_variants", "warmup"):
        if getattr(args, key) < 0:
            raise AutomcError(f"--{key.replace('_', '-')} must be >= 0, got {getattr(args, key)}")
    shapes = []
    for text in dict.fromkeys(args.input or ["1x3x32x32"]):
        shape = parse_input_shape(text)
        if len(shape) != 4:
            raise AutomcError(f"--input: expected NxCxHxW, got {text!r}")
        shapes.append((args.batch, *shape[1:]))
    from automc.hardware import runtimes

    runtime = runtimes.get(args.runtime, device=args.device)
    out = Path(args.out or f"hw_profiles/{args.device}-{args.threads}thread-{args.runtime}.yaml")
    profile_id = args.profile_id or out.stem
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", profile_id):
        raise AutomcError(f"--id: {profile_id!r} must be letters, digits, '.', '_' or '-'")

    import torch

    from automc import compress, graph
    from automc.cost.latency import DEFAULT_CHANNEL_FRACTIONS
    from automc.hardware import ProfileCase, ProfileSettings, build_profile, recheck
    from automc.models import user
    from automc.plan import CompressionPlan
    from automc.schema.hw_profile import dump_hw_profile, load_hw_profile

    torch.manual_seed(args.seed)
    cases = []
    for name in dict.fromkeys(args.model):
        for shape in shapes:
            model = user.from_flag(name, args.model_kwargs, in_channels=shape[1]).eval()
            x = torch.randn(*shape)
            label = name if len(shapes) == 1 else f"{name}@{'x'.join(map(str, shape[1:]))}"
            cases.append(
                ProfileCase(name=label, model=model, example_input=x, layers=tuple(graph.layers(model, x)))
            )

    def apply(model: torch.nn.Module, plan: CompressionPlan, x: torch.Tensor) -> torch.nn.Module:
        return compress.apply(model, plan, x)

    fractions = args.fractions or DEFAULT_CHANNEL_FRACTIONS
    settings = ProfileSettings(
        profile_id=profile_id,
        device="cpu" if args.device == "cpu" else "cuda",
        threads=args.threads,
        batch=args.batch,
        warmup=args.warmup,
        repeats=args.repeats,
        train_variants=args.fit_variants,
        validate=args.validate,
        channel_fractions=fractions,
        rank_fractions=fractions,
        statistic=args.statistic,
        seed=args.seed,
    )
    profile = build_profile(cases, apply, settings, runtime=runtime, progress=not args.quiet)
    dump_hw_profile(profile, out)
    load_hw_profile(out)
    for name, measured, predicted in recheck(profile, cases, runtime=runtime):
        sys.stderr.write(
            f"warning: {name} now runs in {measured:.3f} ms but the profile predicts {predicted:.3f} ms: "
            "the machine's speed changed while profiling (another process or a slow period); "
            "re-run on an idle machine\n"
        )
    v = profile.validation
    summary = f"wrote {out}: {len(profile.latency.entries)} table entries"
    if v is not None:
        summary += (
            f"; validation on {v.n} held-out networks: {v.within_10pct:.0%} within 10%, "
            f"RMSPE {v.rmspe:.1%}, Spearman {v.spearman:.3f} (MACs-only {v.flops_spearman:.3f})"
        )
    sys.stdout.write(summary + "\n")
    return 0
