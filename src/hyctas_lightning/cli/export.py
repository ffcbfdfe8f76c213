"""``hyctas export``: a network with BatchNorm folded (no auxiliary heads) as ONNX (``.onnx``), TorchScript
(``.pt``) or a torch.export program (``.pt2``), each run by its own runtime and checked against PyTorch."""
from __future__ import annotations

from typing import Optional

from jsonargparse import ArgumentParser, Namespace

from .common import add_network_arguments, networks_from_args


def add_arguments(parser: ArgumentParser) -> None:
    add_network_arguments(parser)
    parser.add_argument("--out", required=True, help="output file: .onnx, .pt/.ts or .pt2")
    parser.add_argument("--size", nargs=2, type=int, default=[1024, 2048], metavar=("H", "W"),
                        help="example input size (the fixed size unless --dynamic)")
    parser.add_argument("--dynamic", action="store_true", help="free height and width (batch 1)")
    parser.add_argument("--opset", type=Optional[int], default=None, help="ONNX opset (default: the exporter's)")


def run(args: Namespace) -> int:
    from hyctas_lightning.deploy import export_network

    nets = networks_from_args(args)
    if len(nets) != 1:
        raise ValueError("give exactly one of --arch X.json, --ckpt X.ckpt or --network NAME")
    (name, net), = nets.items()
    result = export_network(net, args.out, args.size, args.dynamic, args.opset)
    h, w = args.size
    shape = "1 x 3 x H x W (dynamic)" if args.dynamic else f"1 x 3 x {h} x {w}"
    print(f"exported {name} to {result.path} ({result.format}, {result.path.stat().st_size / 2**20:.1f} MiB): "
          f"input 'image' {shape}, output 'logits'; {result.folded} BatchNorms folded; "
          f"relative error (L2) against PyTorch {result.rel_err:.1e}")
    return 0
