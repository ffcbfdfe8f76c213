"""One walk over an architecture's layers, shared by the supernet, the child network and the child's builder.

The walk is generic in the value it carries: tensors when running, channel counts when building.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple, TypeVar

from hyctas_lightning.search_space import SCALES, Architecture

V = TypeVar("V")
CellFn = Callable[[int, int, V, int], V]  # (layer, branch, value, scale index) -> value
FuseFn = Callable[[int, int, V, int, List[Tuple[V, int]]], V]  # (..., siblings as (value, scale))
# per branch, keyed by its final stride: {stride: the branch's last value at that stride}
BranchFeatures = Dict[int, Dict[int, V]]


def walk(arch: Architecture, stem: V, run_cell: CellFn, run_fuse: FuseFn) -> BranchFeatures:
    """Run every distinct computation once per layer; return, per branch (keyed by its final stride), its last
    value at every stride it passed through: the final one, and the skip features a progressive head refines
    with (at stride 8 the stem's output if the branch left stride 8 at once).

    Branches in one group (identical genes so far) share the value. At a ``fuse`` node a group is merged
    with the pre-fusion outputs of every other group at that layer (HRNet exchange).
    """
    state: List[Tuple[V, int]] = [(stem, 0)] * arch.num_branches
    last: List[Dict[int, V]] = [{SCALES[0]: stem} for _ in arch.branches]
    for layer in range(arch.num_layers):
        outs = []
        for group in arch.groups(layer):
            lead = arch.branches[group[0]]
            value, scale = state[group[0]]
            if lead.active(layer):
                value = run_cell(layer, group[0], value, scale)
                scale += int(lead.downs[layer])
            outs.append((group, value, scale))
        for group, value, scale in outs:
            if arch.branches[group[0]].nodes[layer] == "fuse":
                siblings = [(v, s) for g, v, s in outs if g != group]
                value = run_fuse(layer, group[0], value, scale, siblings)
            for i in group:
                state[i] = (value, scale)
                last[i][SCALES[scale]] = value
    return {b.end_scale: last[i] for i, b in enumerate(arch.branches)}
