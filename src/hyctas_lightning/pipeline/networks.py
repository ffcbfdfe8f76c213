"""The networks a run retrains (stages ``rank`` and ``retrain``) and evaluates: one ``hyctas fit`` and one ``hyctas
test`` per network and seed under the shared recipe, in folders keyed by the recipe, scored from their logs."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hyctas_lightning.fileio import json_digest
from hyctas_lightning.models import list_networks
from hyctas_lightning.search.journal import Candidate, read_journal
from hyctas_lightning.training.curves import last_value, read_curves

from . import commands
from .config import Baseline
from .context import RunContext
from .jobs import Job
from .manifest import PipelineError, file_digest


@dataclass
class Network:
    """A network the run retrains: its report name, kind, folder key, model arguments and seeds.

    Args:
        name: its name in the report.
        kind: ``searched``, ``baseline`` or ``rank`` (one of the rank-correlation study's picks).
        key: its folder under ``train/RECIPE/`` (the architecture hash, or the baseline's label).
        model_args: command-line arguments that select it (``--model.init_args.arch PATH``).
        seeds: training seeds; one run each.
        args: extra command-line arguments of its own (a baseline's ``args``).
        estimate: the search's measurements of it (``miou``, ``latency_ms``, ...); None for baselines.
    """

    name: str
    kind: str  # "searched", "baseline" or "rank"
    key: str
    model_args: List[str]
    seeds: List[int]
    args: List[str] = field(default_factory=list)
    estimate: Optional[Dict[str, Any]] = None


def recipe(ctx: RunContext) -> Dict[str, Any]:
    """The shared training recipe as a stage input: its config files' digests and its arguments."""
    c = ctx.config.train
    return {"config": {f: file_digest(Path(f)) for f in c.config}, "args": c.args}


def candidates(ctx: RunContext) -> Dict[str, Candidate]:
    """The search journal's candidates by architecture hash."""
    return {c.hash: c for c in read_journal(ctx.folder / "search" / "candidates.jsonl")}


def arch_network(ctx: RunContext, name: str, kind: str, candidate: Candidate, seeds: List[int]) -> Network:
    """A searched candidate as a network to retrain, its architecture written to ``train/arch/HASH.json``."""
    path = ctx.folder / "train" / "arch" / f"{candidate.hash}.json"
    if not path.exists():
        candidate.arch.save(path)
    estimate = {k: v for k, v in candidate.measurements.items() if v is not None}
    return Network(name, kind, candidate.hash, commands.model(arch=path), seeds, [], estimate)


def baseline_network(ctx: RunContext, baseline: Baseline) -> Network:
    """A baseline (a registered name or an architecture file) as a network to retrain."""
    registered = baseline.network in list_networks()
    model = commands.model(network=baseline.network) if registered else commands.model(arch=baseline.network)
    return Network(baseline.label, "baseline", baseline.label, model,
                   list(baseline.seeds or ctx.config.retrain.seeds), list(baseline.args))


def networks_of(ctx: RunContext, stage: str) -> List[Network]:
    """The networks a finished stage recorded."""
    return [Network(**n) for n in ctx.require(stage)["networks"]]


def training_folder(ctx: RunContext, network: Network, seed: int) -> Path:
    """``train/RECIPE/KEY/seedS``: keyed by the recipe's digest, so a changed recipe never resumes an old run."""
    return ctx.folder / "train" / json_digest(recipe(ctx))[:8] / network.key / f"seed{seed}"


def last_checkpoint(ctx: RunContext, network: Network, seed: int) -> Path:
    """A training's ``last.ckpt`` (what evaluation, latency and the zoo take)."""
    return training_folder(ctx, network, seed) / "checkpoints" / "last.ckpt"


def _network_args(ctx: RunContext, network: Network) -> List[str]:
    return [*commands.configs(ctx.config.train.config), *network.model_args, *ctx.config.train.args, *network.args]


def fit_job(ctx: RunContext, network: Network, seed: int) -> Job:
    """``hyctas fit`` of one network and seed, resuming from its last checkpoint."""
    out = training_folder(ctx, network, seed)
    argv = commands.command("fit", _network_args(ctx, network), commands.seed(seed), commands.root(out),
                            commands.data(ctx.config.data), commands.resume(out / "checkpoints" / "last.ckpt"))
    return Job(f"fit:{ctx.rel(out)}", argv, out / "fit.log", f"fit {network.name} seed {seed}", out)


def test_job(ctx: RunContext, network: Network, seed: int) -> Job:
    """``hyctas test`` of one network and seed's last checkpoint on the evaluated split, into its ``eval/``."""
    out = training_folder(ctx, network, seed)
    c = ctx.config.evaluate
    argv = commands.command("test", _network_args(ctx, network), commands.root(out / "eval"),
                            commands.test_split(c.split), commands.data(ctx.config.data), c.args,
                            ["--ckpt_path", str(out / "checkpoints" / "last.ckpt")])
    return Job(f"test:{ctx.rel(out)}", argv, out / "eval" / "test.log", f"evaluate {network.name} seed {seed}",
               out / "eval")


def fit(ctx: RunContext, networks: Sequence[Network]) -> None:
    """Train every network and seed (finished trainings are kept)."""
    ctx.run_many([fit_job(ctx, n, s) for n in networks for s in n.seeds], ctx.config.train.jobs_per_gpu, "trainings")


def evaluate(ctx: RunContext, networks: Sequence[Network]) -> Dict[str, Dict[str, Any]]:
    """Test every network and seed; per network: per-seed mIoU, per-class IoU and training images/s, the mean
    and the spread, all read from the logged files."""
    ctx.run_many([test_job(ctx, n, s) for n in networks for s in n.seeds], ctx.config.train.jobs_per_gpu,
                 "evaluations")
    return {n.name: scores(ctx, n) for n in networks}


def scores(ctx: RunContext, network: Network) -> Dict[str, Any]:
    """A network's evaluated mIoU per seed (with per-class IoU, training throughput and time), mean and spread."""
    seeds = {}
    prefix = "test/IoU/"
    for seed in network.seeds:
        out = training_folder(ctx, network, seed)
        test = read_curves(out / "eval", recursive=False)
        if "test/mIoU" not in test:
            raise PipelineError(f"{out / 'eval'}: no test/mIoU logged; see {out / 'eval' / 'test.log'}")
        train = read_curves(out, recursive=False)
        seeds[str(seed)] = {"miou": test["test/mIoU"].last,
                            "iou": {k[len(prefix):]: v.last for k, v in test.items() if k.startswith(prefix)},
                            "images_per_s": last_value(train, ctx.config.train.throughput_metrics),
                            "train_seconds": ctx.manifest.job(f"fit:{ctx.rel(out)}").get("seconds"),
                            "folder": ctx.rel(out)}
    mious = [s["miou"] for s in seeds.values()]
    return {"seeds": seeds, "miou_mean": statistics.fmean(mious),
            "miou_std": statistics.stdev(mious) if len(mious) > 1 else None}
