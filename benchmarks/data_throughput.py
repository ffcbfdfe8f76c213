"""Training-pipeline throughput of a dataset: images per second out of the train DataLoader (decode, augment,
collate), i.e. how many images a second the loaders can feed a GPU.

    python benchmarks/data_throughput.py --dataset camvid --root ../shared/datasets/camvid --workers 2

Iterates the train loader for ``--warmup`` batches (worker start-up, page cache), then times ``--batches``
batches; epochs restart as needed. Transforms are the dataset's defaults unless ``--crop`` is given.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from typing import Iterator

from torch.utils.data import DataLoader

from hyctas_lightning.data import DATASETS, SegmentationDataModule, TransformConfig


def endless(loader: DataLoader) -> Iterator[dict]:
    """Batches across as many epochs as needed (persistent workers keep the restart cheap)."""
    while True:
        yield from loader


def build(args: argparse.Namespace) -> SegmentationDataModule:
    module = DATASETS.get(args.dataset)
    transforms = module.default_transforms
    if args.crop:
        transforms = TransformConfig(**{**vars(transforms), "crop_size": tuple(args.crop)})
    return module(root=args.root, batch_size=args.batch_size, num_workers=args.workers, transforms=transforms,
                  persistent_workers=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="camvid", help=f"registered name: {', '.join(DATASETS.names())}")
    parser.add_argument("--root", default="../shared/datasets/camvid")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--crop", nargs=2, type=int, metavar=("H", "W"), help="override the default crop")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--batches", type=int, default=50, help="timed batches")
    args = parser.parse_args()
    dm = build(args)
    batches = endless(dm.train_dataloader())
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()
    images = sum(len(next(batches)["name"]) for _ in range(args.batches))
    seconds = time.perf_counter() - start
    crop = dm.transforms.crop_size
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"{'dataset':<10}{'workers':>8}{'cpus':>6}{'batch':>7}{'crop':>10}{'images':>8}{'seconds':>9}{'img/s':>9}")
    print(f"{args.dataset:<10}{args.workers:>8}{os.cpu_count():>6}{args.batch_size:>7}"
          f"{f'{crop[0]}x{crop[1]}' if crop else 'whole':>10}{images:>8}{seconds:>9.2f}{images / seconds:>9.1f}")


if __name__ == "__main__":
    main()
