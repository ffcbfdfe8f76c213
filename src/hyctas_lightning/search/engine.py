"""The search engine: NSGA-II on DEAP (paper Algorithm 1) and the ablation baselines, over one journal.

Every strategy draws all its randomness from ``random.Random(seed)`` and evaluates through the journal, so a
rerun after a kill replays the same decisions, takes finished evaluations from the journal and continues
where the kill struck: with deterministic measurements the final front equals an uninterrupted run's. A measured
latency varies from one timing to the next, so candidates timed after the kill (and the choices that depend on them)
may differ from an uninterrupted run's.
"""
from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from deap import tools
from tqdm.auto import tqdm

from hyctas_lightning.search_space import Architecture, ArchitectureError, SearchSpace
from hyctas_lightning.search_space.space import GENES_PER_LAYER

from .config import SearchConfig
from .fronts import Individual, as_individual, fitness_class, history_row
from .journal import Candidate, Journal
from .objectives import Objective
from .registry import STRATEGIES, register_strategy

Evaluate = Callable[[Architecture], Mapping[str, object]]
GenerationHook = Callable[["SearchRun", dict], None]


class NothingFeasible(RuntimeError):
    """No candidate met the latency cap / minimum mIoU."""


@dataclass
class Measurement:
    """What an evaluator returns: objective inputs (e.g. miou, latency_ms) and seconds per part.

    Args:
        values: measured values by name; None for a value that could not be measured.
        timing: seconds spent per part of the evaluation.
    """

    values: Dict[str, Optional[float]]
    timing: Dict[str, float] = field(default_factory=dict)


def evaluate_batch(evaluate: Callable[[Architecture], Measurement], archs: Sequence[Architecture],
                   on_result: Callable[[int, Measurement], None]) -> None:
    """Measure ``archs``, calling ``on_result(index, measurement)`` as each completes: through the evaluator's own
    ``evaluate_batch`` when it has one (``SpreadEvaluator``: over several processes, in any order), else one after
    another, announced first (:func:`prefetch`).

    Args:
        evaluate: the evaluator.
        archs: the architectures to measure.
        on_result: called with each architecture's index in ``archs`` and its measurement.
    """
    if archs and hasattr(evaluate, "evaluate_batch"):
        evaluate.evaluate_batch(archs, on_result)
        return
    prefetch(evaluate, archs)
    for i, arch in enumerate(archs):
        on_result(i, evaluate(arch))


def prefetch(evaluate: Callable[[Architecture], Measurement], archs: Sequence[Architecture]) -> None:
    """Tell an evaluator that works ahead (one with a ``prefetch`` method, e.g. ``SupernetEvaluator`` counting
    profiles in a pool) which architectures it is about to measure, in order; others need not know.

    Args:
        evaluate: the evaluator.
        archs: the architectures it measures next.
    """
    ahead = getattr(evaluate, "prefetch", None)
    if archs and ahead is not None:
        ahead(archs)


class SearchRun:
    """Shared machinery of every strategy: evaluation through the journal, feasibility, variation, progress.

    Args:
        space: the search space the genes encode.
        config: the search settings.
        evaluate: measures one architecture.
        journal: where every evaluation is recorded (and a rerun finds it).
        show_progress: progress bars and one line per generation.
        on_generation: called with ``(run, row)`` as each generation completes (``row``: its ``history`` entry),
            e.g. to log it live to a dashboard.
    """

    def __init__(self, space: SearchSpace, config: SearchConfig, evaluate: Callable[[Architecture], Measurement],
                 journal: Journal, show_progress: bool = True, on_generation: Sequence[GenerationHook] = ()) -> None:
        self.space, self.config, self.journal = space, config, journal
        self.evaluator = evaluate
        self.objectives: List[Objective] = config.objective_list()
        self.fitness = fitness_class(self.objectives)
        self.settings = config.settings
        self.rng = random.Random(config.seed)
        self.cards = space.gene_cardinalities()
        self.new_evaluations = 0
        self.history: List[dict] = []
        self.show_progress = show_progress
        self.on_generation = list(on_generation)
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ evaluation
    def complete(self, values: Mapping[str, Optional[float]]) -> bool:
        return all(values.get(o.key or o.name) is not None for o in self.objectives if o.compute is None)

    def over_cap(self, values: Mapping[str, Optional[float]]) -> bool:
        cap = self.config.latency_cap_ms
        return cap is not None and (values.get("latency_ms") or float("inf")) > cap

    def feasible(self, values: Mapping[str, Optional[float]]) -> bool:
        if not self.complete(values) or self.over_cap(values):
            return False
        return self.config.min_miou is None or (values.get("miou") or 0.0) >= self.config.min_miou

    def known(self, arch: Architecture) -> Optional[Candidate]:
        """The journalled result of ``arch``, if any, with feasibility re-judged under the current limits."""
        known = self.journal.get(arch.hash)
        if known is not None and (self.complete(known.measurements) or self.over_cap(known.measurements)):
            known.feasible = self.feasible(known.measurements)
            return known
        return None

    def evaluate_many(self, archs: Sequence[Architecture], generation: int) -> List[Candidate]:
        """Candidates of ``archs`` in their order: journalled results where there are some, the others measured
        together (``evaluate_batch``: spread over processes when the evaluator can) and journalled as each
        completes."""
        done: Dict[int, Candidate] = {i: c for i, c in enumerate(map(self.known, archs)) if c is not None}
        todo = [i for i in range(len(archs)) if i not in done]

        def record(j: int, m: Measurement) -> None:
            arch = archs[todo[j]]
            genes = self.space.encode(arch) if arch.num_layers == self.space.layers else []
            candidate = Candidate(arch, dict(m.values), self.feasible(m.values), generation, genes, dict(m.timing))
            self.journal.append(candidate)
            self.new_evaluations += 1
            done[todo[j]] = candidate

        evaluate_batch(self.evaluator, [archs[i] for i in todo], record)
        return [done[i] for i in range(len(archs))]

    def evaluate(self, arch: Architecture, generation: int) -> Candidate:
        """Journalled result if there is one (feasibility re-judged under the current limits), else measure."""
        return self.evaluate_many([arch], generation)[0]

    def individual(self, candidate: Candidate) -> Individual:
        return as_individual(candidate, self.objectives, self.fitness)

    # ------------------------------------------------------------------ variation
    def sample(self) -> Architecture:
        return self.space.sample(self.rng, branches=self.config.branches)

    def crossover(self, a: Sequence[int], b: Sequence[int], prob: float) -> List[int]:
        """With probability ``prob``, one-point crossover on the branch genome, cut between whole layers of a
        branch; else ``a`` unchanged."""
        if self.rng.random() >= prob:
            return list(a)
        cut = 1 + GENES_PER_LAYER * self.rng.randrange(1, (len(a) - 1) // GENES_PER_LAYER)
        return list(a[:cut]) + list(b[cut:])

    def mutate(self, genes: List[int], rate: Optional[float] = None) -> List[int]:
        """Categorical bit-flip: each decision variable (the branch count and the genes of the branches in use)
        moves to another of its values with probability ``rate`` (None: 1/n_var)."""
        used = 1 + self.branch_genes(genes)
        rate = rate or 1.0 / used
        for i in range(used):
            if self.cards[i] > 1 and self.rng.random() < rate:
                genes[i] = (genes[i] + self.rng.randrange(1, self.cards[i])) % self.cards[i]
        return genes

    def branch_genes(self, genes: Sequence[int]) -> int:
        """How many genes after the branch count belong to branches in use (the rest are inert slots)."""
        return (int(genes[0]) + 1) * GENES_PER_LAYER * self.space.layers

    def decode(self, genes: Sequence[int]) -> Optional[Architecture]:
        """The architecture of a gene vector, or None when it breaks a constraint (rejected, redrawn)."""
        try:
            arch = self.space.decode(genes)
        except ArchitectureError:
            return None
        if self.config.branches is not None and arch.num_branches != self.config.branches:
            return None
        return arch

    # ------------------------------------------------------------------ bookkeeping
    def record_generation(self, generation: int) -> dict:
        row = history_row(self.journal.candidates(), generation, self.objectives, self.config)
        row["seconds"] = round(time.perf_counter() - self.started, 3)  # since this run (process) started
        self.history.append(row)
        for hook in self.on_generation:
            hook(self, row)
        return row

    def candidates_of(self, generation: int) -> List[Candidate]:
        """The candidates first evaluated in ``generation``."""
        return [c for c in self.journal.candidates() if c.generation == generation]

    def progress(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, disable=not self.show_progress, leave=False, dynamic_ncols=True)

    def shortfall(self, values: Mapping[str, Optional[float]]) -> float:
        """How far a candidate is from the limits: relative latency excess plus relative mIoU shortfall."""
        cap, floor = self.config.latency_cap_ms, self.config.min_miou
        latency, miou = values.get("latency_ms"), values.get("miou")
        over = max(0.0, latency / cap - 1) if cap is not None and latency is not None else 0.0
        under = max(0.0, (floor - (miou or 0.0)) / max(floor, 1e-9)) if floor is not None and miou is not None else 0.0
        return over + under + (1.0 if not self.complete(values) and not self.over_cap(values) else 0.0)

    def closest(self, count: int = 3) -> str:
        """The ``count`` infeasible candidates nearest the limits, and the best latency and mIoU seen."""
        seen = sorted(self.journal.candidates(), key=lambda c: self.shortfall(c.measurements))
        rows = [f"{c.hash} ({c.arch.num_branches} branch(es)): " + ", ".join(
            f"{k} {v:.4g}" for k, v in c.measurements.items() if k in ("latency_ms", "miou") and v is not None)
            for c in seen[:count]]
        latencies = [c.measurements["latency_ms"] for c in seen if c.measurements.get("latency_ms") is not None]
        mious = [c.measurements["miou"] for c in seen if c.measurements.get("miou") is not None]
        best = [f"lowest latency {min(latencies):.4g} ms" if latencies else "",
                f"best mIoU {max(mious):.4g}" if mious else ""]
        return f"closest: {'; '.join(rows)} ({', '.join(b for b in best if b)})" if rows else "nothing evaluated"

    def require_feasible(self, population: Sequence) -> None:
        if not population:
            raise NothingFeasible(
                f"no feasible architecture among {len(self.journal)} evaluated: every candidate broke the latency cap "
                f"({self.config.latency_cap_ms} ms) or the minimum mIoU ({self.config.min_miou}); {self.closest()}. "
                f"The evaluations are kept in {self.journal.path}: relax the limits and rerun the same command to "
                f"continue.")


@contextmanager
def _seeded_global_random(rng: random.Random) -> Iterator[None]:
    """DEAP's selection draws from the global ``random``; seed it from the run's generator (and restore it
    after), so a replayed run makes the same choices."""
    state = random.getstate()
    random.seed(rng.getrandbits(64))
    try:
        yield
    finally:
        random.setstate(state)


def _draw_feasible(run: SearchRun, count: int, generation: int, make: Callable[[], Optional[Architecture]],
                   seen: set, give_up: bool = False) -> List[Candidate]:
    """Evaluate new architectures from ``make`` until ``count`` feasible ones (or the attempt budget runs out).
    With ``give_up`` (a starting population), ``count`` evaluations that find nothing feasible end the draw at
    once: the limits are out of reach, and redrawing for 50 x as long would only say so later.

    Architectures are drawn as many at a time as feasible ones are still missing and evaluated together (over
    several processes, if the evaluator spreads): until the last of them, none can complete the count, so the
    draws, and hence the run, are exactly those of drawing and evaluating one at a time."""
    found: List[Candidate] = []
    attempts = evaluated = 0
    with run.progress(count, f"generation {generation}") as bar:
        while len(found) < count and attempts < 50 * count and not (give_up and evaluated >= count and not found):
            batch: List[Architecture] = []
            while len(found) + len(batch) < count and attempts < 50 * count:
                attempts += 1
                arch = make()
                if arch is not None and arch.hash not in seen:
                    seen.add(arch.hash)
                    batch.append(arch)
            for candidate in run.evaluate_many(batch, generation):
                evaluated += 1
                if candidate.feasible:
                    found.append(candidate)
                    bar.update(1)
            bar.set_postfix(_postfix(run, attempts, len(found)), refresh=False)
    return found


@dataclass
class NSGA2Settings:
    """The variation of ``nsga2`` (``strategy_args``).

    Args:
        crossover_prob: probability of one-point crossover between two parents.
        mutation_rate: per-gene mutation probability (None: 1 / number of genes in use).
    """

    crossover_prob: float = 0.9
    mutation_rate: Optional[float] = None

    def __post_init__(self) -> None:
        if not 0 <= self.crossover_prob <= 1:
            raise ValueError(f"crossover_prob: in [0, 1], got {self.crossover_prob}")


@dataclass
class LocalSettings:
    """The neighbourhood search of ``local`` (``strategy_args``).

    Args:
        seeds: random starting points.
        iterations: rounds (each recorded as a generation).
        neighbours: single-edit neighbours per incumbent and round.
    """

    seeds: int = 5
    iterations: int = 32
    neighbours: int = 5


@register_strategy("nsga2", settings=NSGA2Settings)
def nsga2(run: SearchRun) -> None:
    """Algorithm 1: seeded random P0, then per generation tournament selection, crossover, mutation,
    duplicates rejected by hash, infeasible offspring dropped, NSGA-II survival (sorting + crowding)."""
    n, seen, variation = run.config.population, set(), run.settings
    population = [run.individual(c) for c in _draw_feasible(run, n, 0, run.sample, seen, give_up=True)]
    run.require_feasible(population)
    population = tools.selNSGA2(population, len(population))
    _log(run, run.record_generation(0))
    for generation in range(1, run.config.generations + 1):
        with _seeded_global_random(run.rng):
            pool = (tools.selTournamentDCD(population, 4 * (len(population) // 4)) if len(population) >= 4
                    else population)

        def child(pool: List[Individual] = pool) -> Optional[Architecture]:
            a, b = run.rng.sample(pool, 2) if len(pool) > 1 else (pool[0], pool[0])
            return run.decode(run.mutate(run.crossover(a, b, variation.crossover_prob), variation.mutation_rate))

        offspring = [run.individual(c) for c in _draw_feasible(run, n, generation, child, seen)]
        population = tools.selNSGA2(population + offspring, n)
        _log(run, run.record_generation(generation))


@register_strategy("random")
def random_search(run: SearchRun) -> None:
    """Baseline: as many random architectures as NSGA-II would evaluate, drawn with the same prior."""
    seen: set = set()
    for generation in range(run.config.generations + 1):
        found = _draw_feasible(run, run.config.population, generation, run.sample, seen, give_up=generation == 0)
        if generation == 0:
            run.require_feasible(found)
        _log(run, run.record_generation(generation))


@register_strategy("local", settings=LocalSettings)
def local_search(run: SearchRun) -> None:
    """Baseline (paper section 4.5): from ``seeds`` random seeds, ``iterations`` rounds of ``neighbours``
    single-edit neighbours; a neighbour replaces the incumbent only if it dominates it."""
    c, seen = run.settings, set()
    incumbents = _draw_feasible(run, c.seeds, 0, run.sample, seen, give_up=True)
    run.require_feasible(incumbents)
    for iteration in range(1, c.iterations + 1):
        for i, incumbent in enumerate(incumbents):
            genes = incumbent.genes
            neighbours = _draw_feasible(run, c.neighbours, iteration,
                                        lambda genes=genes: run.decode(_single_edit(run, genes)), seen)
            better = [n for n in neighbours if run.individual(n).fitness.dominates(run.individual(incumbent).fitness)]
            if better:
                incumbents[i] = better[0]
        _log(run, run.record_generation(iteration))


def _single_edit(run: SearchRun, genes: Sequence[int]) -> List[int]:
    """Change one gene of a used branch slot: an operator swap, a width, a node (edge) toggle or a down move."""
    edited = list(genes)
    i = 1 + run.rng.randrange(run.branch_genes(genes))
    edited[i] = (edited[i] + run.rng.randrange(1, run.cards[i])) % run.cards[i]
    return edited


def _postfix(run: SearchRun, tried: int, feasible: int) -> dict:
    """Progress-bar fields: this generation's tries and feasible finds, the front and hypervolume so far."""
    last = run.history[-1] if run.history else {"front": 0, "hypervolume": 0.0}
    return {"tried": tried, "feasible": feasible, "front": last["front"], "hv": f"{last['hypervolume']:.4g}"}


def _log(run: SearchRun, row: dict) -> None:
    if run.show_progress:
        tqdm.write(f"generation {row['generation']:>3}: {row['evaluations']} evaluated, {row['feasible']} feasible, "
                   f"front {row['front']}, hypervolume {row['hypervolume']:.4g}")


def run_strategy(space: SearchSpace, config: SearchConfig, evaluate: Callable[[Architecture], Measurement],
                 journal: Journal, show_progress: bool = True,
                 on_generation: Sequence[GenerationHook] = ()) -> SearchRun:
    run = SearchRun(space, config, evaluate, journal, show_progress, on_generation)
    STRATEGIES.get(config.strategy)(run)
    return run
