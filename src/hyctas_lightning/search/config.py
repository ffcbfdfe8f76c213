"""Settings of one search (the ``search:`` section of ``configs/search.yaml``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

from hyctas_lightning.evaluation.bench import Variant

from .objectives import OBJECTIVES
from .registry import STRATEGIES


@dataclass
class SearchConfig:
    """Defaults are the paper's (section 3.4, 4.2): NSGA-II, population 40, 20 generations, crossover 0.9,
    mutation 1/n_var per gene, BN recalibration on 1000 training images, latency at batch 1 after 50 warm-up
    passes over the median of 100.

    Args:
        strategy: a registered search strategy: ``nsga2``, or the ablation baselines ``random`` and ``local``
            (paper section 4.5), or your own (``register_strategy``).
        objectives: registered objectives, the first maximised or minimised against the rest
            (``miou``, ``latency_ms``, ``macs_g``, ``params_m``, or your own with ``register_objective``).
        population: candidates per generation.
        generations: generations after the initial population.
        branches: search 1-, 2- or 3-branch networks only; None searches all jointly.
        crossover_prob: probability of one-point crossover between two parents.
        mutation_rate: per-gene mutation probability (None: 1 / number of genes in use).
        seed: seed of every random decision; a rerun with the same seed replays the search.
        latency_cap_ms: latency limit S_max of Algorithm 1 (None: no limit).
        min_miou: minimum mIoU of Algorithm 1, in [0, 1] (None: no limit).
        calibration_images: training images that recalibrate BatchNorm for each candidate.
        val_images: validation images per candidate (None: the whole split).
        latency_backend: ``cuda`` (CUDA events) or ``cpu`` (wall clock, for machines without a GPU).
        latency_variant: how each candidate runs while timed, any ``hyctas bench`` variant
            ``DTYPE[-fold][-cl][-compile][-graph]`` (e.g. ``fp16-fold-cl-graph``), so the objective is the latency
            of the network as it will be deployed; ``fp32`` (eager float32) is the paper's.
        latency_size: input height and width of the latency measurement (the deployment resolution).
        latency_warmup: untimed passes before timing.
        latency_runs: timed passes; the median counts.
        top_k: front members written to ``topk/`` (largest crowding distance first).
        reference: hypervolume reference point, one value per objective (None: derived from the first
            generation and the caps).
        local_seeds: random starting points of the ``local`` strategy.
        local_iterations: rounds of the ``local`` strategy.
        local_neighbours: single-edit neighbours per incumbent and round of the ``local`` strategy.
    """

    strategy: str = "nsga2"
    objectives: List[str] = field(default_factory=lambda: ["miou", "latency_ms"])
    population: int = 40
    generations: int = 20
    branches: Optional[int] = None
    crossover_prob: float = 0.9
    mutation_rate: Optional[float] = None
    seed: int = 0
    latency_cap_ms: Optional[float] = None
    min_miou: Optional[float] = None
    calibration_images: int = 1000
    val_images: Optional[int] = None
    latency_backend: str = "cuda"
    latency_variant: str = "fp32"
    latency_size: Tuple[int, int] = (1024, 2048)
    latency_warmup: int = 50
    latency_runs: int = 100
    top_k: int = 5
    reference: Optional[List[float]] = None
    local_seeds: int = 5
    local_iterations: int = 32
    local_neighbours: int = 5

    def __post_init__(self) -> None:
        checks = [
            (self.strategy in STRATEGIES, f"strategy: unknown '{self.strategy}'; registered: {', '.join(STRATEGIES)}"),
            (len(self.objectives) >= 2, f"objectives: need at least two, got {self.objectives}"),
            (self.population >= 4, f"population: at least 4, got {self.population}"),
            (self.generations >= 0, f"generations: must be >= 0, got {self.generations}"),
            (self.branches in (None, 1, 2, 3), f"branches: 1, 2, 3 or null, got {self.branches}"),
            (0 <= self.crossover_prob <= 1, f"crossover_prob: in [0, 1], got {self.crossover_prob}"),
            (self.latency_backend in ("cuda", "cpu"),
             f"latency_backend: 'cuda' or 'cpu', got '{self.latency_backend}'"),
            (self.calibration_images > 0, f"calibration_images: must be > 0, got {self.calibration_images}"),
            (self.val_images is None or self.val_images > 0, f"val_images: must be > 0 or null, got {self.val_images}"),
            (self.latency_cap_ms is None or self.latency_cap_ms > 0,
             f"latency_cap_ms: must be > 0 ms or null (no cap), got {self.latency_cap_ms}"),
            (self.min_miou is None or 0 <= self.min_miou <= 1,
             f"min_miou: an mIoU in [0, 1] (0.7, not 70) or null, got {self.min_miou}"),
            (len(self.latency_size) == 2 and min(self.latency_size) > 0,
             f"latency_size: [height, width] > 0, got {self.latency_size}"),
            (self.latency_warmup >= 0 and self.latency_runs >= 1,
             f"latency_warmup >= 0 and latency_runs >= 1, got {self.latency_warmup} and {self.latency_runs}"),
            (self.top_k >= 1, f"top_k: at least 1, got {self.top_k}"),
            (self.reference is None or len(self.reference) == len(self.objectives),
             f"reference: one value per objective {self.objectives}, got {self.reference}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"search config: {message}")
        self._check_variant()
        unknown = [name for name in self.objectives if name not in OBJECTIVES]
        if unknown:
            raise ValueError(f"search config: objectives: unknown {unknown}; registered: {', '.join(OBJECTIVES)}")
        self.latency_size = tuple(self.latency_size)

    def _check_variant(self) -> None:
        try:
            variant = Variant.parse(self.latency_variant)
        except ValueError as e:
            raise ValueError(f"search config: latency_variant: {e}") from None
        if variant.cuda_graph and self.latency_backend != "cuda":
            raise ValueError(f"search config: latency_variant '{self.latency_variant}' replays a CUDA graph, which "
                             f"needs latency_backend: cuda (got '{self.latency_backend}'); drop '-graph' on a CPU")

    def to_dict(self) -> dict:
        return asdict(self)

    def measurement_settings(self) -> dict:
        """The settings that change what a candidate's measurements are (images, seed, latency protocol), as
        opposed to which candidates are drawn and how they are judged: a journal is only reused under the same."""
        return {k: v for k, v in self.to_dict().items() if k not in SELECTION_SETTINGS}


# Settings that choose and judge candidates without changing any measurement: feasibility is re-judged from the
# journal under the current limits, so changing these never invalidates a journal.
SELECTION_SETTINGS = frozenset({"strategy", "objectives", "population", "generations", "branches", "crossover_prob",
                                "mutation_rate", "latency_cap_ms", "min_miou", "top_k", "reference", "local_seeds",
                                "local_iterations", "local_neighbours"})
