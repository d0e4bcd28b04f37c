"""``automc`` command line: one module per verb, imported lazily.

Each verb module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports (torch, optuna, ray) happen inside ``run`` so that
``automc --help`` is instant. Every ``AutomcError`` becomes one line on stderr and exit
code 2; no traceback reaches the user (set ``AUTOMC_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from automc.errors import AutomcError, one_line

VERBS: dict[str, str] = {
    "list": "automc.cli.list_cmd",
    "train": "automc.cli.train_cmd",
    "inspect": "automc.cli.inspect_cmd",
    "compress": "automc.cli.compress_cmd",
    "cost": "automc.cli.cost_cmd",
    "profile": "automc.cli.profile_cmd",
    "sensitivity": "automc.cli.sensitivity_cmd",
    "search": "automc.cli.search_cmd",
    "report": "automc.cli.report_cmd",
    "export": "automc.cli.export_cmd",
}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {' '.join(message.split())}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="automc",
        description="Hardware-aware AutoML compression for PyTorch CNNs: search per-layer pruning ratios, "
        "bit-widths and low-rank ranks under FLOPs/latency/energy budgets.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb, module_name in VERBS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            raise
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; the exit code: 0 ok, 2 bad input, 1 internal error, 130 interrupted,
    141 the reader of stdout went away (``automc list models | head -1`` ends quietly)."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


def _main(argv: Sequence[str] | None) -> int:
    if not os.environ.get("AUTOMC_DEBUG"):
        # Library warnings (torch deprecations, pickle protocol notes) are noise to a CLI user.
        warnings.filterwarnings("ignore")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except AutomcError as e:
        if os.environ.get("AUTOMC_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(f"automc: error: {e}\n")
        return e.exit_code
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("automc: interrupted\n")
        return 130
    except MemoryError:
        sys.stderr.write("automc: error: out of memory\n")
        return 1
    except Exception as e:  # noqa: BLE001 - the last line of defence: never a traceback
        if os.environ.get("AUTOMC_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(f"automc: internal error: {one_line(e)} (set AUTOMC_DEBUG=1 for a traceback)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
