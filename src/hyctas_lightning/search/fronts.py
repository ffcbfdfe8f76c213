"""Non-dominated sorting, crowding distance and hypervolume over candidates, through DEAP."""
from __future__ import annotations

from typing import List, Optional, Sequence

from deap import base, tools
from deap.benchmarks.tools import hypervolume as deap_hypervolume

from .config import SearchConfig
from .journal import Candidate
from .objectives import Objective


class _Fitness(base.Fitness):
    weights = ()


def fitness_class(objectives: Sequence[Objective]) -> type:
    """A DEAP fitness type whose weights are the objectives' directions."""
    return type("SearchFitness", (_Fitness,), {"weights": tuple(float(o.direction) for o in objectives)})


class Individual(list):
    """A gene vector with a DEAP fitness and the candidate it stands for."""

    fitness: base.Fitness
    candidate: Candidate


def as_individual(candidate: Candidate, objectives: Sequence[Objective], fitness: type) -> Individual:
    ind = Individual(candidate.genes)
    ind.fitness = fitness(objective_values(candidate, objectives))
    ind.candidate = candidate
    return ind


def objective_values(candidate: Candidate, objectives: Sequence[Objective]) -> tuple:
    return tuple(float(o.value(candidate.arch, candidate.measurements)) for o in objectives)


def pareto_front(candidates: Sequence[Candidate], objectives: Sequence[Objective]) -> List[Individual]:
    """The non-dominated feasible candidates, with DEAP crowding distances assigned."""
    fitness = fitness_class(objectives)
    pool = [as_individual(c, objectives, fitness) for c in candidates if c.feasible]
    if not pool:
        return []
    front = tools.sortNondominated(pool, len(pool), first_front_only=True)[0]
    tools.emo.assignCrowdingDist(front)
    return front


def top_k(front: Sequence[Individual], k: int) -> List[Individual]:
    """The k most isolated members of the front (largest crowding distance; the extremes come first)."""
    return sorted(front, key=lambda ind: (-ind.fitness.crowding_dist, -ind.fitness.wvalues[0]))[:k]


def hypervolume(front: Sequence[Individual], reference: Sequence[float], objectives: Sequence[Objective]) -> float:
    """Hypervolume dominated by ``front`` up to ``reference`` (given in the objectives' own units)."""
    if not front:
        return 0.0
    ref = [-o.direction * r for o, r in zip(objectives, reference)]  # DEAP minimises -wvalues
    inside = [ind for ind in front if all(-w < r for w, r in zip(ind.fitness.wvalues, ref))]
    return float(deap_hypervolume(inside, ref)) if inside else 0.0


def reference_point(config_reference: Optional[Sequence[float]], candidates: Sequence[Candidate],
                    objectives: Sequence[Objective], caps: dict) -> List[float]:
    """The configured reference, else per objective: its natural worst (mIoU 0), its cap, or twice the worst
    value seen in generation 0 (so every later generation is measured against the same point)."""
    if config_reference is not None:
        return list(config_reference)
    first = [c for c in candidates if c.generation == 0 and c.feasible] or [c for c in candidates if c.feasible]
    ref = []
    for i, o in enumerate(objectives):
        if o.worst is not None:
            ref.append(o.worst)
        elif caps.get(o.name) is not None:
            ref.append(caps[o.name])
        else:
            seen = [objective_values(c, objectives)[i] for c in first]
            worst = max(seen) if o.direction < 0 else min(seen)
            ref.append(worst * 2 if o.direction < 0 else worst / 2)
    return ref


def history_row(candidates: Sequence[Candidate], generation: int, objectives: Sequence[Objective],
                config: SearchConfig) -> dict:
    """The ``history.json`` entry of ``generation``: evaluations and feasible candidates up to it, the size of their
    front and its hypervolume against the run's reference point (the same point for every generation)."""
    done = [c for c in candidates if c.generation <= generation]
    front = pareto_front(done, objectives)
    ref = reference_point(config.reference, candidates, objectives, {"latency_ms": config.latency_cap_ms})
    return {"generation": generation, "evaluations": len(done), "feasible": sum(c.feasible for c in done),
            "front": len(front), "hypervolume": hypervolume(front, ref, objectives), "reference": ref}
