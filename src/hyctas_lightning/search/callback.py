"""Search right after supernet training: ``trainer.callbacks: [SearchCallback]`` in a supernet config."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from .config import SearchConfig
from .runner import run_search


class SearchCallback(L.Callback):
    """When ``hyctas fit`` of a supernet ends, run the configured search on it and its DataModule; the outputs
    go to ``out_dir`` (default: ``<default_root_dir>/search``) and, with a WandbLogger among the trainer's loggers, to
    W&B as each generation completes. After a fit on several devices, the evaluations are spread over all of them
    (``search.distributed``).

    Args:
        config: the search settings (``SearchConfig``).
        out_dir: the search's run folder.
    """

    def __init__(self, config: Optional[SearchConfig] = None, out_dir: Optional[str] = None) -> None:
        self.config = config or SearchConfig()
        self.out_dir = out_dir
        self.result = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not hasattr(pl_module, "supernet") or trainer.datamodule is None:
            raise TypeError("SearchCallback needs a SupernetModule trained with a DataModule")
        out_dir = Path(self.out_dir or Path(trainer.default_root_dir) / "search")
        self.result = run_search(pl_module.supernet, trainer.datamodule, self.config, out_dir,
                                 device=str(pl_module.device), logger=trainer.loggers,
                                 show_progress=trainer.is_global_zero, ignore_index=pl_module.hparams.ignore_index)
        if self.result is not None:
            rank_zero_info(f"search finished: {out_dir}\n{self.result.table}")
