"""``automc compress``: apply a plan to a model and save the compressed model.

The output file holds ``{"state_dict", "plan", "model", "input_shape", "num_classes",
"in_channels"}`` (plain types, readable with ``torch.load(weights_only=True)``); rebuild
the module with ``automc.compress.load_compressed(path)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from automc.cli.common import add_model_arguments, parse_input_shape, read_plan
from automc.errors import AutomcError

HELP = "Apply a compression plan (prune / low-rank / quantize) to a model and save it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--weights", help="state_dict file to load before compressing")
    parser.add_argument("--plan", required=True, help="compression plan JSON")
    parser.add_argument("--input", default="1x3x32x32", help="example input shape, e.g. 1x3x32x32")
    parser.add_argument("--num-classes", type=int, default=10, help="classifier outputs (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random criteria (default 0)")
    parser.add_argument("--out", required=True, help="output file (e.g. model.pt)")


def run(args: argparse.Namespace) -> int:
    import torch

    from automc.compress import apply, save_compressed
    from automc.graph import count_macs
    from automc.models import user

    torch.set_num_threads(min(2, torch.get_num_threads()))
    shape = parse_input_shape(args.input)
    plan = read_plan(args.plan)
    if plan.model and plan.model != args.model:
        raise AutomcError(f"--plan {args.plan}: plan is for model {plan.model!r}, not --model {args.model!r}")
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise AutomcError(f"--out: folder {out.parent} does not exist")
    model = user.from_flag(
        args.model,
        args.model_kwargs,
        num_classes=args.num_classes,
        in_channels=shape[1],
        weights=args.weights,
    )
    model.eval()
    x = torch.zeros(*shape)
    try:
        compressed = apply(model, plan, x, seed=args.seed)
    except AutomcError as e:
        raise AutomcError(f"--plan {args.plan}: {e}") from None
    save_compressed(
        out,
        compressed,
        plan,
        model_name=args.model,
        input_shape=shape,
        num_classes=args.num_classes,
        in_channels=shape[1],
    )
    macs0, macs1 = count_macs(model, x), count_macs(compressed, x)
    params0 = sum(p.numel() for p in model.parameters())
    params1 = sum(p.numel() for p in compressed.parameters())
    print(f"conv/linear MACs: {macs0:,} -> {macs1:,} ({macs1 / max(macs0, 1):.1%})")
    print(f"params:           {params0:,} -> {params1:,} ({params1 / max(params0, 1):.1%})")
    print(f"saved {out} (reload with automc.compress.load_compressed)")
    return 0
