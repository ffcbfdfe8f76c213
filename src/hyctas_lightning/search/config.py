"""Settings of one search (the ``search:`` section of ``configs/search.yaml``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional, Tuple

from hyctas_lightning.evaluation.bench import Variant

from .objectives import OBJECTIVES, Objective, bind_objectives
from .registry import STRATEGIES, strategy_settings


@dataclass
class SearchConfig:
    """The settings of one search, in four groups: the problem (what is searched, how a candidate is measured and
    what is feasible), the algorithm (the strategy, its own settings, population and seed), the termination
    (generations) and the outputs. Defaults are the paper's (section 3.4, 4.2): NSGA-II, population 40, 20
    generations, crossover 0.9, mutation 1/n_var per gene, BN recalibration on 1000 training images, latency at
    batch 1 after 50 warm-up passes over the median of 100.

    Args:
        objectives: problem: registered objectives, the first maximised or minimised against the rest
            (``miou``, ``latency_ms``, ``macs_g``, ``params_m``, ``surrogate_miou``, or your own with
            ``register_objective``).
        objective_args: problem: settings of the objectives that take them, ``{name: {setting: value}}`` (e.g.
            ``surrogate_miou: {references: DIR, estimates: FILE}``); they judge candidates, so changing them reuses
            the journal.
        branches: problem: search 1-, 2- or 3-branch networks only; None searches all jointly.
        latency_cap_ms: problem: latency limit S_max of Algorithm 1 (None: no limit).
        min_miou: problem: minimum mIoU of Algorithm 1, in [0, 1] (None: no limit).
        calibration_images: problem (measurement): training images that recalibrate BatchNorm for each candidate.
        val_images: problem (measurement): validation images per candidate (None: the whole split).
        images_per_pass: problem (measurement): the most images the supernet runs at once while recalibrating and
            validating a candidate (batches are stacked; scores do not depend on it, up to rounding: lower it if
            GPU memory runs out).
        latency_backend: problem (measurement): ``cuda`` (CUDA events) or ``cpu`` (wall clock, for machines
            without a GPU).
        latency_variant: problem (measurement): how each candidate runs while timed, any ``hyctas bench`` variant
            ``DTYPE[-fold][-cl][-compile][-graph]`` (e.g. ``fp16-fold-cl-graph``), so the objective is the latency
            of the network as it will be deployed; ``fp32`` (eager float32) is the paper's.
        latency_size: problem (measurement): input height and width of the latency measurement (the deployment
            resolution).
        latency_warmup: problem (measurement): untimed passes before timing.
        latency_runs: problem (measurement): timed passes; the median counts.
        latency_autotune: problem (measurement): cuDNN autotuning while each candidate is prepared and timed. Off,
            a candidate's CUDA graph is captured in ~0.05 s instead of 1-2 s (every candidate has new convolution
            shapes to tune), and the presets' medians moved by at most 2 % (H100, fp16-fold-cl-graph, 360x480).
        profile_workers: problem (measurement): processes that count each candidate's parameters and multiply-adds
            ahead, on the host's spare cores, while the device measures the candidates before it (0: counted inline,
            one candidate after another). The counts do not depend on it; a few workers hide the counting on a GPU
            host (it costs ~0.1-0.2 s of host time per candidate).
        build_ahead: problem (measurement): build and prepare the next candidate's timed ChildNet (host work) while
            the device recalibrates and validates the current one, and time it when the device is idle again (None:
            on for a ``cuda`` latency backend; a CPU runs everything on the host, so nothing is gained there). The
            measurements do not depend on it.
        strategy: algorithm: a registered search strategy: ``nsga2``, or the ablation baselines ``random`` and
            ``local`` (paper section 4.5), or your own (``register_strategy``).
        strategy_args: algorithm: the strategy's own settings (``nsga2``: ``crossover_prob``, the probability of
            one-point crossover between two parents, and ``mutation_rate``, the per-gene mutation probability, None
            for 1 / number of genes in use; ``local``: ``seeds`` random starting points, ``iterations`` rounds and
            ``neighbours`` single-edit neighbours per incumbent and round). Unset settings keep their defaults.
        population: algorithm: candidates per generation.
        seed: algorithm: seed of every random decision (and of the calibration images); a rerun with the same seed
            replays the search.
        generations: termination: generations after the initial population.
        top_k: output: front members written to ``topk/`` (largest crowding distance first).
        reference: output: hypervolume reference point, one value per objective (None: derived from the first
            generation and the caps).
        crossover_prob: older spelling of ``strategy_args.crossover_prob`` (nsga2).
        mutation_rate: older spelling of ``strategy_args.mutation_rate`` (nsga2).
        local_seeds: older spelling of ``strategy_args.seeds`` (local).
        local_iterations: older spelling of ``strategy_args.iterations`` (local).
        local_neighbours: older spelling of ``strategy_args.neighbours`` (local).
    """

    objectives: List[str] = field(default_factory=lambda: ["miou", "latency_ms"])
    objective_args: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    branches: Optional[int] = None
    latency_cap_ms: Optional[float] = None
    min_miou: Optional[float] = None
    calibration_images: int = 1000
    val_images: Optional[int] = None
    images_per_pass: int = 128
    latency_backend: str = "cuda"
    latency_variant: str = "fp32"
    latency_size: Tuple[int, int] = (1024, 2048)
    latency_warmup: int = 50
    latency_runs: int = 100
    latency_autotune: bool = True
    profile_workers: int = 0
    build_ahead: Optional[bool] = None
    strategy: str = "nsga2"
    strategy_args: Dict[str, Any] = field(default_factory=dict)
    population: int = 40
    seed: int = 0
    generations: int = 20
    top_k: int = 5
    reference: Optional[List[float]] = None
    crossover_prob: Optional[float] = None
    mutation_rate: Optional[float] = None
    local_seeds: Optional[int] = None
    local_iterations: Optional[int] = None
    local_neighbours: Optional[int] = None

    def __post_init__(self) -> None:
        checks = [
            (self.strategy in STRATEGIES, f"strategy: unknown '{self.strategy}'; registered: {', '.join(STRATEGIES)}"),
            (len(self.objectives) >= 2, f"objectives: need at least two, got {self.objectives}"),
            (self.population >= 4, f"population: at least 4, got {self.population}"),
            (self.generations >= 0, f"generations: must be >= 0, got {self.generations}"),
            (self.branches in (None, 1, 2, 3), f"branches: 1, 2, 3 or null, got {self.branches}"),
            (self.latency_backend in ("cuda", "cpu"),
             f"latency_backend: 'cuda' or 'cpu', got '{self.latency_backend}'"),
            (self.calibration_images > 0, f"calibration_images: must be > 0, got {self.calibration_images}"),
            (self.images_per_pass > 0, f"images_per_pass: must be > 0, got {self.images_per_pass}"),
            (self.val_images is None or self.val_images > 0, f"val_images: must be > 0 or null, got {self.val_images}"),
            (self.latency_cap_ms is None or self.latency_cap_ms > 0,
             f"latency_cap_ms: must be > 0 ms or null (no cap), got {self.latency_cap_ms}"),
            (self.min_miou is None or 0 <= self.min_miou <= 1,
             f"min_miou: an mIoU in [0, 1] (0.7, not 70) or null, got {self.min_miou}"),
            (len(self.latency_size) == 2 and min(self.latency_size) > 0,
             f"latency_size: [height, width] > 0, got {self.latency_size}"),
            (self.latency_warmup >= 0 and self.latency_runs >= 1,
             f"latency_warmup >= 0 and latency_runs >= 1, got {self.latency_warmup} and {self.latency_runs}"),
            (self.profile_workers >= 0, f"profile_workers: 0 (inline) or more, got {self.profile_workers}"),
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
        stray = [name for name in self.objective_args if name not in self.objectives]
        if stray:
            raise ValueError(f"search config: objective_args: {stray} not among the objectives {self.objectives}")
        self.latency_size = tuple(self.latency_size)
        self._resolve_strategy_args()

    def _resolve_strategy_args(self) -> None:
        """Fold the older flat spellings into ``strategy_args`` (where the strategy takes them) and check them
        against the strategy's settings, which ``strategy_args`` then lists in full."""
        args = dict(self.strategy_args or {})
        settings = getattr(STRATEGIES.get(self.strategy), "settings", None)
        known = {f.name for f in fields(settings)} if settings else set()
        for old, new in LEGACY_STRATEGY_ARGS.items():
            value = getattr(self, old)
            if value is not None and new in known:
                args.setdefault(new, value)
            setattr(self, old, None)
        resolved = strategy_settings(self.strategy, args)
        self.strategy_args = asdict(resolved) if is_dataclass(resolved) else resolved

    def objective_list(self) -> List[Objective]:
        """The objectives, each built from its ``objective_args`` (once per config: a surrogate reads files)."""
        if getattr(self, "_bound", None) is None:
            self._bound = bind_objectives(self.objectives, self.objective_args)
        return self._bound

    @property
    def settings(self) -> Any:
        """The strategy's own settings: its settings dataclass, or ``strategy_args`` if it declares none."""
        return strategy_settings(self.strategy, self.strategy_args)

    def _check_variant(self) -> None:
        try:
            variant = Variant.parse(self.latency_variant)
        except ValueError as e:
            raise ValueError(f"search config: latency_variant: {e}") from None
        if variant.cuda_graph and self.latency_backend != "cuda":
            raise ValueError(f"search config: latency_variant '{self.latency_variant}' replays a CUDA graph, which "
                             f"needs latency_backend: cuda (got '{self.latency_backend}'); drop '-graph' on a CPU")

    def to_dict(self) -> dict:
        """The settings as plain data, without the older spellings (already in ``strategy_args``)."""
        return {k: v for k, v in asdict(self).items() if k not in LEGACY_STRATEGY_ARGS}

    def measurement_settings(self) -> dict:
        """The settings that change what a candidate's measurements are (images, seed, latency protocol), as
        opposed to which candidates are drawn and how they are judged: a journal is only reused under the same."""
        settings = {k: v for k, v in self.to_dict().items() if k in MEASUREMENT_SETTINGS}
        if settings["latency_autotune"]:  # the protocol before the setting existed: its journals stay current
            del settings["latency_autotune"]
        return settings


# The settings that change what a candidate measures: the images (drawn from the seed) and the latency protocol.
# Every other setting chooses and judges candidates: feasibility is re-judged from the journal under the current
# limits, so changing those never invalidates a journal.
MEASUREMENT_SETTINGS = frozenset({"calibration_images", "val_images", "latency_backend", "latency_variant",
                                  "latency_size", "latency_warmup", "latency_runs", "latency_autotune", "seed"})
LEGACY_STRATEGY_ARGS = {"crossover_prob": "crossover_prob", "mutation_rate": "mutation_rate",
                        "local_seeds": "seeds", "local_iterations": "iterations", "local_neighbours": "neighbours"}
