"""``hyctas search --ckpt supernet.ckpt [--config search.yaml] [--devices N]``: NSGA-II (or another registered
strategy) over a trained supernet. The checkpoint carries the search space and the data module, so ``--ckpt`` is all
it needs; ``--config`` sets the ``search:`` section, ``--data`` overrides the data (e.g. its ``root``), ``--devices
N`` spreads the evaluations over N processes, one per GPU (latency timed on each process's own GPU)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser, Namespace

from .common import add_supernet_arguments, supernet_from_args


def add_arguments(parser: ArgumentParser) -> None:
    from hyctas_lightning.search import SearchConfig

    parser.add_argument("--config", action="config", help="YAML with search:, and optionally data: and space:")
    add_supernet_arguments(parser)
    parser.add_argument("--out", type=Optional[str], default=None,
                        help="run folder (default: runs/search/<run folder of the checkpoint>-<digest of its weights>)")
    parser.add_argument("--devices", type=int, default=1,
                        help="processes per host to spread the evaluations over, one per GPU (on a CPU: processes)")
    parser.add_argument("--num_nodes", type=int, default=1,
                        help="hosts, each running --devices processes (launched by torchrun or SLURM, see the README)")
    parser.add_argument("--wandb", type=bool, default=False,
                        help="also log to W&B, each generation as it completes (offline unless WANDB_MODE=online)")
    parser.add_dataclass_arguments(SearchConfig, "search")
    parser.add_argument("--space", type=Optional[dict], default=None,
                        help="the search space, if restated: must equal the checkpoint's")


def run(args: Namespace) -> int:
    from hyctas_lightning.checkpoints import weights_digest
    from hyctas_lightning.data import build_datamodule
    from hyctas_lightning.distributed import rank
    from hyctas_lightning.errors import ClassCountError
    from hyctas_lightning.search import run_search
    from hyctas_lightning.search.runner import check_space

    device = launch(args.device, args.devices, args.num_nodes)
    ckpt, supernet, meta, data_spec = supernet_from_args(args, (args.space or {}).get("plugins") or [])
    check_space(supernet.space, args.space)
    datamodule = build_datamodule(data_spec)
    classes = getattr(datamodule, "num_classes", supernet.num_classes)
    if classes != supernet.num_classes:
        raise ClassCountError(f"{ckpt} was trained for {supernet.num_classes} classes, but the data "
                              f"({type(datamodule).__name__}) has {classes}: search it on the data it was trained on "
                              f"(drop --data), or train a supernet on this data")
    run_folder = f"{ckpt.parent.parent.name}-{weights_digest(supernet.state_dict())[:8]}"  # one per supernet
    out = Path(args.out or Path("runs/search") / run_folder)
    logger = None
    if args.wandb and rank() == 0:
        import os

        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_MODE", "offline")  # logs locally (``wandb sync`` uploads) unless asked to sync
        logger = WandbLogger(project="hyctas", name=f"search-{out.name}", save_dir=str(out))
    result = run_search(supernet, datamodule, args.search, out, device=device, logger=logger,
                        show_progress=rank() == 0, ignore_index=(meta.get("data") or {}).get("ignore_index", 255))
    if result is None:  # a process other than the first: it evaluated, the first reports
        return 0
    print(f"\n{len(result.front)} non-dominated of {result.history[-1]['evaluations']} evaluated "
          f"({result.new_evaluations} new) -> {out}/pareto.json, {out}/topk/, {out}/pareto.png\n{result.table}")
    return 0


def launch(device: Optional[str], devices: int, num_nodes: int = 1) -> Optional[str]:
    """This process's device; with several processes, first start the others (Lightning Fabric's DDP launcher runs
    this same command once per device; under torchrun or SLURM they exist already) and join their process group."""
    import torch

    from hyctas_lightning.errors import check_device

    check_device(device)
    if devices < 1 or num_nodes < 1:
        raise ValueError(f"--devices and --num_nodes: at least 1, got {devices} and {num_nodes}")
    if devices * num_nodes == 1:
        return device
    if device is not None and torch.device(device).index is not None:
        raise ValueError(f"--device {device} names one GPU; with --devices {devices} give --device cuda (each "
                         f"process takes its own GPU) or leave --device out")
    from lightning.fabric import Fabric

    accelerator = "cpu" if device == "cpu" or (device is None and not torch.cuda.is_available()) else "cuda"
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy="ddp")
    fabric.launch()
    return str(fabric.device)
