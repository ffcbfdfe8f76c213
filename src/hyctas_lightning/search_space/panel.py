"""The ranking panel: a fixed, seeded set of sub-networks of a space that every supernet of the space is judged
on (its validation estimates during training, the rank-correlation diagnosis after), so their estimates compare;
and its ablations, which say which of a member's choices a supernet estimates badly."""
from __future__ import annotations

import random
from typing import Callable, Dict, Tuple

from .architecture import Architecture, regene
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


Gene = Tuple[str, float]
# ablation kind -> (member, largest) -> the architecture it scores: the member with the largest's widths, ops or
# both (its topology and nodes kept), or the largest with the member's widths or ops (the largest's topology)
ABLATIONS: Dict[str, Callable[[Architecture, Architecture], Architecture]] = {
    "widths_full": lambda m, big: regene(m, lambda layer, _, g: (g[0], _top(big, layer)[1])),
    "ops_largest": lambda m, big: regene(m, lambda layer, _, g: (_top(big, layer)[0], g[1])),
    "genes_largest": lambda m, big: regene(m, lambda layer, _, g: _top(big, layer)),
    "largest_widths": lambda m, big: regene(big, lambda layer, _, g: (g[0], m.branches[0].widths[layer])),
    "largest_ops": lambda m, big: regene(big, lambda layer, _, g: (m.branches[0].ops[layer], g[1])),
}


def _top(largest: Architecture, layer: int) -> Gene:
    """The largest sub-network's (op, width) at ``layer`` (the same on all its branches)."""
    branch = largest.branches[0]
    return branch.ops[layer], branch.widths[layer]


def ablation_panel(panel: Dict[str, Architecture], largest: Architecture) -> Dict[str, Architecture]:
    """``NAME:KIND`` for every random member ``NAME`` of ``panel`` and every kind of ``ABLATIONS``: one choice of
    the member (its widths, its ops, or both) swapped with the largest sub-network's, or the largest given the
    member's widths or ops (layer by layer, from the member's first branch). Scored through one supernet next to the
    members themselves, they say which choices the shared weights serve badly, with no network trained alone.

    Args:
        panel: ``ranking_panel``'s members (``random*`` are ablated).
        largest: the space's largest sub-network.
    """
    return {f"{name}:{kind}": make(arch, largest) for name, arch in panel.items() if name.startswith("random")
            for kind, make in ABLATIONS.items()}
