"""``hyctas rank --ckpt supernet.ckpt [--references DIR | --train true] [--finetune.steps N]``: does the supernet
rank? BN recalibrated per sub-network (after a short training from the inherited weights with ``--finetune``), val
mIoU of a fixed panel (largest, smallest, random sub-networks over 1, 2 and 3 branches), and Kendall tau / Spearman
rho of the random members against the same architectures trained alone (read from a reference folder, or trained
under ``--recipe`` and cached in ``OUT/references``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser, Namespace

from .common import add_supernet_arguments, supernet_from_args


def add_arguments(parser: ArgumentParser) -> None:
    from hyctas_lightning.ranking import Finetune, StandaloneRecipe

    parser.add_argument("--config", action="config", help="YAML with any of the options below")
    add_supernet_arguments(parser)
    parser.add_argument("--out", type=Optional[str], default=None,
                        help="folder of ranking.json and trained references (default: runs/rank/<run folder>)")
    parser.add_argument("--random_members", type=int, default=12, help="random sub-networks in the panel")
    parser.add_argument("--seed", type=int, default=0, help="seed of the panel and of the calibration images")
    parser.add_argument("--calibration_images", type=int, default=64,
                        help="training images BN is recalibrated on for each sub-network")
    parser.add_argument("--val_images", type=Optional[int], default=None, help="validation images (default: all)")
    parser.add_argument("--references", type=Optional[str], default=None,
                        help="folder of standalone results (HASH.json with 'miou'), e.g. OUT/references/KEY")
    parser.add_argument("--train", type=bool, default=False,
                        help="train the random members that have no reference alone under --recipe (slow)")
    parser.add_argument("--finetune", type=Optional[Finetune], default=None,
                        help="the fine-tuned estimate: each member trains --finetune.steps steps from the inherited "
                             "weights before it is scored (e.g. --finetune.steps 100; default: the plain estimate)")
    parser.add_dataclass_arguments(StandaloneRecipe, "recipe")


def check_references(folder: Optional[str]) -> None:
    """A ``--references`` folder that does not exist is a mistake, not 'no references yet'; an empty one is said
    before the estimates are computed."""
    if folder is None:
        return
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"--references {folder}: no such folder; give the folder of HASH.json standalone "
                                f"results (OUT/references/KEY of a `hyctas rank --train true` run)")
    if not any(Path(folder).glob("*.json")):
        print(f"--references {folder} holds no standalone results (HASH.json with 'miou'): the supernet's estimates "
              f"only, no rank correlation; --train true trains the references")


def run(args: Namespace) -> int:
    import torch

    from hyctas_lightning.errors import check_device
    from hyctas_lightning.fileio import write_json
    from hyctas_lightning.ranking import ReferenceCache, diagnose
    from hyctas_lightning.search_space import ranking_panel
    from hyctas_lightning.training import train_references

    check_device(args.device)
    check_references(args.references)
    ckpt, supernet, meta, data_spec = supernet_from_args(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out or Path("runs/rank") / ckpt.parent.parent.name)
    report = diagnose(supernet.to(device), data_spec, ranking_panel(supernet.space, args.random_members, args.seed),
                      (meta.get("data") or {}).get("ignore_index", 255), args.calibration_images, args.val_images,
                      args.seed, [args.references] if args.references else [], finetune=args.finetune)
    if args.train:
        train_references(report, ReferenceCache(out, args.recipe, data_spec),
                         accelerator="gpu" if device.type == "cuda" else "cpu")
    write_json(out / "ranking.json", {"checkpoint": str(ckpt), **report.to_dict()})
    print(f"{report.table()}\n-> {out}/ranking.json")
    return 0
