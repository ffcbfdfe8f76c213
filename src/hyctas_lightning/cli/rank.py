"""``hyctas rank --ckpt supernet.ckpt [--references DIR | --train true]``: does the supernet rank? BN
recalibrated per sub-network, val mIoU of a fixed panel (largest, smallest, random sub-networks over 1, 2 and 3
branches), and Kendall tau / Spearman rho of the random members against the same architectures trained alone
(read from a reference folder, or trained under ``--recipe`` and cached in ``OUT/references``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

from jsonargparse import ArgumentParser, Namespace


def add_arguments(parser: ArgumentParser) -> None:
    from hyctas_lightning.training.ranking import StandaloneRecipe

    parser.add_argument("--config", action="config", help="YAML with any of the options below")
    parser.add_argument("--ckpt", required=True, help="supernet checkpoint (last.ckpt of hyctas fit)")
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
    parser.add_dataclass_arguments(StandaloneRecipe, "recipe")
    parser.add_argument("--data", type=Optional[dict], default=None,
                        help="DataModule (class_path, init_args) override, e.g. another root")
    parser.add_argument("--device", type=Optional[str], default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--plugins", type=List[str], default=[],
                        help="modules registering the checkpoint's own ops, imported first (only if you trust them)")


def run(args: Namespace) -> int:
    import torch

    from hyctas_lightning.errors import check_device
    from hyctas_lightning.models import load_supernet
    from hyctas_lightning.registry import import_plugins
    from hyctas_lightning.training.ranking import ReferenceCache, diagnose, ranking_panel

    check_device(args.device)
    import_plugins(args.plugins)
    ckpt = Path(args.ckpt)
    supernet, meta = load_supernet(ckpt)
    data_spec = args.data or meta.get("data")
    if not data_spec:
        raise ValueError(f"{ckpt}: the checkpoint names no DataModule; give one with --data")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out or Path("runs/rank") / ckpt.parent.parent.name)
    cache = ReferenceCache(out, args.recipe, data_spec) if args.train else None
    report = diagnose(supernet.to(device), data_spec, ranking_panel(supernet.space, args.random_members, args.seed),
                      (meta.get("data") or {}).get("ignore_index", 255), args.calibration_images, args.val_images,
                      args.seed, args.references, cache, accelerator="gpu" if device.type == "cuda" else "cpu")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ranking.json").write_text(json.dumps({"checkpoint": str(ckpt), **report.to_dict()}, indent=1) + "\n")
    print(f"{report.table()}\n-> {out}/ranking.json")
    return 0
