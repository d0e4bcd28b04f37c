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
    "load_winner",
    "search",
]
__version__ = "0.1.0"


def search(config: Any = None, **overrides: Any) -> Any:
    """Run a compression search of ``config`` (a ``SearchConfig``) with keyword overrides;
    see :func:`automc.pipeline.search`."""
    from automc.pipeline import search as _search

    return _search(config, **overrides)


def load_winner(run_dir: Any, trial: int | None = None) -> Any:
    """The compressed ``nn.Module`` of a search's winner, in eval mode, ready for inference.

    Args:
        run_dir: the search's output folder (holding ``winners/trialN/model.pt``).
        trial: the winner's trial number; ``None``: the run's recommended winner
            (``recommended`` in its ``pareto.json``).

    Raises:
        AutomcError: no such run, winner or recommendation, or an unreadable model file.
    """
    from automc.pipeline.winners import load_winner as _load

    return _load(run_dir, trial)
