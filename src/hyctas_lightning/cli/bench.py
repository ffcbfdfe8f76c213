"""``hyctas bench``: batch-1 latency (the paper's protocol: CUDA events, warm-up, median) and FPS of networks,
plain and along the optimised inference path (BN folding, fp16/bf16, channels-last, torch.compile, CUDA graphs),
optionally against torchvision's LRASPP- and DeepLabV3-MobileNetV3-Large, at one or several sizes and, with
``--repeat K``, K interleaved times over so that speed-ups come with their spread."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import List, Optional, Tuple

from jsonargparse import ArgumentParser, Namespace

from hyctas_lightning.evaluation.bench import CPU_VARIANTS, GPU_VARIANTS, PEERS

from .common import add_network_arguments, networks_from_args


def add_arguments(parser: ArgumentParser) -> None:
    add_network_arguments(parser)
    parser.add_argument("--size", nargs="+", type=int, default=[1024, 2048], metavar="H W",
                        help="image height and width; several H W pairs time every size in turn")
    parser.add_argument("--peers", action="store_true",
                        help=f"also time {' and '.join(PEERS)} (from scratch); speed-ups are taken over {PEERS[0]}")
    parser.add_argument("--variants", nargs="+", default=[],
                        help=f"DTYPE[-fold][-cl][-compile][-graph]; default on GPU {' '.join(GPU_VARIANTS)}, "
                             f"on CPU {' '.join(CPU_VARIANTS)}")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--warmup", type=int, default=50, help="untimed passes")
    parser.add_argument("--runs", type=int, default=100, help="timed passes; the median counts")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the whole comparison this many times in one process, the networks interleaved; "
                             "reports the median repeat and the median and range of the per-repeat speed-ups")
    parser.add_argument("--out", type=Optional[str], default=None,
                        help="folder for bench.md and bench.json (with several sizes, one sub-folder HxW per size)")
    parser.add_argument("--json", type=Optional[str], default=None,
                        help="file for the comparison: {gpu, command, size, rows, speedups} (a list of them, one "
                             "per size, with several sizes)")


def sizes_of(values: List[int]) -> List[Tuple[int, int]]:
    """``--size`` as (H, W) pairs.

    Args:
        values: the numbers given, H W [H W ...].
    """
    if len(values) % 2 or any(v < 1 for v in values):
        raise ValueError(f"--size: give positive H W pairs (e.g. --size 1024 2048 360 480), got {values}")
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


def check_outputs(out: Optional[str], json_file: Optional[str]) -> None:
    """Refuse outputs that could not be written before anything is timed; create the folders they need.

    Args:
        out: ``--out``, a folder.
        json_file: ``--json``, a file.
    """
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise NotADirectoryError(f"--out {out} is a file: give a folder (bench.md and bench.json are written into it)")
    if json_file is not None and Path(json_file).is_dir():
        raise IsADirectoryError(f"--json {json_file} is a folder: give a file, e.g. {Path(json_file) / 'bench.json'}")
    for option, path, folder in (("--out", out, out), ("--json", json_file, json_file and Path(json_file).parent)):
        if path is not None:
            blocking = next((p for p in (Path(folder), *Path(folder).parents) if p.exists() and not p.is_dir()), None)
            if blocking is not None:
                raise NotADirectoryError(f"{option} {path}: {blocking} is a file, not a folder; choose another path")
            Path(folder).mkdir(parents=True, exist_ok=True)


def command_line(args: Namespace) -> str:
    """The ``hyctas bench`` command that repeats this measurement, as results files record it.

    Args:
        args: the parsed arguments.
    """
    words = ["hyctas", "bench"]
    for option in ("arch", "network", "ckpt", "plugins", "variants"):
        if getattr(args, option, None):
            words += [f"--{option}", *map(str, getattr(args, option))]
    for option in ("num_classes", "fch", "output_stride", "device", "warmup", "runs", "repeat"):
        if getattr(args, option) is not None:
            words += [f"--{option}", str(getattr(args, option))]
    words += ["--size", *map(str, args.size)] + (["--peers"] if args.peers else [])
    return shlex.join(words)


def run(args: Namespace) -> int:
    from hyctas_lightning.errors import check_device
    from hyctas_lightning.evaluation.bench import bench
    from hyctas_lightning.models import create_network
    from hyctas_lightning.pipeline.manifest import write_json

    check_device(args.device)
    sizes = sizes_of(args.size)
    if args.repeat < 1:
        raise ValueError(f"--repeat: at least 1, got {args.repeat}")
    check_outputs(args.out, args.json)
    nets = networks_from_args(args)
    num_classes = getattr(next(iter(nets.values())), "num_classes", args.num_classes)
    peers = {name: create_network(name, num_classes) for name in PEERS} if args.peers else None
    command, comparisons = command_line(args), []
    for size in sizes:
        report = bench(nets, size, args.variants, peers, args.device, args.warmup, args.runs, args.repeat)
        print(f"\n{report.markdown()}")
        comparisons.append(report.comparison(command, PEERS[0] if args.peers else None))
        if args.out:
            md, js = report.write(Path(args.out) / (f"{size[0]}x{size[1]}" if len(sizes) > 1 else ""))
            print(f"\nwritten: {md}, {js}")
    if args.json:
        write_json(Path(args.json), comparisons[0] if len(sizes) == 1 else comparisons)
        print(f"written: {args.json}")
    return 0
