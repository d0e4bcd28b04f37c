"""The smallest real search: ``test_tiny`` on the ``synthetic`` data, shared by the pipeline tests.

``TINY_SEARCH`` holds flat settings (``automc.config.FLAT_NAMES``) for ``automc.search``: the
prune space under a loose MACs budget, random search, no device profile and no progress
bars. A test adds or changes what it needs::

    automc.search(trials=8, out=tmp_path, **{**TINY_SEARCH, "finetune_top": 2})

``TINY_SEARCH_ARGV`` is the command line of the same model, data and space without a device
profile, for tests of ``automc search`` itself (a test adds its budget, trials and output).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

TINY_SEARCH: Mapping[str, Any] = MappingProxyType(
    {
        "model": "test_tiny",
        "dataset": "synthetic",
        "space": "prune",
        "budgets": ["flops=0.8"],
        "objectives": ["acc", "macs"],
        "controller": "random",
        "profile": None,
        "progress": False,
    }
)

TINY_SEARCH_ARGV: tuple[str, ...] = (
    "search",
    "--model",
    "test_tiny",
    "--dataset",
    "synthetic",
    "--space",
    "prune",
    "--profile",
    "none",
)
