"""One search end to end: data in memory, evaluator, strategy, outputs. Shared by ``hyctas search`` and
:class:`SearchCallback`."""
from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import lightning as L
import torch

from hyctas_lightning.checkpoints import plain, weights_digest
from hyctas_lightning.errors import check_device
from hyctas_lightning.models import SuperNet
from hyctas_lightning.search_space import SearchSpace

from .config import SearchConfig
from .dashboard import search_dashboard
from .engine import NothingFeasible, SearchRun, run_strategy
from .evaluator import SupernetEvaluator, collect_images
from .fronts import Individual
from .journal import Journal
from .objectives import OBJECTIVES
from .outputs import front_table, write_outputs

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    out_dir: Path
    front: List[Individual]
    history: List[dict]
    new_evaluations: int
    table: str


def run_search(supernet: SuperNet, datamodule: L.LightningDataModule, config: SearchConfig, out_dir: Path,
               device: Optional[str] = None, logger=None, show_progress: bool = True,
               ignore_index: int = 255) -> SearchResult:
    """Search ``supernet``; results (and the journal a rerun resumes from) go to ``out_dir``. The journal is reused
    only if it was measured with the same inputs (``measurement_inputs``); otherwise the search starts afresh."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    (out_dir / "config.json").write_text(json.dumps({"search": config.to_dict(), "space": supernet.space.to_dict()},
                                                    indent=1, default=str) + "\n")
    journal = Journal(out_dir / "candidates.jsonl",
                      measurement_inputs(supernet, datamodule, config, ignore_index, device))
    calibration = collect_images(datamodule, "train", config.calibration_images, config.seed, with_masks=False)
    validation = collect_images(datamodule, "val", config.val_images, config.seed, with_masks=True)
    evaluator = SupernetEvaluator(supernet, calibration, validation, config, ignore_index, device)
    return search_with(evaluator, supernet.space, config, journal, out_dir, logger, show_progress)


def measurement_inputs(supernet: SuperNet, datamodule: L.LightningDataModule, config: SearchConfig,
                       ignore_index: int, device: str) -> Dict[str, Any]:
    """Everything a candidate's measurements depend on: the supernet's weights (digest), the data module and its
    arguments, the ignore label, the device the latency is measured on and the measurement settings."""
    cls = type(datamodule)
    data_args = {k: v for k, v in getattr(datamodule, "hparams", {}).items()
                 if not k.startswith("_") and k not in ("pin_memory", "persistent_workers")}
    target = torch.device(device)
    where = torch.cuda.get_device_name(target) if target.type == "cuda" else f"{target.type} ({platform.machine()})"
    return {"supernet": weights_digest(supernet.state_dict()), "space": supernet.space.to_dict(),
            "data": {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": plain(data_args)},
            "ignore_index": ignore_index, "device": where, **config.measurement_settings()}


def check_space(trained: SearchSpace, requested: Optional[dict]) -> None:
    """A config may restate the space, but only as the supernet was trained on it."""
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
    ``WandbLogger`` among ``logger`` (one logger or a list), every generation is logged as it completes."""
    objectives = [OBJECTIVES.get(n) for n in config.objectives]
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


__all__ = ["NothingFeasible", "SearchResult", "check_space", "measurement_inputs", "run_search", "search_with"]
