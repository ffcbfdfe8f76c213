"""The ranking panel: a fixed, seeded set of sub-networks of a space that every supernet of the space is judged
on (its validation estimates during training, the rank-correlation diagnosis after), so their estimates compare."""
from __future__ import annotations

import random
from typing import Dict

from .architecture import Architecture
from .space import SearchSpace


def ranking_panel(space: SearchSpace, random_members: int = 12, seed: int = 0) -> Dict[str, Architecture]:
    """``largest``, ``smallest`` and ``random0..`` (member ``i`` has ``1 + i % 3`` branches), distinct, drawn
    from ``seed`` alone: the same panel for every supernet of the space, so estimates can be compared.

    Args:
        space: the supernet's search space.
        random_members: random sub-networks in the panel.
        seed: seed of the draws.
    """
    rng = random.Random(seed)
    panel = {"largest": space.largest(), "smallest": space.smallest()}
    seen = {a.hash for a in panel.values()}
    for i in range(random_members):
        arch = space.sample(rng, branches=1 + i % 3)
        while arch.hash in seen:
            arch = space.sample(rng, branches=1 + i % 3)
        seen.add(arch.hash)
        panel[f"random{i}"] = arch
    return panel
