"""What a pipeline run does, as YAML: one section per stage (``configs/camvid/pipeline.yaml`` is the reference).

Nothing here knows a dataset: the data, its classes and every training, evaluation and search size come from the
``hyctas fit`` / ``hyctas search`` configs the sections name and from the data module; the pipeline only adds
the run folder, seeds, the latency cap and the overrides written here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from hyctas_lightning.evaluation.bench import Variant
from hyctas_lightning.search import SearchConfig
from hyctas_lightning.training.throughput import THROUGHPUT_METRICS

STAGES = ("supernet", "cap", "search", "rank", "retrain", "evaluate", "latency", "zoo", "report")


class PipelineConfigError(ValueError):
    """A pipeline config that cannot run; the message names the field and the fix."""


@dataclass
class SupernetStage:
    """Stage ``supernet``: ``hyctas fit`` of the supernet config, resumed from ``last.ckpt``.

    Args:
        config: ``hyctas fit`` config files, later ones overriding earlier ones.
        args: extra ``hyctas fit`` arguments, e.g. ``[--trainer.max_epochs, "100"]``.
        devices: GPUs the supernet trains on (more than one: Lightning's DDP, the batch size per GPU); ignored on a
            CPU.
    """

    config: List[str] = field(default_factory=list)
    args: List[str] = field(default_factory=list)
    devices: int = 1


@dataclass
class CapStage:
    """Stage ``cap``: the search's latency cap, ``factor`` x the ``reference`` network's latency, timed with
    ``hyctas bench`` in the search's own ``latency_variant``, ``latency_size`` and protocol.

    Args:
        reference: a registered network name (``list_networks()``) or an architecture JSON file.
        factor: the cap as a multiple of the reference's latency.
    """

    reference: str = "lraspp_mobilenet_v3_large"
    factor: float = 1.0


@dataclass
class SearchStage:
    """Stage ``search``: ``hyctas search`` of the trained supernet, resumed from its journal.

    Args:
        config: a ``hyctas search`` config; its ``search:`` section is the base of the search settings.
        overrides: ``SearchConfig`` fields set on top of the file's (``latency_variant``, ``population``, ...).
            The resolved settings, with the cap, are written to ``RUN/search/search.yaml`` and used by both the
            ``cap`` and the ``search`` stage.
        args: extra ``hyctas search`` arguments.
        devices: GPUs the search spreads its evaluations over (``hyctas search --devices``: one process per GPU,
            each timing latency on its own GPU); ignored on a CPU. The results do not depend on it.
    """

    config: Optional[str] = None
    overrides: Dict[str, Any] = field(default_factory=dict)
    args: List[str] = field(default_factory=list)
    devices: int = 1


@dataclass
class TrainSettings:
    """The one recipe every retrained network (stages ``rank`` and ``retrain``) trains under, and how the
    trainings share the machine: one ``hyctas fit`` per network and seed, ``jobs_per_gpu`` at a time on each GPU
    (``CUDA_VISIBLE_DEVICES`` per process), one at a time on a CPU.

    Args:
        config: ``hyctas fit`` config files of the recipe (the network is set by the pipeline).
        args: extra ``hyctas fit`` arguments for every training.
        jobs_per_gpu: trainings sharing one GPU; small networks leave most of a large GPU idle.
        throughput_metrics: logged metrics holding training images/s, the first one found counts.
    """

    config: List[str] = field(default_factory=list)
    args: List[str] = field(default_factory=list)
    jobs_per_gpu: int = 1
    throughput_metrics: List[str] = field(default_factory=lambda: list(THROUGHPUT_METRICS))


@dataclass
class RankStage:
    """Stage ``rank``: does the supernet rank? ``architectures`` networks spanning the search's latency range
    (up to ``front`` from the Pareto front, the rest random feasible candidates of the journal, one per latency
    bin) are retrained with every seed; Kendall tau and Spearman rho between the supernet's mIoU estimate and the
    retrained mIoU (mean over seeds), with bootstrap intervals.

    Args:
        architectures: networks in the study (fewer if the journal holds fewer feasible candidates).
        front: at most this many of them from the front, spread over its latency range.
        seeds: training seeds of every network.
        bootstrap: resamples for the confidence intervals.
        confidence: level of the intervals.
        seed: seed of the random picks and of the bootstrap.
    """

    architectures: int = 12
    front: int = 6
    seeds: List[int] = field(default_factory=lambda: [0, 1])
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass
class Baseline:
    """A network retrained beside the searched ones under the same recipe.

    Args:
        network: a registered name (a torchvision baseline, a preset such as ``hyctas_s``, a plugin) or an
            architecture JSON file.
        name: its name in the report (default: ``network``, or the file's stem).
        seeds: its training seeds (None: the stage's).
        args: extra ``hyctas fit``/``test`` arguments for this network only, e.g. ``[--model.init_args.fch, "4"]``.
    """

    network: str
    name: Optional[str] = None
    seeds: Optional[List[int]] = None
    args: List[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The baseline's name in the report and its folder."""
        return self.name or Path(self.network).stem


def _default_baselines() -> List[Baseline]:
    return [Baseline(n) for n in ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "hyctas_s",
                                  "hyctas_m")]


@dataclass
class RetrainStage:
    """Stage ``retrain``: the search's ``top`` networks (``topk/``, most accurate first as ``searched_1..``)
    and the baselines, each with every seed.

    Args:
        top: searched networks to retrain (at most the search's ``top_k``).
        seeds: training seeds.
        baselines: hand-designed networks and presets under the same recipe.
        reference: the baseline the verdict and the model zoo compare against (one of ``baselines``' names).
    """

    top: int = 3
    seeds: List[int] = field(default_factory=lambda: [0, 1])
    baselines: List[Baseline] = field(default_factory=_default_baselines)
    reference: str = "lraspp_mobilenet_v3_large"


@dataclass
class EvaluateStage:
    """Stage ``evaluate``: ``hyctas test`` of every retrained checkpoint, whole-image, on ``split``.

    Args:
        split: the data split evaluated (the data module's ``test_split``).
        args: extra ``hyctas test`` arguments, e.g. ``[--trainer.precision, 32-true]``.
    """

    split: str = "val"
    args: List[str] = field(default_factory=list)


@dataclass
class LatencyStage:
    """Stage ``latency``: ``hyctas bench`` of every retrained network, one at a time, in each variant and size.

    Args:
        variants: ``hyctas bench`` variants; must include the search's ``latency_variant``.
        sizes: (height, width) input sizes; must include the search's ``latency_size``.
        warmup: untimed passes.
        runs: timed passes; the median counts.
    """

    variants: List[str] = field(default_factory=lambda: ["fp32"])
    sizes: List[Tuple[int, int]] = field(default_factory=lambda: [(1024, 2048)])
    warmup: int = 50
    runs: int = 100


@dataclass
class ZooStage:
    """Stage ``zoo``: compact weights (``checkpoints.save_compact``) of the best searched network's best seed and
    of the reference baseline's, with architecture JSON and metadata.

    Args:
        out: the model-zoo folder (None: ``RUN/zoo``).
        prefix: put before each file name (``PREFIXNAME.ckpt``, ``.json``, ``.arch.json``), e.g. the dataset's.
        max_mib: size limit of each checkpoint (fp16 if it fits, else int8 weights).
    """

    out: Optional[str] = None
    prefix: str = ""
    max_mib: float = 8.0


@dataclass
class ReportStage:
    """Stage ``report``: ``REPORT.md`` and plots from the run folder's ``manifest.json``, ``results.json`` and
    ``candidates.json`` alone.

    Args:
        title: the report's heading.
        publish: a folder that receives the report, its plots and those three files (e.g. ``docs/camvid``),
            from which ``hyctas pipeline --run FOLDER --stages report`` regenerates it.
    """

    title: str = "Pipeline results"
    publish: Optional[str] = None


@dataclass
class PipelineConfig:
    """The whole method as one run: supernet, cap, search, rank study, retraining, evaluation, latency, model
    zoo and report, every stage resuming from its files in ``run``.

    Args:
        run: the run folder (``manifest.json`` and every stage's files).
        device: ``auto`` (the GPUs present, else the CPU), ``cuda`` or ``cpu``.
        gpus: indices of the visible GPUs the run may use (None: all of them).
        data: ``data.init_args`` overrides for every ``hyctas fit``/``test``/``search`` (e.g. ``{root: ...}``).
        supernet: the ``supernet`` stage.
        cap: the ``cap`` stage.
        search: the ``search`` stage.
        train: the recipe shared by ``rank`` and ``retrain``.
        rank: the ``rank`` stage.
        retrain: the ``retrain`` stage.
        evaluate: the ``evaluate`` stage.
        latency: the ``latency`` stage.
        zoo: the ``zoo`` stage.
        report: the ``report`` stage.
    """

    run: str = "runs/pipeline"
    device: str = "auto"
    gpus: Optional[List[int]] = None
    data: Dict[str, Any] = field(default_factory=dict)
    supernet: SupernetStage = field(default_factory=SupernetStage)
    cap: CapStage = field(default_factory=CapStage)
    search: SearchStage = field(default_factory=SearchStage)
    train: TrainSettings = field(default_factory=TrainSettings)
    rank: RankStage = field(default_factory=RankStage)
    retrain: RetrainStage = field(default_factory=RetrainStage)
    evaluate: EvaluateStage = field(default_factory=EvaluateStage)
    latency: LatencyStage = field(default_factory=LatencyStage)
    zoo: ZooStage = field(default_factory=ZooStage)
    report: ReportStage = field(default_factory=ReportStage)

    def to_dict(self) -> dict:
        """The config as plain data (as the manifest records it)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> PipelineConfig:
        """A config from its dict form (as ``to_dict`` and the manifest store it); unknown keys are refused."""
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise PipelineConfigError(f"pipeline config: unknown section(s) {unknown}; known: {', '.join(sections)}")
        kwargs: Dict[str, Any] = {}
        for name, value in data.items():
            section = SECTION_TYPES.get(name)
            kwargs[name] = _section(section, name, value) if section else value
        return cls(**kwargs)

    def resolved_search(self) -> SearchConfig:
        """The search settings: the ``search.config`` file's ``search:`` section, then ``search.overrides``."""
        base: Dict[str, Any] = {}
        if self.search.config:
            path = Path(self.search.config)
            if not path.is_file():
                raise PipelineConfigError(f"search.config: file not found: {path}")
            base = (yaml.safe_load(path.read_text()) or {}).get("search") or {}
        try:
            return SearchConfig(**{**base, **self.search.overrides})
        except TypeError as e:
            raise PipelineConfigError(f"search.overrides / {self.search.config}: {e}; the fields are SearchConfig's") \
                from None

    def validate(self, needs_files: bool = True) -> None:
        """Refuse settings that would fail stages later, naming the field and the fix.

        Args:
            needs_files: also check the settings that read the config files (all but a report-only run).
        """
        if self.device not in ("auto", "cuda", "cpu"):
            raise PipelineConfigError(f"pipeline config: device: auto, cuda or cpu, got '{self.device}'")
        if not needs_files:
            return
        search = self.resolved_search()
        checks = [
            (bool(self.supernet.config), "supernet.config: name the supernet's hyctas fit config file(s)"),
            (bool(self.train.config), "train.config: name the retraining recipe's hyctas fit config file(s)"),
            (self.cap.factor > 0, f"cap.factor: must be > 0, got {self.cap.factor}"),
            (self.train.jobs_per_gpu >= 1, f"train.jobs_per_gpu: at least 1, got {self.train.jobs_per_gpu}"),
            (self.rank.architectures >= 3, f"rank.architectures: at least 3 for a rank correlation, got "
                                           f"{self.rank.architectures}"),
            (0 <= self.rank.front <= self.rank.architectures,
             f"rank.front: between 0 and rank.architectures ({self.rank.architectures}), got {self.rank.front}"),
            (bool(self.rank.seeds) and bool(self.retrain.seeds), "rank.seeds, retrain.seeds: give at least one"),
            (self.retrain.top >= 1, f"retrain.top: at least 1, got {self.retrain.top}"),
            (self.retrain.reference in [b.label for b in self.retrain.baselines],
             f"retrain.reference: '{self.retrain.reference}' is not one of retrain.baselines "
             f"({', '.join(b.label for b in self.retrain.baselines) or 'none'}); add it there"),
            (len({b.label for b in self.retrain.baselines}) == len(self.retrain.baselines),
             "retrain.baselines: two baselines share a name; give one of them a `name`"),
            (tuple(search.latency_size) in self.latency.sizes,
             f"latency.sizes: add the search's latency_size {list(search.latency_size)}, so searched and retrained "
             f"latencies compare"),
            (search.latency_variant in self.latency.variants,
             f"latency.variants: add the search's latency_variant '{search.latency_variant}'"),
        ]
        for ok, message in checks:
            if not ok:
                raise PipelineConfigError(f"pipeline config: {message}")
        for variant in self.latency.variants:
            try:
                Variant.parse(variant)
            except ValueError as e:
                raise PipelineConfigError(f"pipeline config: latency.variants: {e}") from None
        for name, files in (("supernet.config", self.supernet.config), ("train.config", self.train.config)):
            missing = [f for f in files if not Path(f).is_file()]
            if missing:
                raise PipelineConfigError(f"pipeline config: {name}: file(s) not found: {', '.join(missing)}")


SECTION_TYPES = {"supernet": SupernetStage, "cap": CapStage, "search": SearchStage, "train": TrainSettings,
                 "rank": RankStage, "retrain": RetrainStage, "evaluate": EvaluateStage, "latency": LatencyStage,
                 "zoo": ZooStage, "report": ReportStage}


def _section(cls: type, name: str, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise PipelineConfigError(f"pipeline config: {name}: expected a mapping of {cls.__name__} fields, "
                                  f"got {value!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise PipelineConfigError(f"pipeline config: {name}: unknown field(s) {unknown}; known: {', '.join(known)}")
    value = dict(value)
    if cls is RetrainStage and "baselines" in value:
        value["baselines"] = [b if isinstance(b, Baseline) else Baseline(**b) for b in value["baselines"]]
    if cls is LatencyStage and "sizes" in value:
        value["sizes"] = [tuple(int(v) for v in s) for s in value["sizes"]]
    return cls(**value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
