"""``hyctas fit/validate/test/predict``: the LightningCLI, with the data's class count linked into the model, and
the checks that must happen before Lightning touches a ``--ckpt_path``."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Dict, List, Optional

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from .checkpoint_options import conflicts, is_local_file, last_checkpoint, plain_value, refuse_conflicts, typed_values
from .parsing import OneLineErrors


def named_plugins(hparams: Any) -> List[str]:
    """Plugin modules that a module's arguments name: ``plugins`` (retraining) or ``space.plugins`` (supernet)."""
    hparams = plain_value(hparams) or {}
    space = plain_value(hparams.get("space")) or {}
    return list(hparams.get("plugins") or []) + list((space.get("plugins") if isinstance(space, dict) else None) or [])


def checkpoint_classes(meta: Dict[str, Any]) -> Optional[int]:
    """The class count a checkpoint was trained for, from its ``hyctas`` metadata."""
    return meta.get("num_classes") or (meta.get("network") or {}).get("num_classes")


def module_class(model: Any) -> Optional[type]:
    """The LightningModule class a config's ``model:`` names."""
    path = getattr(model, "class_path", None)
    if not path:
        return None
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def check_checkpoint(checkpoint: Dict[str, Any], path: str, model: Any, resume: bool = False) -> Dict[str, Any]:
    """Check a checkpoint (read safely: no code ran) before Lightning uses it: its kind must be the configured
    module's (``checkpoint_kind``), every plugin module it lists must be one the user named as well, since
    Lightning builds the module that the file describes, and a training to ``resume`` needs the optimiser state.
    Returns its ``hyctas`` metadata ({} when the configured module declares no kind)."""
    from hyctas_lightning.checkpoints import CheckpointError, require_kind

    if resume and "optimizer_states" not in checkpoint:
        raise CheckpointError(f"{path} holds the weights only (no optimiser state, loops or random streams, as "
                              f"LastCheckpoint's weights_file writes), so training cannot resume from it: resume "
                              f"from last.ckpt; search or validate this file")
    kind = getattr(module_class(model), "checkpoint_kind", None)
    meta = require_kind(checkpoint, kind, path) if kind else {}
    listed = named_plugins(checkpoint.get("hyper_parameters"))
    unnamed = [p for p in listed if p not in named_plugins(getattr(model, "init_args", None))]
    if unnamed:
        raise CheckpointError(f"{path} lists plugin modules {unnamed}; importing a module runs its code, so hyctas "
                              f"imports only the modules you name: if you trust them, name them in the model's "
                              f"plugins (e.g. --model.init_args.plugins '{listed}')")
    return meta


class HyctasParser(OneLineErrors, LightningArgumentParser):
    """LightningCLI's parser with one-line errors for a refused config value (``cli.parsing``)."""


class HyctasCLI(LightningCLI):
    """LightningCLI with ``data.num_classes`` linked to ``model.init_args.num_classes``, and loggers that have no
    ``save_dir`` writing into ``trainer.default_root_dir``: with a logger of ``name: ""`` and ``version: ""``, a
    run's checkpoints, logs and predictions all land in that one folder, which ``--trainer.default_root_dir``
    moves.

    A ``--ckpt_path`` file is opened with ``weights_only=True`` and checked before anything is built (and before
    LightningCLI merges its hyper-parameters into the config): it must be of the kind the configured module trains
    (a supernet checkpoint cannot start a retrain run, nor the reverse), list no plugin module the user did not
    name, store no other value for an option typed on the command line (``cli.checkpoint_options``), and match the
    data's class count. ``--ckpt_path last`` is resolved here too, and refused when there is nothing to resume.
    Lightning then loads the file with ``weights_only`` left to torch, whose default is True. A GPU accelerator on
    a machine without one is refused up front, and checkpoints are written atomically by a thread while training
    goes on (``AsyncAtomicCheckpointIO``).
    Only LightningCLI's public hooks are overridden."""

    @staticmethod
    def subcommands() -> Dict[str, set]:
        """Lightning's subcommands, without a ``--weights_only`` switch: checkpoints always load without code."""
        return {name: skip | {"weights_only"} for name, skip in LightningCLI.subcommands().items()}

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("trainer.default_root_dir", "trainer.logger.init_args.save_dir")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, note the options typed on the command line, and check a ``--ckpt_path`` file."""
        super().parse_arguments(parser, args)
        self.checkpoint_meta: Dict[str, Any] = {}
        self.typed: Dict[str, Dict[str, Any]] = {}
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        argv = sys.argv[1:] if args is None else args if isinstance(args, list) else []
        groups = ("model", "optimizer", "lr_scheduler") if subcommand == "fit" else ("model",)  # fit restores all
        self.typed = typed_values(config, argv, groups)
        path = config.get("ckpt_path")
        if is_local_file(path):
            self._check_checkpoint(subcommand, str(path), config.model)

    def _check_checkpoint(self, subcommand: str, path: str, model: Any) -> None:
        from hyctas_lightning.checkpoints import read_checkpoint

        checkpoint = read_checkpoint(path)
        meta = check_checkpoint(checkpoint, path, model, subcommand == "fit")
        as_stored = getattr(module_class(model), "hparam_as_stored", lambda name, value: value)
        refuse_conflicts(path, subcommand, conflicts(checkpoint, self.typed, as_stored))
        self.checkpoint_meta = {"path": path, **meta}

    def before_instantiate_classes(self) -> None:
        from hyctas_lightning.errors import DeviceUnavailable

        config = self.config[self.subcommand] if self.subcommand else self.config
        accelerator = str(config.trainer.accelerator or "auto")
        if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise DeviceUnavailable(f"--trainer.accelerator {accelerator} asked for, but this machine has no usable "
                                    f"CUDA GPU; use --trainer.accelerator cpu (or auto)")
        root = config.trainer.default_root_dir or os.getcwd()
        loggers = config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init = getattr(logger, "init_args", None)
            if init is not None and "save_dir" in init and init.save_dir is None:
                init.save_dir = root

    def after_instantiate_classes(self) -> None:
        from lightning.fabric.plugins import TorchCheckpointIO

        from hyctas_lightning.training import AsyncAtomicCheckpointIO

        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own checkpoint writer
            self.trainer.strategy.checkpoint_io = AsyncAtomicCheckpointIO()
        if self.subcommand and self.config[self.subcommand].get("ckpt_path") == "last":
            self._resolve_last()
        self._check_class_count()

    def _resolve_last(self) -> None:
        """``--ckpt_path last``: the run's newest last checkpoint, checked as a named file is, and handed to the
        Trainer as that file; none is an error (Lightning would warn and train from scratch)."""
        path = str(last_checkpoint(self.trainer))
        self._check_checkpoint(self.subcommand, path, self.config[self.subcommand].model)
        self.config_init[self.subcommand]["ckpt_path"] = path

    def _check_class_count(self) -> None:
        """A ``--ckpt_path`` trained for other classes than the data's is refused before its weights are loaded."""
        from hyctas_lightning.errors import ClassCountError

        trained = checkpoint_classes(self.checkpoint_meta)
        data = getattr(self.datamodule, "num_classes", None)
        if trained is not None and data is not None and trained != data:
            raise ClassCountError(
                f"{self.checkpoint_meta['path']} was trained for {trained} classes, but the data "
                f"({type(self.datamodule).__name__}) has {data}: evaluate it on data with the same classes, or "
                f"train a new model on this data (fit without --ckpt_path)")


def run_lightning(args: Optional[List[str]]) -> int:
    """Run a Trainer subcommand; ``args`` None reads ``sys.argv``."""
    from hyctas_lightning.training import DivergenceGuard, RandomStateCheckpoint

    from . import tools_help

    os.environ.setdefault("WANDB_MODE", "offline")  # a selected WandbLogger logs locally unless asked to sync
    HyctasCLI(args=args, parser_class=HyctasParser,
              parser_kwargs={"description": f"hyctas-lightning. Trainer subcommands below; {tools_help()}"},
              save_config_kwargs={"overwrite": True},
              trainer_defaults={"callbacks": [DivergenceGuard(), RandomStateCheckpoint()]})  # in every run
    return 0
