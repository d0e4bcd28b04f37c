"""automc: hardware-aware AutoML compression engine for PyTorch CNNs.

The light records are importable without torch::

    from automc import CompressionPlan, LayerChoice, LayerSpec
"""

from __future__ import annotations

from typing import Any

from automc.config import SearchConfig
from automc.errors import AutomcError
from automc.plan import CompressionPlan, LayerChoice, LayerSpec, Measurement

__all__ = [
    "AutomcError",
    "CompressionPlan",
    "LayerChoice",
    "LayerSpec",
    "Measurement",
    "SearchConfig",
    "search",
]
__version__ = "0.1.0"


def search(config: Any = None, **overrides: Any) -> Any:
    """Run a compression search of ``config`` (a ``SearchConfig``) with keyword overrides;
    see :func:`automc.pipeline.search`."""
    from automc.pipeline import search as _search

    return _search(config, **overrides)
