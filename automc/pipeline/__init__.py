"""The search pipeline, in data-flow order.

* :mod:`~automc.pipeline.setup`: data, base model, layer table, bound space, cost model,
  budgets and proxy, built once (:func:`prepare` → :class:`SearchSetup`);
* :mod:`~automc.pipeline.evaluate`: one candidate priced, and if within budget compressed
  and scored (:class:`Evaluator`);
* :mod:`~automc.pipeline.run`: the controller loop into one Optuna storage, then the
  winners and the report (:func:`search` → :class:`SearchResult`);
* :mod:`~automc.pipeline.winners`: the front's winners fine-tuned with distillation,
  measured and exported (:class:`Winner`);
* :mod:`~automc.pipeline.summary`: the terminal summary (:func:`summary_table`).
"""

from automc.pipeline.evaluate import Evaluator
from automc.pipeline.run import SearchResult, default_study, search, storage_url, warn_if_proxy_blind
from automc.pipeline.setup import SearchSetup, UserParts, prepare, warn_if_near_chance
from automc.pipeline.summary import summary_table
from automc.pipeline.winners import Winner

__all__ = [
    "Evaluator",
    "SearchResult",
    "SearchSetup",
    "UserParts",
    "Winner",
    "default_study",
    "prepare",
    "search",
    "storage_url",
    "summary_table",
    "warn_if_near_chance",
    "warn_if_proxy_blind",
]
