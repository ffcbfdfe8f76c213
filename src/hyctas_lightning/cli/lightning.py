"""``hyctas fit/validate/test/predict``: the LightningCLI, with the data's class count linked into the model."""
from __future__ import annotations

import os
from typing import List, Optional

from lightning.pytorch.cli import LightningCLI


class HyctasCLI(LightningCLI):
    """LightningCLI with ``data.num_classes`` linked to ``model.init_args.num_classes``."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")


def run_lightning(args: Optional[List[str]]) -> int:
    """Run a Trainer subcommand; ``args`` None reads ``sys.argv``."""
    from . import tools_help

    os.environ.setdefault("WANDB_MODE", "offline")  # a selected WandbLogger logs locally unless asked to sync
    HyctasCLI(args=args, parser_kwargs={"description": f"hyctas-lightning. Trainer subcommands below; {tools_help()}"},
              save_config_kwargs={"overwrite": True})
    return 0
