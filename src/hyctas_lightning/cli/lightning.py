"""``hyctas fit/validate/test/predict``: the LightningCLI, with the data's class count linked into the model."""
from __future__ import annotations

import os
from typing import List, Optional

from lightning.pytorch.cli import LightningCLI


class HyctasCLI(LightningCLI):
    """LightningCLI with ``data.num_classes`` linked to ``model.init_args.num_classes``, and loggers that have no
    ``save_dir`` writing into ``trainer.default_root_dir``: with a logger of ``name: ""`` and ``version: ""``, a
    run's checkpoints, logs and predictions all land in that one folder, which ``--trainer.default_root_dir``
    moves."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("trainer.default_root_dir", "trainer.logger.init_args.save_dir")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.trainer.default_root_dir or os.getcwd()
        loggers = config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init = getattr(logger, "init_args", None)
            if init is not None and "save_dir" in init and init.save_dir is None:
                init.save_dir = root


def run_lightning(args: Optional[List[str]]) -> int:
    """Run a Trainer subcommand; ``args`` None reads ``sys.argv``."""
    from . import tools_help

    os.environ.setdefault("WANDB_MODE", "offline")  # a selected WandbLogger logs locally unless asked to sync
    HyctasCLI(args=args, parser_kwargs={"description": f"hyctas-lightning. Trainer subcommands below; {tools_help()}"},
              save_config_kwargs={"overwrite": True})
    return 0
