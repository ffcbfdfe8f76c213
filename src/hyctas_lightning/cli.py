"""The ``hyctas`` command: a LightningCLI (fit/validate/test/predict with YAML configs) plus tools that need no
Trainer (``profile``, ``show``)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningCLI

from hyctas_lightning.search_space import Architecture, ArchitectureError

TOOLS_HELP = ("tools: 'hyctas profile --arch X.json --size H W', 'hyctas show --arch X.json [--out arch.png]', "
              "'hyctas data check --config X.yaml', 'hyctas search --ckpt supernet.ckpt [--config search.yaml]', "
              "'hyctas bench --arch X.json --size H W [--peers]', "
              "'hyctas export --arch X.json|--ckpt X.ckpt --out X.onnx'")


class HyctasCLI(LightningCLI):
    """LightningCLI with the dataset's class count linked into the model."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")


def _profile(argv: Sequence[str]) -> int:
    from hyctas_lightning.evaluation import profile_architecture

    parser = ArgumentParser(prog="hyctas profile", description="Parameters and multiply-adds of architectures.")
    parser.add_argument("--arch", nargs="+", required=True, help="architecture JSON file(s)")
    parser.add_argument("--size", nargs=2, type=int, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--num_classes", type=int, default=19)
    parser.add_argument("--fch", type=Optional[int], default=None, help="override the filter multiplier")
    parser.add_argument("--output_stride", type=Optional[int], default=None, help="override: 8 or 4")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args(list(argv))
    rows = []
    for path in args.arch:
        arch = Architecture.load(path)
        p = profile_architecture(arch, args.size, args.num_classes, args.fch, args.output_stride)
        rows.append({"arch": str(path), "params_m": round(p.params_m, 3), "macs_g": round(p.macs_g, 2),
                     "size": list(p.size), "branches": arch.num_branches, "layers": arch.num_layers,
                     "fch": args.fch or arch.fch, "output_stride": args.output_stride or arch.output_stride})
    if args.json:
        print("\n".join(json.dumps(r) for r in rows))
        return 0
    width = max(len(r["arch"]) for r in rows)
    print(f"{'architecture':<{width}}  branches  layers  fch  os  params (M)  mult-adds (G) @ {args.size[0]}x{args.size[1]}")
    for r in rows:
        print(f"{r['arch']:<{width}}  {r['branches']:>8}  {r['layers']:>6}  {r['fch']:>3}  {r['output_stride']:>2}  "
              f"{r['params_m']:>10.3f}  {r['macs_g']:>13.2f}")
    return 0


def _show(argv: Sequence[str]) -> int:
    from hyctas_lightning.viz import draw_architecture, format_architecture

    parser = ArgumentParser(prog="hyctas show", description="Print an architecture as a table and draw it.")
    parser.add_argument("--arch", required=True, help="architecture JSON file")
    parser.add_argument("--out", default=None, help="write a figure (png, pdf or svg)")
    args = parser.parse_args(list(argv))
    arch = Architecture.load(args.arch)
    print(format_architecture(arch))
    if args.out:
        draw_architecture(arch, args.out, title=Path(args.arch).stem)
        print(f"figure written to {args.out}")
    return 0


def _data(argv: Sequence[str]) -> int:
    """``hyctas data check``: scan a dataset for problems and print its class histogram (imports on use)."""
    from hyctas_lightning.data.check import main as data_main

    return data_main(argv)


def _search(argv: Sequence[str]) -> int:
    """``hyctas search --ckpt supernet.ckpt``: NSGA-II over a trained supernet (imports on use)."""
    from hyctas_lightning.search.cli import main as search_main

    return search_main(argv)


def _bench(argv: Sequence[str]) -> int:
    """``hyctas bench --arch X.json``: batch-1 latency, plain and optimised, against peers (imports on use)."""
    from hyctas_lightning.evaluation.bench import main as bench_main

    return bench_main(argv)


def _export(argv: Sequence[str]) -> int:
    """``hyctas export --arch X.json --out X.onnx``: BN-folded ONNX/TorchScript, verified (imports on use)."""
    from hyctas_lightning.deploy.export import main as export_main

    return export_main(argv)


TOOLS: dict[str, Callable[[Sequence[str]], int]] = {"profile": _profile, "show": _show, "data": _data,
                                                    "search": _search, "bench": _bench, "export": _export}


def main(argv: Optional[Sequence[str]] = None) -> Optional[int]:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in TOOLS:
        try:
            return TOOLS[args[0]](args[1:])
        except (ArchitectureError, FileNotFoundError, ValueError) as e:
            print(f"hyctas {args[0]}: error: {e}", file=sys.stderr)
            return 2
    os.environ.setdefault("WANDB_MODE", "offline")  # a selected WandbLogger logs locally unless asked to sync
    HyctasCLI(args=None if argv is None else args, parser_kwargs={"description": f"hyctas-lightning. Trainer subcommands below; {TOOLS_HELP}"},
              save_config_kwargs={"overwrite": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
