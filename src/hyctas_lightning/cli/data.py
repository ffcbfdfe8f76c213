"""``hyctas data check``: scan every sample of a dataset without training and print the split sizes, the class
pixel histogram and every problem found (exit status 1 when there are problems). ``--config`` takes data
blocks or whole training configs: only their ``data:`` section is read."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

PROG = "hyctas data check"
USAGE = ("usage: hyctas data check --config DATA.yaml [--config ...] [--num_workers N]\n"
         "       hyctas data check --data.class_path CLASS --data.init_args.root ROOT")


def add_arguments(parser: ArgumentParser) -> None:
    from hyctas_lightning.data import SegmentationDataModule

    parser.add_argument("--config", action=ActionConfigFile, help="YAML with a data: section (may repeat)")
    parser.add_argument("--data", type=SegmentationDataModule, required=True, help="the data module to scan")
    parser.add_argument("--num_workers", type=Optional[int], default=None,
                        help="scanning processes (default: the data module's num_workers)")


def prepare_argv(argv: Sequence[str]) -> List[str]:
    """Drop the ``check`` action and reduce every ``--config FILE`` to that file's ``data:`` section."""
    if list(argv[:1]) != ["check"]:
        raise ValueError(f"unknown action {list(argv[:1]) or '(none)'}\n{USAGE}")
    out, args = [], iter(argv[1:])
    for arg in args:
        if arg == "--config":
            out += ["--config", _data_section(next(args, ""))]
        elif arg.startswith("--config="):
            out += ["--config", _data_section(arg.split("=", 1)[1])]
        else:
            out.append(arg)
    return out


def _data_section(path: str) -> str:
    """The ``data:`` section of a config file, as a config string: full training configs work here too."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    if not isinstance(config, dict) or "data" not in config:
        raise ValueError(f"config {path} has no 'data:' section (class_path and init_args of a data module)")
    return json.dumps({"data": config["data"]})


def run(args: Namespace) -> int:
    from hyctas_lightning.data import check_data

    datamodule = args.data
    workers = datamodule.hparams.num_workers if args.num_workers is None else args.num_workers
    report = check_data(datamodule, workers)
    print(report.format())
    return 0 if report.ok else 1
