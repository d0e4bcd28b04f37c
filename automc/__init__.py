"""automc: hardware-aware AutoML compression engine for PyTorch CNNs.

The light records are importable without torch::

    from automc import CompressionPlan, LayerChoice, LayerSpec
"""

from __future__ import annotations

from typing import Any

from automc.errors import AutomcError
from automc.plan import CompressionPlan, LayerChoice, LayerSpec, Measurement

__all__ = ["AutomcError", "CompressionPlan", "LayerChoice", "LayerSpec", "Measurement", "search"]
__version__ = "0.1.0"


def search(*args: Any, **kwargs: Any) -> Any:
    """Run a compression search; see ``automc.engine.search``."""
    from automc.engine import search as _search

    return _search(*args, **kwargs)
