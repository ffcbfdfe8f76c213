"""Parameters and multiply-adds of networks (architecture files, presets or registered networks), counted on
the meta device, so any size costs neither memory nor a GPU."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from jsonargparse import ArgumentParser, Namespace

from .common import add_network_arguments


def add_arguments(parser: ArgumentParser) -> None:
    add_network_arguments(parser, checkpoints=False)
    parser.add_argument("--size", nargs=2, type=int, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")


def run(args: Namespace) -> int:
    from hyctas_lightning.evaluation import profile_model
    from hyctas_lightning.models import ChildNet, create_network

    rows = []
    for source, is_arch in [(a, True) for a in args.arch] + [(n, False) for n in args.network]:
        with torch.device("meta"):
            net = create_network(source, args.num_classes,
                                 **({"fch": args.fch, "output_stride": args.output_stride} if is_arch else {}))
        p = profile_model(net, args.size)
        arch = net.arch if isinstance(net, ChildNet) else None
        rows.append({"network": Path(source).stem if is_arch else source, "params_m": round(p.params_m, 3),
                     "macs_g": round(p.macs_g, 2), "size": list(p.size),
                     "branches": arch.num_branches if arch else None, "layers": arch.num_layers if arch else None,
                     "fch": arch.fch if arch else None, "output_stride": arch.output_stride if arch else None})
    if not rows:
        raise ValueError("nothing to profile: give --arch X.json (or a preset name) or --network NAME")
    if args.json:
        print("\n".join(json.dumps(r) for r in rows))
        return 0
    width = max(len(r["network"]) for r in rows + [{"network": "network"}])
    h, w = args.size
    print(f"{'network':<{width}}  branches  layers  fch  os  params (M)  mult-adds (G) @ {h}x{w}")
    for r in rows:
        cells = [str(r[k]) if r[k] is not None else "-" for k in ("branches", "layers", "fch", "output_stride")]
        print(f"{r['network']:<{width}}  {cells[0]:>8}  {cells[1]:>6}  {cells[2]:>3}  {cells[3]:>2}  "
              f"{r['params_m']:>10.3f}  {r['macs_g']:>13.2f}")
    return 0
