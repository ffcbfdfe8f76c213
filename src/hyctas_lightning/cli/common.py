"""Argument groups shared by several tools."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


def add_supernet_arguments(parser: ArgumentParser) -> None:
    """What the tools that query a trained supernet share: the checkpoint, a data override, plugins, the device."""
    parser.add_argument("--ckpt", required=True, help="supernet checkpoint (last.ckpt of hyctas fit)")
    parser.add_argument("--data", type=Optional[dict], default=None,
                        help="DataModule (class_path, init_args) override, e.g. another root")
    parser.add_argument("--plugins", type=List[str], default=[],
                        help="modules registering the checkpoint's own ops, imported first (only if you trust them)")
    parser.add_argument("--device", type=Optional[str], default=None, help="cuda or cpu (default: cuda if available)")


def supernet_from_args(args: Namespace, plugins: Sequence[str] = ()) -> Tuple[Path, nn.Module, Dict[str, Any],
                                                                                  Dict[str, Any]]:
    """The checkpoint path, the supernet, its metadata and the data spec (``--data`` or the checkpoint's), after
    importing ``--plugins`` and ``plugins``."""
    from hyctas_lightning.models import load_supernet
    from hyctas_lightning.registry import import_plugins

    import_plugins(list(args.plugins) + list(plugins))
    ckpt = Path(args.ckpt)
    supernet, meta = load_supernet(ckpt)
    data_spec = args.data or meta.get("data")
    if not data_spec:
        raise ValueError(f"{ckpt}: the checkpoint names no DataModule; give one with --data or data: in --config")
    return ckpt, supernet, meta, data_spec
