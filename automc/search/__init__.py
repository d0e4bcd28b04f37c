"""Search controllers: one contract (:mod:`.base`), one recorder (:mod:`.storage`), one registry (:mod:`.registry`).

Importing this package needs neither torch nor optuna; controllers import them lazily.
"""

import sys
import types
from typing import Any

from automc.search.base import (
    OBJECTIVE_DIRECTIONS,
    Candidate,
    Controller,
    Evaluate,
    Objective,
    TrialFailed,
    failure_reason,
)
from automc.search.registry import create, describe, names
from automc.search.storage import Recorder, TrialRecord

__all__ = [
    "OBJECTIVE_DIRECTIONS",
    "Candidate",
    "Controller",
    "Evaluate",
    "Objective",
    "Recorder",
    "TrialFailed",
    "TrialRecord",
    "create",
    "describe",
    "names",
    "failure_reason",
]


class _CallableModule(types.ModuleType):
    """Keeps ``automc.search(...)`` working once this subpackage is imported.

    Importing ``automc.search.*`` rebinds the attribute ``automc.search`` from the pipeline
    function to this package; calling the package runs ``automc.pipeline.search``.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from automc.pipeline import search

        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
