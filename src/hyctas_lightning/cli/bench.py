"""``hyctas bench``: batch-1 latency (the paper's protocol: CUDA events, warm-up, median) and FPS of networks,
plain and along the optimised inference path (BN folding, fp16/bf16, channels-last, torch.compile, CUDA graphs),
optionally against torchvision's LRASPP- and DeepLabV3-MobileNetV3-Large."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser, Namespace

from hyctas_lightning.evaluation.bench import CPU_VARIANTS, GPU_VARIANTS, PEERS

from .common import add_network_arguments, networks_from_args


def add_arguments(parser: ArgumentParser) -> None:
    add_network_arguments(parser)
    parser.add_argument("--size", nargs=2, type=int, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--peers", action="store_true", help=f"also time {' and '.join(PEERS)} (from scratch)")
    parser.add_argument("--variants", nargs="+", default=[],
                        help=f"DTYPE[-fold][-cl][-compile][-graph]; default on GPU {' '.join(GPU_VARIANTS)}, "
                             f"on CPU {' '.join(CPU_VARIANTS)}")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--warmup", type=int, default=50, help="untimed passes")
    parser.add_argument("--runs", type=int, default=100, help="timed passes; the median counts")
    parser.add_argument("--out", type=Optional[str], default=None, help="folder for bench.md and bench.json")


def run(args: Namespace) -> int:
    from hyctas_lightning.errors import check_device
    from hyctas_lightning.evaluation.bench import bench
    from hyctas_lightning.models import create_network

    check_device(args.device)
    nets = networks_from_args(args)
    num_classes = getattr(next(iter(nets.values())), "num_classes", args.num_classes)
    peers = {name: create_network(name, num_classes) for name in PEERS} if args.peers else None
    report = bench(nets, args.size, args.variants, peers, args.device, args.warmup, args.runs)
    print(f"\n{report.markdown()}")
    if args.out:
        md, js = report.write(Path(args.out))
        print(f"\nwritten: {md}, {js}")
    return 0
