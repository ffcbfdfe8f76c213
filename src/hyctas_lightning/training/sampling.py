"""Sandwich sampling under the branch-count prior (paper section 3.4, eq. 1-2)."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import List, Tuple

from hyctas_lightning.search_space import Architecture, SearchSpace


@dataclass
class SandwichSampler:
    """Per step: the largest sub-network, the smallest, and ``num_random`` random ones whose branch count is
    drawn from the space's prior and every other gene uniformly.

    The draw of step ``t`` depends only on ``(seed, t)``, so a run resumed from a checkpoint samples exactly
    the architectures an uninterrupted run would have sampled.
    """

    space: SearchSpace
    num_random: int = 2
    seed: int = 0

    def rng(self, step: int) -> random.Random:
        return random.Random(f"{self.seed}:{step}")

    def sample(self, step: int) -> List[Tuple[str, Architecture]]:
        rng = self.rng(step)
        drawn = [(f"random{i}", self.space.sample(rng)) for i in range(self.num_random)]
        return [("largest", self.space.largest()), ("smallest", self.space.smallest())] + drawn

    def state_dict(self) -> dict:
        return {"num_random": self.num_random, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.num_random, self.seed = state["num_random"], state["seed"]
