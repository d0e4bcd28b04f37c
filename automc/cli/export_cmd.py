"""``automc export``: re-export a search winner as the artifact a runtime ships."""

from __future__ import annotations

import argparse

HELP = "export a recorded search winner for a runtime (onnxruntime: fp32/int8 ONNX; torch: .pt2)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="the search's run folder (holds config.yaml and winners/)")
    p.add_argument("--trial", required=True, type=int, help="trial number of a fine-tuned winner")
    p.add_argument("--runtime", default="onnxruntime", help="runtime name (automc list runtimes)")
    p.add_argument(
        "--device", default="cpu", help="runtime device: cpu, cuda or tensorrt (onnxruntime providers)"
    )
    p.add_argument("--out", required=True, help="artifact path to write, e.g. model.onnx")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from automc.hardware.runtimes import export_winner

    done = export_winner(Path(args.run), args.trial, args.runtime, Path(args.out), device=args.device)
    int8 = f"int8 layers: {len(done.int8_layers)}" if done.int8_layers else "fp32"
    recorded = (
        f", PyTorch (fake-quant) {done.test_acc_recorded:.4f}" if done.test_acc_recorded is not None else ""
    )
    print(
        f"export: {done.path} ({done.runtime}, {int8}); test acc on the runtime {done.test_acc_runtime:.4f}{recorded}"
    )
    return 0
