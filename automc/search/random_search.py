"""``random``: uniform random sampling of the space; a baseline that never learns."""

from __future__ import annotations

import random
from typing import Any

from automc.errors import AutomcError
from automc.plan import Measurement
from automc.search.base import Candidate, Controller


class RandomController(Controller):
    """Samples each param uniformly and independently with a seeded ``random.Random``.

    Its state is the seed and the number of candidates asked so far: restoring replays
    the generator to that point, so a resumed run continues the same sequence.
    """

    name = "random"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._rng = random.Random(self.seed)
        self._asked = 0
        self._pending: dict[str, Candidate] = {}

    def ask(self) -> Candidate | None:
        values = self.space.sample(self._rng)
        self._asked += 1
        candidate = Candidate(id=f"random-{self._asked - 1}", values=values, plan=self.space.to_plan(values))
        self._pending[candidate.id] = candidate
        return candidate

    def tell(self, candidate_id: str, result: Measurement | None, *, reason: str = "") -> None:
        if candidate_id not in self._pending:
            raise AutomcError(f"controller {self.name!r}: unknown or already told candidate {candidate_id!r}")
        candidate = self._pending.pop(candidate_id)
        self.recorder.add(candidate, result, reason)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "asked": self._asked}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self._rng = random.Random(self.seed)
        for _ in range(int(state["asked"])):
            self.space.sample(self._rng)
        self._asked = int(state["asked"])
        self._pending.clear()
