"""``automc inspect``: the traced layer table of a model (kinds, shapes, MACs, dependency groups)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from automc.cli.common import add_model_arguments, parse_input_shape

HELP = "Show a model's conv/linear layers: shapes, MACs, params and channel dependency groups."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--input", default="1x3x32x32", help="example input shape, e.g. 1x3x32x32")
    parser.add_argument("--num-classes", type=int, default=10, help="classifier outputs (default 10)")
    parser.add_argument("--json", action="store_true", help="print the layer specs and totals as JSON")


def _fmt(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"


def _pair(t: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in t)


def run(args: argparse.Namespace) -> int:
    import torch

    from automc.graph import trace
    from automc.models import user
    from automc.plan import layers_fingerprint

    torch.set_num_threads(min(2, torch.get_num_threads()))
    shape = parse_input_shape(args.input)
    model = user.from_flag(
        args.model, args.model_kwargs, num_classes=args.num_classes, in_channels=shape[1]
    ).eval()
    info = trace(model, torch.zeros(*shape))
    specs = info.layers
    totals: dict[str, Any] = {
        "layers": len(specs),
        "macs": sum(s.macs for s in specs),
        "params": sum(s.params for s in specs),
        "model_params": sum(p.numel() for p in model.parameters()),
        "groups": len(info.groups),
        "fingerprint": layers_fingerprint(specs),
    }
    if args.json:
        doc = {
            "model": args.model,
            "input": list(shape),
            "layers": [s.to_dict() for s in specs],
            "unprunable": dict(info.unprunable),
            "unmodelled": dict(info.unmodelled),
            "totals": totals,
        }
        print(json.dumps(doc, indent=2))
        return 0
    header = ("name", "kind", "in->out", "kernel", "stride", "groups", "out shape", "MACs", "params", "group")
    rows = [
        (
            s.name,
            s.kind,
            f"{s.in_channels}->{s.out_channels}",
            _pair(s.kernel),
            _pair(s.stride),
            str(s.groups),
            _pair(s.out_shape),
            _fmt(s.macs),
            _fmt(s.params),
            str(s.group) if s.prunable else "-",
        )
        for s in specs
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(
        f"total: {totals['layers']} layers, {_fmt(totals['macs'])} MACs (per sample), "
        f"{_fmt(totals['params'])} conv/linear params ({_fmt(totals['model_params'])} in the model), "
        f"{totals['groups']} prunable groups, fingerprint {totals['fingerprint']}"
    )
    reasons: dict[str, list[str]] = {}
    for name, why in info.unprunable.items():
        reasons.setdefault(why, []).append(name)
    for why, names in reasons.items():
        shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
        print(f"not prunable ({why}): {shown}")
    for name, what in info.unmodelled.items():
        print(f"not modelled (MACs left out of the totals, search refuses the model): {name}: {what}")
    return 0
