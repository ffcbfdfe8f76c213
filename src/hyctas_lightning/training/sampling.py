"""Which sub-networks a supernet training step trains (paper section 3.4, eq. 1-2), selectable by name.

Every sampler draws step ``t``'s sub-networks from ``(seed, t)`` alone, so a run resumed from a checkpoint
samples exactly the architectures an uninterrupted run would have. ``sample(step)`` returns ``(name, arch)``
pairs; the name says the role (``largest``, ``smallest``, ``random{i}``), which distillation and logging read.
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any, Callable, Dict, List, Sequence, Tuple

from hyctas_lightning.registry import Registry
from hyctas_lightning.search_space import SCALES, Architecture, ArchitectureError, SearchSpace, regene

Draw = List[Tuple[str, Architecture]]
SAMPLERS: Registry[type] = Registry("supernet sampler")


class SubnetSampler:
    """Base of the samplers: seeded per step, resumable, with the total length of training known.

    Args:
        space: the supernet's search space.
        seed: seed of the per-step draws.
        total_steps: optimiser steps of the whole run (set when training starts; schedules use it).
    """

    leads_with_largest = False  # every step's first sub-network is the largest (in-place distillation's teacher)

    def __init__(self, space: SearchSpace, seed: int = 0, total_steps: int = 0) -> None:
        self.space = space
        self.seed = seed
        self.total_steps = total_steps

    def rng(self, step: int) -> random.Random:
        return random.Random(f"{self.seed}:{step}")

    def sample(self, step: int) -> Draw:
        raise NotImplementedError

    def options(self) -> dict:
        """The constructor arguments besides ``space`` (what a checkpoint stores)."""
        return {"seed": self.seed, "total_steps": self.total_steps}

    def state_dict(self) -> dict:
        return {"name": type(self).registered_name, **self.options()}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if key != "name":
                setattr(self, key, tuple(value) if isinstance(value, list) else value)


def register_sampler(name: str) -> Callable[[type], type]:
    """Register a sampler class under ``name`` (``SupernetModule(sampling=name)``)."""

    def decorator(cls: type) -> type:
        cls.registered_name = name
        return SAMPLERS.register(name)(cls)

    return decorator


def build_sampler(name: str, space: SearchSpace, seed: int = 0, **options) -> SubnetSampler:
    """The sampler registered as ``name``; ``options`` go to its constructor (a clear error for wrong ones)."""
    cls = SAMPLERS.get(name)
    try:
        return cls(space, seed=seed, **options)
    except TypeError as e:
        raise ValueError(f"sampler_args for sampling '{name}': {e}") from None


def smallest_ending_at(space: SearchSpace, step: int, rotate: bool) -> Architecture:
    """The smallest sub-network; with ``rotate`` its final stride cycles 8, 16, 32 over the steps, so the
    one-branch heads of every output stride are trained as often as that of stride 32."""
    return space.smallest(SCALES[step % len(SCALES)] if rotate else SCALES[-1])


@register_sampler("sandwich")
class SandwichSampler(SubnetSampler):
    """The sandwich rule (Yu et al., 'BigNAS: Scaling Up Neural Architecture Search with Big Single-Stage
    Models', ECCV 2020; 'Universally Slimmable Networks', ICCV 2019): per step the largest sub-network, the
    smallest and ``num_random`` random ones drawn under the branch prior.

    Effective branch-count frequencies over all trained sub-networks (largest: 3 branches, smallest: 1):
    ``((1 + n rho_1) / (n + 2), n rho_2 / (n + 2), (1 + n rho_3) / (n + 2))``; with the paper's prior and
    ``n = 2``: 0.35 / 0.15 / 0.50.

    Args:
        space: the supernet's search space.
        num_random: random sub-networks per step.
        seed: seed of the per-step draws.
        rotate_smallest: cycle the smallest one's final stride 8, 16, 32 over the steps (else always 32).
        total_steps: length of the run (unused).
    """

    def __init__(self, space: SearchSpace, num_random: int = 2, seed: int = 0, rotate_smallest: bool = False,
                 total_steps: int = 0) -> None:
        super().__init__(space, seed, total_steps)
        self.num_random = num_random
        self.rotate_smallest = rotate_smallest

    leads_with_largest = True

    def options(self) -> dict:
        return {**super().options(), "num_random": self.num_random, "rotate_smallest": self.rotate_smallest}

    def sample(self, step: int) -> Draw:
        rng = self.rng(step)
        drawn = [(f"random{i}", self.space.sample(rng)) for i in range(self.num_random)]
        return [("largest", self.space.largest()),
                ("smallest", smallest_ending_at(self.space, step, self.rotate_smallest))] + drawn


@register_sampler("single")
class SinglePathSampler(SubnetSampler):
    """The paper's rule (section 3.4): one sub-network per step, its branch count drawn with the prior rho and
    every other gene uniformly (single-path one-shot training, Guo et al., 'Single Path One-Shot Neural
    Architecture Search with Uniform Sampling', ECCV 2020). Branch-count frequencies are rho itself.

    Args:
        space: the supernet's search space.
        seed: seed of the per-step draws.
        total_steps: length of the run (unused).
    """

    def sample(self, step: int) -> Draw:
        return [("random0", self.space.sample(self.rng(step)))]


@register_sampler("fair")
class FairSampler(SubnetSampler):
    """Strict fairness (Chu et al., 'FairNAS: Rethinking Evaluation Fairness of Weight Sharing Neural
    Architecture Search', ICCV 2021): per step ``len(ops)`` sub-networks share one topology drawn under the
    prior (branches, downs, widths, nodes) and differ only in their ops: at every cell the sub-networks take a
    random permutation of all ops, so each op of each visited cell is trained exactly once per step.
    Branch-count frequencies are rho. With ``with_largest`` the largest sub-network runs first each step, the
    teacher of in-place distillation (``distill: inplace``, BigNAS) for the fair sub-networks.

    Args:
        space: the supernet's search space.
        seed: seed of the per-step draws.
        with_largest: also train the largest sub-network, first, every step.
        total_steps: length of the run (unused).
    """

    def __init__(self, space: SearchSpace, seed: int = 0, with_largest: bool = False, total_steps: int = 0) -> None:
        super().__init__(space, seed, total_steps)
        self.with_largest = with_largest

    @property
    def leads_with_largest(self) -> bool:
        return self.with_largest

    def options(self) -> dict:
        return {**super().options(), "with_largest": self.with_largest}

    def sample(self, step: int) -> Draw:
        rng = self.rng(step)
        base = self.space.sample(rng)
        m = len(self.space.ops)
        perms = {(layer, group[0]): rng.sample(self.space.ops, m)
                 for layer in range(base.num_layers) for group in base.groups(layer)}
        drawn = []
        for j in range(m):
            arch = regene(base, lambda layer, lead, gene, j=j: (perms[layer, lead][j], gene[1]))
            drawn.append((f"random{j}", self.space.validate(arch)))
        return [("largest", self.space.largest())] * self.with_largest + drawn


@register_sampler("progressive")
class ProgressiveSampler(SubnetSampler):
    """Progressive shrinking (Cai et al., 'Once-for-All: Train One Network and Specialize it for Efficient
    Deployment', ICLR 2020): train the largest sub-network alone first, then let more of the space in by
    phases, each step training the largest plus ``num_random`` sub-networks of the current phase:

    1. ``largest``: the largest alone (until ``phases[0]`` of the run);
    2. ``widths``: three branches of ``largest_op``, random widths, downs and pass/fuse nodes;
    3. ``ops``: three branches, every op, random widths and pass/fuse nodes;
    4. ``full``: the whole space under the branch prior (from ``phases[2]`` of the run on).

    In the last phase the branch-count frequencies equal the sandwich's with no smallest:
    ``(n rho_1, n rho_2, 1 + n rho_3) / (n + 1)``.

    Args:
        space: the supernet's search space.
        num_random: sub-networks of the current phase per step (besides the largest).
        phases: fractions of the run where phases 2, 3 and 4 begin.
        seed: seed of the per-step draws.
        total_steps: length of the run; set by ``SupernetModule`` when training starts.
    """

    PHASES = ("largest", "widths", "ops", "full")
    leads_with_largest = True

    def __init__(self, space: SearchSpace, num_random: int = 2, phases: Sequence[float] = (0.1, 0.25, 0.45),
                 seed: int = 0, total_steps: int = 0) -> None:
        super().__init__(space, seed, total_steps)
        phases = tuple(float(p) for p in phases)
        if len(phases) != 3 or list(phases) != sorted(phases) or not 0 <= phases[0] <= phases[-1] <= 1:
            raise ValueError(f"phases: three increasing fractions of the run in [0, 1], got {list(phases)}")
        self.num_random = num_random
        self.phases = phases
        largest = space.largest_op
        nodes = tuple(n for n in space.nodes if n != "drop")
        three = (0.0, 0.0, 1.0)
        self.spaces = {"widths": dataclasses.replace(space, ops=(largest,), smallest_op=largest, nodes=nodes,
                                                     branch_prior=three),
                       "ops": dataclasses.replace(space, nodes=nodes, branch_prior=three),
                       "full": space}

    def options(self) -> dict:
        return {**super().options(), "num_random": self.num_random, "phases": list(self.phases)}

    def phase(self, step: int) -> str:
        if self.total_steps <= 0:
            raise ValueError("progressive sampling needs the run's length: set total_steps (SupernetModule does "
                             "so when training starts; give trainer.max_steps or max_epochs)")
        fraction = step / self.total_steps
        return self.PHASES[sum(fraction >= p for p in self.phases)]

    def sample(self, step: int) -> Draw:
        phase = self.phase(step)
        drawn = [("largest", self.space.largest())]
        if phase != "largest":
            rng = self.rng(step)
            drawn += [(f"random{i}", self.space.validate(self.spaces[phase].sample(rng)))
                      for i in range(self.num_random)]
        return drawn


class SpaceSplit:
    """A partition of a search space by one choice, the split of few-shot NAS (Zhao et al., 'Few-shot Neural
    Architecture Search', ICML 2021): ``parts`` names the sub-spaces, ``part_of`` says which one an architecture
    lies in, and ``sample`` draws from one part under the space's prior conditioned on that part."""

    def parts(self, space: SearchSpace) -> Tuple[Any, ...]:
        raise NotImplementedError

    def part_of(self, arch: Architecture) -> Any:
        raise NotImplementedError

    def sample(self, space: SearchSpace, rng: random.Random, part: Any) -> Architecture:
        raise NotImplementedError


SPLITS: Registry[SpaceSplit] = Registry("supernet split")


def register_split(name: str) -> Callable[[type], type]:
    """Register a ``SpaceSplit`` class under ``name`` (``sampler_args: {key: name}`` of the ``split`` sampler)."""

    def decorator(cls: type) -> type:
        SPLITS.register(name)(cls())
        return cls

    return decorator


@register_split("branches")
class BranchSplit(SpaceSplit):
    """Parts by branch count (1, 2, 3; those the prior draws): the HyCTAS paper searches each branch count on its
    own (section 4.5), so each count gets a sub-supernet whose heads and fusions serve that count alone."""

    def parts(self, space: SearchSpace) -> Tuple[int, ...]:
        return tuple(n for n, p in zip((1, 2, 3), space.branch_prior) if p > 0)

    def part_of(self, arch: Architecture) -> int:
        return arch.num_branches

    def sample(self, space: SearchSpace, rng: random.Random, part: Any) -> Architecture:
        return space.sample(rng, branches=int(part))


def op_family(op: str) -> str:
    """An op's family: its name without the ``_2x`` of the wider-expansion version (``conv_2x`` -> ``conv``)."""
    return op[:-3] if op.endswith("_2x") else op


def with_op(arch: Architecture, layer: int, op: str) -> Architecture:
    """``arch`` with ``op`` in its first branch's cell at ``layer`` (and in the branches that share that cell)."""
    # regene's lead branch of a group is its first one, so the group holding branch 0 is led by 0
    return regene(arch, lambda at, lead, gene: (op if (at, lead) == (layer, 0) else gene[0], gene[1]))


def first_active_layer(arch: Architecture) -> int:
    """The first layer whose cell runs in the architecture's first branch (every branch starts at layer 0; 0 if
    every cell of it is dropped)."""
    return next((layer for layer in range(arch.num_layers) if arch.branches[0].active(layer)), 0)


@register_split("op_family")
class OpFamilySplit(SpaceSplit):
    """Parts by the op family (``op_family``) of the network's first running cell (first branch), the one
    compound edge few-shot NAS splits: light convolutions, convolutions and attention start the network
    differently, and every later cell sees that start."""

    def parts(self, space: SearchSpace) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(op_family(op) for op in space.ops))

    def part_of(self, arch: Architecture) -> str:
        return op_family(arch.branches[0].ops[first_active_layer(arch)])

    def sample(self, space: SearchSpace, rng: random.Random, part: Any) -> Architecture:
        ops = [op for op in space.ops if op_family(op) == part]
        for _ in range(1000):
            arch = space.sample(rng)
            try:
                return space.validate(with_op(arch, first_active_layer(arch), rng.choice(ops)))
            except ArchitectureError:
                continue  # the memory limit: draw again
        raise ArchitectureError(f"could not draw a valid architecture of op family '{part}' in 1000 draws")


@register_sampler("split")
class SplitSampler(SubnetSampler):
    """One part of a few-shot supernet (Zhao et al., 'Few-shot Neural Architecture Search', ICML 2021): the
    space is split by one choice (``key``, a registered ``SPLITS`` entry: ``branches`` or ``op_family``), and
    each part is a sub-supernet warm-started from the one-shot supernet's weights (``training.WarmStart``) and
    trained only on members of its part: per step ``num_random`` architectures drawn under the prior conditioned
    on ``part``. Each part is its own ``hyctas fit`` run, so after the split the parts share no parameters, and
    ``Architecture``, ``SuperNet`` and the graph walk stay as they are; an architecture's estimate comes from its
    part's checkpoint (``SPLITS.get(key).part_of(arch)``; the ranking study does this per panel member).

    Args:
        space: the supernet's search space.
        key: the registered split (``branches``: parts 1, 2, 3; ``op_family``: parts ``light_conv``, ``conv``,
            ``mesa`` for the default ops).
        part: which part this run trains.
        num_random: architectures of the part per step.
        seed: seed of the per-step draws.
        total_steps: length of the run (unused).
    """

    def __init__(self, space: SearchSpace, key: str = "branches", part: Any = None, num_random: int = 1,
                 seed: int = 0, total_steps: int = 0) -> None:
        super().__init__(space, seed, total_steps)
        if key not in SPLITS:
            raise ValueError(f"sampler_args.key: '{key}' is not a registered split; choose one of {SPLITS.names()}")
        parts = SPLITS.get(key).parts(space)
        if part not in parts:
            raise ValueError(f"sampler_args.part: the split '{key}' of this space has parts {list(parts)}, got "
                             f"{part!r}")
        self.key, self.part, self.num_random = key, part, num_random

    def options(self) -> dict:
        return {**super().options(), "key": self.key, "part": self.part, "num_random": self.num_random}

    def sample(self, step: int) -> Draw:
        rng, split = self.rng(step), SPLITS.get(self.key)
        return [(f"random{i}", split.sample(self.space, rng, self.part)) for i in range(self.num_random)]


def branch_frequencies(sampler: SubnetSampler, steps: int, start: int = 0) -> Dict[int, float]:
    """Fraction of trained sub-networks with 1, 2 and 3 branches over ``steps`` steps (documentation, tests)."""
    counts = Counter(arch.num_branches for step in range(start, start + steps) for _, arch in sampler.sample(step))
    total = sum(counts.values())
    return {n: counts[n] / total for n in (1, 2, 3)}


def head_updates(sampler: SubnetSampler, steps: int, start: int = 0) -> Dict[Tuple[int, ...], float]:
    """Mean number of training passes per step through each output combination's head."""
    counts = Counter(arch.end_scales for step in range(start, start + steps) for _, arch in sampler.sample(step))
    return {combo: counts[combo] / steps for combo in sorted(counts, key=lambda c: (len(c), c))}


__all__ = ["SAMPLERS", "SPLITS", "BranchSplit", "FairSampler", "OpFamilySplit", "ProgressiveSampler", "SandwichSampler",
           "SinglePathSampler", "SpaceSplit", "SplitSampler", "SubnetSampler", "branch_frequencies", "build_sampler",
           "first_active_layer", "head_updates", "op_family", "register_sampler", "register_split"]
