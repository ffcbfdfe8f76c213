"""One search end to end: data in memory, evaluator, strategy, outputs. Shared by ``hyctas search`` and
:class:`SearchCallback`."""
from __future__ import annotations

import logging
import platform
import random
import statistics
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import lightning as L
import torch
import torch.distributed as dist

from hyctas_lightning.checkpoints import plain, weights_digest
from hyctas_lightning.distributed import all_agree, cpu_group
from hyctas_lightning.errors import check_device
from hyctas_lightning.fileio import write_json
from hyctas_lightning.locks import FileLock, LockHeld
from hyctas_lightning.models import SuperNet
from hyctas_lightning.search_space import SearchSpace

from .config import SearchConfig
from .dashboard import search_dashboard
from .distributed import SpreadEvaluator, latency_spread, serve
from .engine import NothingFeasible, SearchRun, run_strategy
from .evaluator import SupernetEvaluator, collect_images
from .fronts import Individual
from .journal import Journal
from .outputs import front_table, write_outputs

log = logging.getLogger(__name__)

SPREAD_WARNING = 0.1  # a latency spread between the GPUs beyond this is worth a warning
SEARCH_LOCK = ".search.lock"


@dataclass
class SearchResult:
    """What ``run_search`` produced.

    Args:
        out_dir: folder with the journal, the front, ``best.json`` and ``topk/``.
        front: the feasible Pareto front, sorted.
        history: per generation, a summary row (front size, hypervolume, seconds, ...).
        new_evaluations: architectures this run measured (the rest came from the journal).
        table: the front as a printable table.
    """

    out_dir: Path
    front: List[Individual]
    history: List[dict]
    new_evaluations: int
    table: str


def run_search(supernet: SuperNet, datamodule: L.LightningDataModule, config: SearchConfig, out_dir: Path,
               device: Optional[str] = None, logger=None, show_progress: bool = True, ignore_index: int = 255,
               spread_check: int = 4) -> Optional[SearchResult]:
    """Search ``supernet``; results (and the journal a rerun resumes from) go to ``out_dir``. The journal is reused
    only if it was measured with the same inputs (``measurement_inputs``); otherwise the search starts afresh.

    Run by every process of a distributed group (``hyctas search --devices N``, or after a ``hyctas fit`` on several
    devices), each with its own ``device``, the evaluations are spread over them (``search.distributed``): process 0
    runs the strategy, writes the journal and the outputs and returns the result, the others return None. Their
    devices must be of one model; before the search, each times the same ``spread_check`` architectures and
    ``gpu_spread.json`` records how far their latencies differ.

    Args:
        supernet: the trained supernet.
        datamodule: data of the calibration (train split) and validation (val split) images.
        config: the search settings (strategy, objectives, limits, image counts, seed).
        out_dir: folder of the journal and the outputs; rerun with the same folder to resume.
        device: where evaluations and latency run (None: ``cuda`` if available, else ``cpu``).
        logger: a Lightning logger or a list of them; a ``WandbLogger`` among them gets every generation.
        show_progress: show progress bars.
        ignore_index: label of pixels that count in no metric.
        spread_check: architectures each process times before a distributed search, to compare the devices.
    """
    out_dir = Path(out_dir)
    config.objective_list()  # objectives built from files (a surrogate's references) fail here, before any work
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    if torch.device(device).type == "cuda" and torch.device(device).index is not None:
        torch.cuda.set_device(torch.device(device))  # latency is timed on the current device
    group = cpu_group()
    lead = group is None or dist.get_rank(group) == 0
    with search_lock(out_dir, lead, group):  # the whole search: no second one writes the folder meanwhile
        journal = None
        if lead:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json(out_dir / "config.json", {"search": config.to_dict(), "space": supernet.space.to_dict()},
                       default=str)
            journal = Journal(out_dir / "candidates.jsonl",
                              measurement_inputs(supernet, datamodule, config, ignore_index, device))
        calibration = collect_images(datamodule, "train", config.calibration_images, config.seed, with_masks=False)
        validation = collect_images(datamodule, "val", config.val_images, config.seed, with_masks=True)
        evaluator = SupernetEvaluator(supernet, calibration, validation, config, ignore_index, device)
        try:
            return _search_on(evaluator, config, device, group, lead, journal, out_dir, logger, show_progress,
                              spread_check)
        finally:
            evaluator.close()


def _search_on(evaluator: SupernetEvaluator, config: SearchConfig, device: str, group: Optional[dist.ProcessGroup],
               lead: bool, journal: Optional[Journal], out_dir: Path, logger, show_progress: bool,
               spread_check: int) -> Optional[SearchResult]:
    """The search with this process's evaluator: alone, or spread over ``group`` (see :func:`run_search`)."""
    space = evaluator.supernet.space
    if group is None:
        return search_with(evaluator, space, config, journal, out_dir, logger, show_progress)
    check_spread(evaluator, config, device, group, out_dir if lead else None, spread_check)
    if not lead:
        serve(evaluator, group)
        return None
    spread = SpreadEvaluator(evaluator, group)
    try:
        return search_with(spread, space, config, journal, out_dir, logger, show_progress)
    finally:
        spread.close()


@contextmanager
def search_lock(out_dir: Path, lead: bool, group: Optional[dist.ProcessGroup]) -> Iterator[None]:
    """Hold ``out_dir/.search.lock`` while the block runs: a second search on the folder, which would interleave its
    journal with this one's, is refused at once, naming the holder. Process 0 takes it; every process of a spread
    search learns whether it did, so a refusal stops them all rather than leaving them waiting.

    Args:
        out_dir: the search's folder.
        lead: whether this is process 0 (the one that writes the folder).
        group: the processes of a spread search (None: one process).
    """
    lock, refused = FileLock(out_dir / SEARCH_LOCK), None
    if lead:
        try:
            lock.acquire()
        except LockHeld as held:
            refused = LockHeld(f"{out_dir} is in use: another search writes it ({held.holder or 'unnamed'}); wait "
                               f"for it to finish or stop it, or choose another --out", held.holder)
        except OSError as error:  # no folder there (a part of the path is a file)
            refused = error
    if group is not None and not all_agree(str(refused is None)):
        refused = refused or LockHeld(f"{out_dir}: the search's first process could not lock it")
    if refused is not None:
        raise refused
    try:
        yield
    finally:
        lock.release()


def check_spread(evaluator: SupernetEvaluator, config: SearchConfig, device: str, group: dist.ProcessGroup,
                 out_dir: Optional[Path], count: int) -> None:
    """Refuse devices of different models, then time ``count`` architectures on every device at once (the
    smallest, the largest and random ones of the search's seed) and, on process 0, write their latencies and
    spread to ``out_dir/gpu_spread.json`` and log it.

    Args:
        evaluator: this process's evaluator.
        config: the search settings (its seed and branch count pick the random architectures).
        device: this process's device.
        group: the processes of the search.
        out_dir: where process 0 writes ``gpu_spread.json``; None on the other processes.
        count: architectures timed.
    """
    name = device_name(device)
    if not all_agree(name):
        raise ValueError(f"the search's processes run on different devices (this one: {name}): latencies measured "
                         f"on them are not comparable; spread a search over GPUs of one model only")
    space = evaluator.supernet.space
    rng = random.Random(config.seed)
    archs = [space.smallest(), space.largest(), *(space.sample(rng, branches=config.branches)
                                                  for _ in range(max(0, count - 2)))][:count]
    rows = latency_spread(evaluator.latency_of, archs, group)
    if out_dir is None or not rows:
        return
    spreads = [row["spread"] for row in rows]
    write_json(out_dir / "gpu_spread.json", {"device": name, "processes": dist.get_world_size(group),
                                             "architectures": rows})
    report = log.warning if max(spreads) > SPREAD_WARNING else log.info
    report("latency on %d x %s: spread between them (slowest - fastest) / median %.1f%% median, %.1f%% at most over "
           "%d architectures (%s)", dist.get_world_size(group), name, 100 * statistics.median(spreads),
           100 * max(spreads), len(rows), out_dir / "gpu_spread.json")


def device_name(device: str) -> str:
    """The model of ``device``: the GPU's name, or the CPU's architecture.

    Args:
        device: a torch device string (``cuda:0``, ``cpu``).
    """
    target = torch.device(device)
    return torch.cuda.get_device_name(target) if target.type == "cuda" else f"{target.type} ({platform.machine()})"


def measurement_inputs(supernet: SuperNet, datamodule: L.LightningDataModule, config: SearchConfig,
                       ignore_index: int, device: str) -> Dict[str, Any]:
    """Everything a candidate's measurements depend on: the supernet's weights (digest), the data module and its
    arguments, the ignore label, the device the latency is measured on and the measurement settings.

    Args:
        supernet: the supernet (its weights are digested).
        datamodule: the data module (its class and arguments are recorded).
        config: the search settings (their measurement part is recorded).
        ignore_index: the ignore label.
        device: the device latency is measured on.
    """
    cls = type(datamodule)
    data_args = {k: v for k, v in getattr(datamodule, "hparams", {}).items()
                 if not k.startswith("_") and k not in ("pin_memory", "persistent_workers")}
    return {"supernet": weights_digest(supernet.state_dict()), "space": supernet.space.to_dict(),
            "data": {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": plain(data_args)},
            "ignore_index": ignore_index, "device": device_name(device), **config.measurement_settings()}


def check_space(trained: SearchSpace, requested: Optional[dict]) -> None:
    """A config may restate the space, but only as the supernet was trained on it.

    Args:
        trained: the space stored in the supernet's checkpoint.
        requested: the config's ``space:`` fields, or None/empty when it restates nothing.
    """
    if not requested:
        return
    wanted = SearchSpace.from_dict({**trained.to_dict(), **requested}).to_dict()
    differ = [k for k, v in wanted.items() if trained.to_dict()[k] != v]
    if differ:
        details = ", ".join(f"{k}: config {wanted[k]} vs checkpoint {trained.to_dict()[k]}" for k in differ)
        raise ValueError(f"the config's search space differs from the checkpoint's ({details}); a supernet can only "
                         f"be searched in the space it was trained on: remove 'space:' or fix those fields")


def search_with(evaluate, space: SearchSpace, config: SearchConfig, journal: Journal, out_dir: Path, logger=None,
                show_progress: bool = True) -> SearchResult:
    """Run the configured strategy with any evaluator and write the outputs, also when nothing was feasible. With a
    ``WandbLogger`` among ``logger`` (one logger or a list), every generation is logged as it completes.

    Args:
        evaluate: the evaluator, called with one architecture (or its ``evaluate_batch`` with several).
        space: the search space the strategy samples.
        config: the search settings.
        journal: the append-only journal measurements are recorded in and resumed from.
        out_dir: folder of the outputs.
        logger: a Lightning logger or a list of them.
        show_progress: show progress bars.
    """
    objectives = config.objective_list()
    dashboard = search_dashboard(logger, objectives)
    run: Optional[SearchRun] = None
    try:
        run = run_strategy(space, config, evaluate, journal, show_progress, [dashboard] if dashboard else [])
    finally:
        history = run.history if run is not None else []
        front = write_outputs(out_dir, journal.candidates(), objectives, config.top_k, history)
    if dashboard is not None:
        dashboard.finish(journal.candidates(), front, out_dir)
    return SearchResult(out_dir, front, history, run.new_evaluations, front_table(front, objectives))


__all__ = ["NothingFeasible", "SearchResult", "check_space", "check_spread", "device_name", "measurement_inputs",
           "run_search", "search_lock", "search_with"]
