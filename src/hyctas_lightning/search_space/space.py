"""The search space: which architectures exist, how to sample them and how to encode them as genes."""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

from hyctas_lightning.registry import import_plugins

from .architecture import (
    BUILD_SETTINGS,
    MAX_BRANCHES,
    NODES,
    OUTPUT_COMBINATIONS,
    SCALES,
    Architecture,
    ArchitectureError,
    Branch,
)

DEFAULT_OPS = ("light_conv", "light_conv_2x", "conv", "conv_2x", "mesa")
DEFAULT_WIDTHS = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)
HEAD_SHARING = ("combination", "branch")
GENES_PER_LAYER = 4  # down, op, width, node
# what every member of a space shares; the supernet runs each at output stride 8, so that one is not the space's
SHARED_SETTINGS = tuple(k for k in BUILD_SETTINGS if k != "output_stride")


@dataclass(frozen=True)
class SearchSpace:
    """Layers x scales grid, operator set, width choices and the branch-count prior (paper eq. 2).

    ``largest()``/``smallest()`` are the two ends of sandwich sampling: the largest uses ``largest_op`` at full
    width with three branches and ``largest_node`` at every layer; the smallest one branch of ``smallest_op`` at
    the least width.

    Args:
        layers: cells per branch (the paper searches 16; retrained presets may be deeper).
        fch: filter multiplier: a cell at stride ``s`` has ``round(s * fch * width)`` channels (paper: 12).
        ops: registered operator names a cell may choose (``OPS``; add your own with ``register_op``).
        width_choices: width multipliers a cell may choose, each in (0, 1].
        branch_prior: probabilities of 1, 2 and 3 branches when sampling (paper: 0.2, 0.3, 0.5).
        nodes: node kinds a layer may choose, from ``pass``, ``fuse`` and ``drop`` (``pass`` required).
        largest_op: the op of the largest sub-network (the sandwich's upper end).
        largest_node: the node of the largest sub-network at every layer, ``fuse`` or ``pass``.
        smallest_op: the op of the smallest sub-network.
        memory_limit_gb: constraint (4) of the paper: architectures whose estimated training memory exceeds it
            are invalid; None: no limit.
        memory_batch_size: batch size of that memory estimate.
        memory_crop: crop (H, W) of that memory estimate.
        plugins: modules to import first, so ops registered in a user's own file can be listed in YAML.
        stem_head_width: scales the supernet's stem and head channels (``round(s * fch * w)`` at stride ``s``):
            1 is the plain channel rule; the paper's supernet starts with 64 channels at stride 8, i.e. Fch 12 with
            width 8/12 (release).
        head: aggregation head (``HEADS``); every architecture of the space carries it, so a searched network
            retrains with the head it was searched with.
        classifier: classifier (``CLASSIFIERS``), carried the same way.
        head_sharing: what the supernet's heads share. ``branch`` (default) builds each final branch's refinement
            once per final stride and shares it between the output combinations that end a branch there, so a
            one-branch sub-network's head trains with every sub-network that has a branch ending at its stride;
            ``combination`` (the paper) builds every combination's head apart, and the sandwich then trains the
            one-branch heads at strides 8 and 16 sixteen times less often than the three-branch one
            (docs/SUPERNET_RANKING.md: on the synthetic streets, ``branch`` raised the random sub-networks' mean
            supernet mIoU from 29.5 to 34.3 and Kendall tau from 0.36 to 0.48 at equal compute).
    """

    layers: int = 16
    fch: int = 12
    ops: tuple[str, ...] = DEFAULT_OPS
    width_choices: tuple[float, ...] = DEFAULT_WIDTHS
    branch_prior: tuple[float, ...] = (0.2, 0.3, 0.5)
    nodes: tuple[str, ...] = NODES
    largest_op: str = "conv_2x"
    largest_node: str = "fuse"
    smallest_op: str = "light_conv"
    memory_limit_gb: Optional[float] = None
    memory_batch_size: int = 16
    memory_crop: tuple[int, int] = (256, 512)
    plugins: tuple[str, ...] = ()
    stem_head_width: float = 1.0
    head: str = "progressive"
    classifier: str = "linear"
    head_sharing: str = "branch"

    def __post_init__(self) -> None:
        from hyctas_lightning.ops import OPS

        import_plugins(self.plugins)  # user modules that register their own ops
        for name in ("ops", "width_choices", "branch_prior", "nodes", "memory_crop", "plugins"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "width_choices", tuple(round(float(w), 4) for w in self.width_choices))
        if self.layers < 3:
            raise ValueError(f"layers: need at least 3 layers to reach stride 32, got {self.layers}")
        for op in self.ops:
            OPS.get(op)  # raises with the list of registered ops
        for name in ("largest_op", "smallest_op"):
            if getattr(self, name) not in self.ops:
                raise ValueError(f"{name}: '{getattr(self, name)}' is not in ops {list(self.ops)}")
        if self.largest_node not in ("pass", "fuse"):
            raise ValueError(f"largest_node: 'fuse' or 'pass', got '{self.largest_node}'")
        prior = self.branch_prior
        if len(prior) != MAX_BRANCHES or abs(sum(prior) - 1) > 1e-6 or min(prior) < 0:
            raise ValueError(f"branch_prior: need {MAX_BRANCHES} probabilities summing to 1, got {self.branch_prior}")
        if not set(self.nodes) <= set(NODES) or "pass" not in self.nodes:
            raise ValueError(f"nodes: choose from {NODES} and include 'pass', got {self.nodes}")
        if not self.width_choices or not all(0 < w <= 1 for w in self.width_choices):
            raise ValueError(f"width_choices: every width must be in (0, 1], got {self.width_choices}")
        if self.head_sharing not in HEAD_SHARING:
            raise ValueError(f"head_sharing: one of {list(HEAD_SHARING)}, got {self.head_sharing!r}")
        if not self.stem_head_width > 0:
            raise ValueError(f"stem_head_width: must be positive (1: the plain channel rule), got "
                             f"{self.stem_head_width}")

    def _settings(self) -> dict:
        """The architecture build settings every member of this space shares."""
        return {k: getattr(self, k) for k in SHARED_SETTINGS}

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> SearchSpace:
        """The space a checkpoint or file recorded. One recorded before ``head_sharing`` existed had a head per
        output combination, and loading its weights into shared heads would merge them, so that stays its value.

        Args:
            data: the fields, as ``to_dict`` wrote them.
        """
        return cls(**{"head_sharing": "combination", **data})

    # ------------------------------------------------------------------ membership
    def validate(self, arch: Architecture) -> Architecture:
        """Check that ``arch`` is valid and lies inside this space (ops, widths, nodes, depth, fch)."""
        arch.validate(memory_limit_gb=self.memory_limit_gb, batch_size=self.memory_batch_size,
                      crop=self.memory_crop, known_ops=self.ops)
        if arch.num_layers > self.layers:
            raise ArchitectureError(f"branches: {arch.num_layers} layers, but the search space has {self.layers}")
        for key in SHARED_SETTINGS:
            if getattr(arch, key) != getattr(self, key):
                raise ArchitectureError(f"{key}: architecture has {getattr(arch, key)!r}, the search space "
                                        f"{getattr(self, key)!r}")
        for i, b in enumerate(arch.branches):
            for layer, (width, node) in enumerate(zip(b.widths, b.nodes)):
                if width not in self.width_choices:
                    raise ArchitectureError(f"branches[{i}].widths[{layer}]: {width} is not one of the width "
                                            f"choices {list(self.width_choices)}")
                if node not in self.nodes:
                    raise ArchitectureError(f"branches[{i}].nodes[{layer}]: '{node}' is not allowed in this space")
        return arch

    # ------------------------------------------------------------------ sampling
    def sample(self, rng: random.Random, branches: Optional[int] = None) -> Architecture:
        """Draw a valid architecture: branch count from the prior (or fixed), every other gene uniformly.

        Branches fork HRNet-style: the first drawn branch is the deepest; each further branch copies a prefix
        of an earlier one and then draws its own genes, down-sampling on layers no other path uses.
        """
        n = branches if branches is not None else rng.choices((1, 2, 3), weights=self.branch_prior)[0]
        if n not in (1, 2, 3):
            raise ValueError(f"branches: must be 1, 2 or 3, got {n}")
        for _ in range(1000):
            arch = _sample_once(self, rng, n)
            try:
                return self.validate(arch)
            except ArchitectureError:
                continue  # memory constraint or a rare clash; draw again
        raise ArchitectureError(f"could not sample a valid {n}-branch architecture in 1000 draws; the memory "
                                f"limit ({self.memory_limit_gb} GiB) is probably too tight")

    def largest(self) -> Architecture:
        """Three branches, full width, ``largest_op`` everywhere, ``largest_node`` at every layer (``fuse``
        falls back to ``pass`` where the space has no fusion)."""
        node = self.largest_node if self.largest_node in self.nodes else "pass"

        def branch(downs: Sequence[int]) -> Branch:
            return _branch([(self.largest_op, max(self.width_choices), layer in downs, node)
                            for layer in range(self.layers)])

        return self.validate(Architecture((branch(()), branch((0,)), branch((0, 1))), **self._settings()))

    def smallest(self, end_scale: int = 32) -> Architecture:
        """One branch that goes down to ``end_scale`` (8, 16 or 32) at once, least width, every other cell
        dropped where allowed (the last always runs). The default, stride 32, is the cheapest network."""
        if end_scale not in SCALES:
            raise ValueError(f"end_scale: one of {SCALES}, got {end_scale}")
        downs = range(SCALES.index(end_scale))
        node = "drop" if "drop" in self.nodes else "pass"
        genes = [(self.smallest_op, min(self.width_choices), layer in downs,
                  "pass" if layer in downs or layer == self.layers - 1 else node) for layer in range(self.layers)]
        return self.validate(Architecture((_branch(genes),), **self._settings()))

    # ------------------------------------------------------------------ genes
    def gene_cardinalities(self) -> list[int]:
        """Number of choices per gene: [branch count] + per branch slot, per layer [down, op, width, node]."""
        per_layer = [2, len(self.ops), len(self.width_choices), len(self.nodes)]
        return [MAX_BRANCHES] + per_layer * (self.layers * MAX_BRANCHES)

    def encode(self, arch: Architecture) -> list[int]:
        """Flat categorical gene vector of ``arch``; unused branch slots are zeros."""
        self.validate(arch)
        if arch.num_layers != self.layers:
            raise ArchitectureError(f"branches: genes need exactly {self.layers} layers, got {arch.num_layers}")
        genes = [arch.num_branches - 1]
        for slot in range(MAX_BRANCHES):
            if slot < arch.num_branches:
                b = arch.branches[slot]
                for op, width, down, node in zip(b.ops, b.widths, b.downs, b.nodes):
                    genes += [int(down), self.ops.index(op), self.width_choices.index(width), self.nodes.index(node)]
            else:
                genes += [0] * (GENES_PER_LAYER * self.layers)
        return genes

    def decode(self, genes: Sequence[int]) -> Architecture:
        """Architecture from a gene vector; an out-of-range gene or a broken constraint raises, never passes."""
        card = self.gene_cardinalities()
        if len(genes) != len(card):
            raise ArchitectureError(f"genes: expected {len(card)} genes for this search space, got {len(genes)}")
        for i, (g, c) in enumerate(zip(genes, card)):
            if not 0 <= int(g) < c:
                raise ArchitectureError(f"genes[{i}]: value {g} outside 0..{c - 1}")
        branches = []
        step = GENES_PER_LAYER * self.layers
        for slot in range(int(genes[0]) + 1):
            chunk = genes[1 + slot * step: 1 + (slot + 1) * step]
            layer_genes = [(self.ops[chunk[i + 1]], self.width_choices[chunk[i + 2]], bool(chunk[i]),
                            self.nodes[chunk[i + 3]]) for i in range(0, step, GENES_PER_LAYER)]
            branches.append(_branch(layer_genes))
        return self.validate(Architecture(tuple(branches), **self._settings()))


def _sample_once(space: SearchSpace, rng: random.Random, n: int) -> Architecture:
    """One draw of ``SearchSpace.sample`` with ``n`` branches, not yet validated."""
    combo = rng.choice([c for c in OUTPUT_COMBINATIONS if len(c) == n])
    ends = sorted((SCALES.index(s) for s in combo), reverse=True)  # deepest first
    used_downs: set[int] = set()
    built: list[list[tuple]] = []
    for end in ends:
        prefix: list[tuple] = []
        if built:
            parent = rng.choice(built)
            fork = rng.randrange(0, space.layers)
            for layer in range(fork):
                if sum(g[2] for g in prefix) + parent[layer][2] > end:
                    break
                prefix.append(parent[layer])
        genes = list(prefix)
        need = end - sum(g[2] for g in genes)
        free = [layer for layer in range(len(genes), space.layers - 1) if layer not in used_downs]
        downs = set(rng.sample(free, need)) if need <= len(free) else set(free)
        for layer in range(len(genes), space.layers):
            down = layer in downs
            nodes = [n_ for n_ in space.nodes if not (down and n_ == "drop")]
            genes.append((rng.choice(space.ops), rng.choice(space.width_choices), down, rng.choice(nodes)))
        used_downs |= {layer for layer, g in enumerate(genes) if g[2]}
        built.append(genes)
    return Architecture(tuple(_branch(g) for g in built), **space._settings())


def _branch(genes: Sequence[tuple]) -> Branch:
    ops, widths, downs, nodes = zip(*genes)
    return Branch(ops=ops, widths=widths, downs=downs, nodes=nodes)
