"""What ``--ckpt_path`` does to the options a user types, and where ``--ckpt_path last`` looks.

LightningCLI merges a checkpoint's hyper-parameters over the parsed config, and a resumed fit restores the
optimiser and the schedule from the checkpoint: a value typed on the command line for a stored setting would lose
without a word. hyctas decides per option instead:

- a setting the checkpoint does not store (``test_flip``, ``test_scales``, a supernet's ``val_random``,
  ``val_seed`` and ``calibration_images``; anything in ``trainer`` or ``data``) is the command line's: it is used;
- a stored setting (the network, the recipe: ``arch``, ``fch``, ``lr``..., and under ``fit`` the optimiser's and
  the schedule's arguments the restored state would overwrite) typed with another value than the checkpoint's is
  refused, naming each such option: a checkpoint is resumed or evaluated with the settings it was trained with.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml
from jsonargparse import Namespace

from hyctas_lightning.checkpoints import CheckpointError, plain

# what Lightning resolves itself (a file name of this kind is a path only if it exists)
TRAINER_PATHS = ("last", "best", "hpc")
LAST = re.compile(r"^last(-\d+)?\.ckpt$")  # Lightning's names of a ModelCheckpoint's last file


def plain_value(value: Any) -> Any:
    """Parsed config values as plain data: namespaces as dicts, tuples as lists."""
    return plain(value.as_dict() if isinstance(value, Namespace) else value)


def typed_keys(argv: Sequence[str], group: str) -> List[str]:
    """The init arguments of ``group`` (``model``, ``optimizer``, ``lr_scheduler``) given on the command line, as
    dotted keys: ``--model.init_args.lr 0.5`` and ``--model.lr=0.5`` give ``lr``, ``--model.init_args.space.layers
    8`` gives ``space.layers``, a mapping given whole (``--model.init_args '{lr: 0.5}'``) gives its keys.

    Args:
        argv: the command line after ``hyctas``.
        group: the config group.
    """
    keys: List[str] = []
    for k, token in enumerate(argv):
        name, has_value, value = token[2:].partition("=") if token.startswith("--") else ("", "", "")
        parts = name.split(".")
        if parts[0] != group:
            continue
        inner = parts[2:] if parts[1:2] == ["init_args"] else parts[1:]
        if inner and inner[0] not in ("class_path", "help", "dict_kwargs"):
            keys.append(".".join(inner))
        elif not inner:  # --model '{...}' or --model.init_args '{...}'
            mapping = _mapping(value if has_value else (argv[k + 1] if k + 1 < len(argv) else ""))
            keys += list((mapping.get("init_args") or {}) if parts[1:] == [] else mapping)
    return list(dict.fromkeys(keys))


def _mapping(text: str) -> Dict[str, Any]:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def lookup(data: Any, key: str) -> Tuple[bool, Any]:
    """(found, value) of dotted ``key`` in nested dicts."""
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def typed_values(config: Namespace, argv: Sequence[str], groups: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """``{group: {key: parsed value}}`` of the options typed on the command line (``typed_keys``), with the
    values as the parser typed them.

    Args:
        config: the subcommand's parsed config (before any checkpoint is merged into it).
        argv: the command line after ``hyctas``.
        groups: the config groups to look at.
    """
    out: Dict[str, Dict[str, Any]] = {}
    for group in groups:
        init = plain_value(getattr(config.get(group), "init_args", None)) or {}
        out[group] = {key: value for key in typed_keys(argv, group) for found, value in [lookup(init, key)] if found}
    return out


def stored_values(checkpoint: Dict[str, Any], group: str) -> Dict[str, Any]:
    """What a checkpoint holds for ``group``: the module's hyper-parameters, the first optimiser's first parameter
    group (``lr`` as configured, i.e. its ``initial_lr`` once a schedule has moved it), the first schedule's state.

    Args:
        checkpoint: the loaded checkpoint.
        group: ``model``, ``optimizer`` or ``lr_scheduler``.
    """
    if group == "model":
        return checkpoint.get("hyper_parameters") or {}
    if group == "optimizer":
        first = dict(((checkpoint.get("optimizer_states") or [{}])[0].get("param_groups") or [{}])[0])
        if "initial_lr" in first:
            first["lr"] = first["initial_lr"]
        return first
    return (checkpoint.get("lr_schedulers") or [{}])[0] if group == "lr_scheduler" else {}


def same(a: Any, b: Any) -> bool:
    """Equal as plain data; floats to rounding, and dicts on the keys both have (one side may fill defaults)."""
    a, b = plain(a), plain(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return all(same(a[k], b[k]) for k in a.keys() & b.keys())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _show(value: Any) -> str:
    text = "another value" if isinstance(value, dict) else repr(plain(value))
    return text if len(text) <= 40 else text[:37] + "..."


def conflicts(checkpoint: Dict[str, Any], typed: Dict[str, Dict[str, Any]],
              as_stored: Callable[[str, Any], Any]) -> List[str]:
    """``--OPTION typed (checkpoint: stored)`` for every typed option whose value the checkpoint stores otherwise.

    Args:
        checkpoint: the loaded checkpoint.
        typed: ``typed_values``' result for the groups that the checkpoint overrides.
        as_stored: turns a typed model argument into its stored form (``SegmentationModule.hparam_as_stored``).
    """
    found = []
    for group, values in typed.items():
        stored = stored_values(checkpoint, group)
        for key, value in values.items():
            held, old = lookup(stored, key)
            if held and not same(as_stored(key, value) if group == "model" else value, old):
                found.append(f"--{group}.init_args.{key} {_show(value)} (checkpoint: {_show(old)})")
    return found


def refuse_conflicts(path: str, subcommand: str, found: List[str]) -> None:
    """Raise ``ConfigError`` naming the options of ``found`` (see ``conflicts``), with what to do instead.

    Args:
        path: the checkpoint.
        subcommand: ``fit``, ``validate``, ``test`` or ``predict``.
        found: the conflicting options.
    """
    from hyctas_lightning.errors import ConfigError

    if not found:
        return
    why = ("resuming continues the checkpoint's run with its settings: drop these options, or start a new run in "
           "another folder without --ckpt_path" if subcommand == "fit" else
           "a checkpoint is evaluated with the network and settings it was trained with: drop these options "
           "(settings it does not store, such as test_flip and test_scales, may be given)")
    raise ConfigError(f"--ckpt_path {path} stores other values for options given on the command line: "
                      f"{'; '.join(found)}; {why}")


def checkpoint_dirs(trainer: Any) -> List[Path]:
    """The folders ``--ckpt_path last`` searches: each ModelCheckpoint's ``dirpath``, or where it will write
    (``checkpoints/`` in the first logger's run folder, or in ``default_root_dir`` without a logger)."""
    dirs = []
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "dirpath", None):
            dirs.append(Path(callback.dirpath))
        elif trainer.loggers:
            logger = trainer.loggers[0]
            version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
            dirs.append(Path(logger.save_dir or trainer.default_root_dir, str(logger.name), version, "checkpoints"))
        else:
            dirs.append(Path(trainer.default_root_dir, "checkpoints"))
    return list(dict.fromkeys(dirs))


def last_checkpoint(trainer: Any) -> Path:
    """The newest ``last.ckpt`` of the run (what Lightning's ``--ckpt_path last`` loads); a ``CheckpointError``
    saying where it looked when there is none, since training from scratch is not what ``last`` asks for.

    Args:
        trainer: the Trainer whose checkpoint callbacks say where the run's checkpoints are.
    """
    dirs = checkpoint_dirs(trainer)
    found = [p for d in dirs if d.is_dir() for p in d.iterdir() if LAST.match(p.name)]
    if found:
        return max(found, key=lambda p: p.stat().st_mtime)
    if not dirs:
        raise CheckpointError("--ckpt_path last: nothing to resume: the config has no checkpoint callback (e.g. "
                              "hyctas_lightning.training.LastCheckpoint), so no run of it has a last checkpoint; "
                              "give the checkpoint's path, or leave out --ckpt_path to train from scratch")
    raise CheckpointError(f"--ckpt_path last: nothing to resume: no last.ckpt in {', '.join(map(str, dirs))}; "
                          f"set --trainer.default_root_dir to the run to resume, or leave out --ckpt_path to train "
                          f"from scratch")


def is_local_file(path: Optional[str]) -> bool:
    """Whether ``--ckpt_path`` names a local file (not ``last``/``best``/``hpc``, a URL or a registry model)."""
    return bool(path) and str(path) not in TRAINER_PATHS and "://" not in str(path) and \
        not str(path).startswith("registry:")
