"""Argument groups shared by several tools."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from jsonargparse import ArgumentParser, Namespace
from torch import nn


def add_network_arguments(parser: ArgumentParser, checkpoints: bool = True) -> None:
    """Where networks come from: architecture files or presets, registered names, retrain checkpoints."""
    parser.add_argument("--arch", nargs="+", default=[],
                        help="architecture JSON file(s) or preset name(s) (hyctas_s, hyctas_m, hyctas_l, ...)")
    parser.add_argument("--network", nargs="+", default=[],
                        help="registered network name(s), e.g. lraspp_mobilenet_v3_large (see list_networks())")
    if checkpoints:
        parser.add_argument("--ckpt", nargs="+", default=[],
                            help="retrain checkpoint(s) of `hyctas fit` (trained networks)")
    parser.add_argument("--num_classes", type=int, default=19, help="classes of --arch/--network networks")
    parser.add_argument("--fch", type=Optional[int], default=None, help="override the filter multiplier of --arch")
    parser.add_argument("--output_stride", type=Optional[int], default=None, help="override for --arch: 8 or 4")
    parser.add_argument("--plugins", nargs="+", default=[],
                        help="modules to import first (your own registered networks or ops)")


def networks_from_args(args: Namespace) -> Dict[str, nn.Module]:
    """Networks by display name: fresh ones from --arch (with the size overrides) and --network, trained ones from
    --ckpt."""
    from hyctas_lightning.models import create_network, load_network
    from hyctas_lightning.registry import import_plugins

    import_plugins(args.plugins)
    ckpts = getattr(args, "ckpt", [])
    if not (args.arch or args.network or ckpts):
        raise ValueError("nothing to run: give --arch X.json (or a preset name), --network NAME or --ckpt X.ckpt")
    nets = {Path(a).stem: create_network(a, args.num_classes, fch=args.fch, output_stride=args.output_stride)
            for a in args.arch}
    for path in ckpts:
        net, meta = load_network(path)
        nets[f"{meta['name']} ({Path(path).name})"] = net
    nets.update({n: create_network(n, args.num_classes) for n in args.network})
    return nets
