"""The one place that spells the ``hyctas`` sub-commands' arguments the pipeline runs: each function returns one
group of arguments, and a stage lists the groups in the order they override each other (later wins)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .jobs import hyctas_argv

Args = List[str]
PathLike = Union[str, Path]


def command(name: str, *groups: Sequence[str]) -> Args:
    """The command line of ``hyctas NAME`` followed by the argument groups, in order.

    Args:
        name: the sub-command (``fit``, ``test``, ``search``, ``bench``).
        *groups: argument lists, e.g. from the functions below or a config's own ``args``.
    """
    return hyctas_argv([name, *(a for group in groups for a in group)])


def configs(files: Sequence[PathLike]) -> Args:
    """``--config FILE`` for each file, later ones overriding earlier ones."""
    return [a for f in files for a in ("--config", str(f))]


def init_args(group: str, values: Dict[str, Any]) -> Args:
    """``--GROUP.init_args.KEY VALUE`` for each item: a string as it is, any other value as JSON.

    Args:
        group: ``data`` or ``model``.
        values: the arguments.
    """
    return [a for k, v in values.items() for a in (f"--{group}.init_args.{k}", v if isinstance(v, str) else
                                                                          json.dumps(v))]


def data(values: Dict[str, Any]) -> Args:
    """The pipeline's ``data:`` overrides of every ``hyctas fit``/``test``."""
    return init_args("data", values)


def model(network: Optional[str] = None, arch: Optional[PathLike] = None) -> Args:
    """Select a registered network or an architecture file as the model, the other set to null."""
    if network is not None:
        return init_args("model", {"arch": "null", "network": network})
    return init_args("model", {"network": "null", "arch": str(arch)})


def root(folder: PathLike) -> Args:
    """Where the run writes its checkpoints and logs."""
    return ["--trainer.default_root_dir", str(folder)]


def seed(value: int) -> Args:
    """``--seed_everything``: the seed of one training."""
    return ["--seed_everything", str(value)]


def devices(count: int) -> Args:
    """``--trainer.devices N`` on GPUs; nothing on a CPU (``count`` 0)."""
    return ["--trainer.devices", str(count)] if count else []


def resume(checkpoint: Path) -> Args:
    """``--ckpt_path`` of a checkpoint to continue from, if it exists."""
    return ["--ckpt_path", str(checkpoint)] if Path(checkpoint).exists() else []


def test_split(split: str) -> Args:
    """The split ``hyctas test`` evaluates."""
    return init_args("data", {"test_split": split})


def bench_network(network: str, registered: Sequence[str]) -> Args:
    """``hyctas bench`` arguments naming a registered network or an architecture file."""
    return ["--network", network] if network in registered else ["--arch", network]


def bench(size: Sequence[int], variants: Sequence[str], device: str, warmup: int, runs: int, out: Path) -> Args:
    """``hyctas bench``'s protocol and output folder."""
    return ["--size", *map(str, size), "--variants", *variants, "--device", device, "--warmup", str(warmup),
            "--runs", str(runs), "--out", str(out)]


def search(checkpoint: Path, config: Path, out: Path, data_spec: Dict[str, Any], processes: int) -> Args:
    """``hyctas search`` of a supernet checkpoint with a settings file, on the CPU (``processes`` 0) or spread
    over that many GPUs."""
    return ["--ckpt", str(checkpoint), "--config", str(config), "--out", str(out), "--data", json.dumps(data_spec),
            *(["--device", "cpu"] if not processes else []), *(["--devices", str(processes)] if processes > 1 else [])]
