"""Write an example of your own data: a folder of street scenes in the layout ``FolderDataModule`` reads by default,
with the masks in both styles (class ids and class colours), so the README's "Your own data" walkthrough runs on it.

    python tests/make_folder_dataset.py DIR [--train 12] [--val 4] [--size 64 96]

DIR/classes.yaml              the 8 class names and their colours
DIR/images/{train,val}/camK/scene_NNNN.jpg
DIR/masks/{train,val}/...png  class ids 0..7, 255 unlabelled (palette-indexed PNGs: they show in colour)
DIR/masks_rgb/{train,val}/... the same masks painted with the class colours, black unlabelled

The folder is written next to DIR and renamed into place when complete; an existing DIR is replaced only if this
script wrote it.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
from PIL import Image

from hyctas_lightning.data import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, render_scene

MARKER = "# example data written by tests/make_folder_dataset.py\n"
UNLABELLED_ROWS = 3  # the bottom rows are left unlabelled, as a camera's view of its own bonnet often is
BLACK = (0, 0, 0)


def classes_yaml() -> str:
    """The classes file: names in id order and one colour per class, as a user would write it."""
    names = "\n".join(f"  - {name}" for name in SYNTHETIC_CLASSES)
    colours = "\n".join(f"  - [{r}, {g}, {b}]   # {name}" for name, (r, g, b) in zip(SYNTHETIC_CLASSES,
                                                                                      SYNTHETIC_PALETTE))
    return f"{MARKER}classes:\n{names}\npalette:\n{colours}\n"


def write_sample(root: Path, split: str, name: str, seed: int, size: Tuple[int, int]) -> np.ndarray:
    """One scene: the image as JPEG, its ids as a palette-indexed PNG and its colours as an RGB PNG. Returns the
    ids (255 unlabelled)."""
    image, mask = render_scene(seed, size)
    mask[-UNLABELLED_ROWS:] = 255
    for folder in ("images", "masks", "masks_rgb"):
        (root / folder / split / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / split / f"{name}.jpg", quality=95)
    indexed = Image.fromarray(mask, mode="L").convert("P")
    table = [*[v for colour in SYNTHETIC_PALETTE for v in colour], *[0] * (768 - 3 * len(SYNTHETIC_PALETTE))]
    indexed.putpalette(table)
    indexed.save(root / "masks" / split / f"{name}.png")
    colours = np.array([*SYNTHETIC_PALETTE, *[BLACK] * (256 - len(SYNTHETIC_PALETTE))], np.uint8)
    Image.fromarray(colours[mask]).save(root / "masks_rgb" / split / f"{name}.png")
    return mask


def write_folder_dataset(root: Path, counts: Dict[str, int] | None = None, size: Sequence[int] = (64, 96),
                         seed: int = 0) -> Dict[str, np.ndarray]:
    """Write the example under ``root`` (replacing an example written there before) and return NAME -> ids of
    every sample, NAME as the data module reports it (``camK/scene_NNNN``)."""
    root = Path(root)
    if root.exists() and any(root.iterdir()) and not _written_here(root):
        raise FileExistsError(f"{root} exists and holds other files: choose a new folder for the example")
    counts = counts or {"train": 12, "val": 4}
    root.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    masks = {}
    for offset, (split, count) in enumerate(counts.items()):
        for k in range(count):
            name = f"cam{k % 2}/scene_{k:04d}"
            masks[f"{split}/{name}"] = write_sample(building, split, name, seed + 1000 * offset + k,
                                                    (int(size[0]), int(size[1])))
    (building / "classes.yaml").write_text(classes_yaml())
    if root.exists():
        shutil.rmtree(root)
    building.rename(root)
    return masks


def _written_here(root: Path) -> bool:
    classes = root / "classes.yaml"
    return classes.is_file() and classes.read_text().startswith(MARKER)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the folder to write (new, or an example written before)")
    parser.add_argument("--train", type=int, default=12, help="training scenes")
    parser.add_argument("--val", type=int, default=4, help="validation scenes")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 96], metavar=("H", "W"), help="scene size")
    args = parser.parse_args(argv)
    try:
        masks = write_folder_dataset(args.root, {"train": args.train, "val": args.val}, args.size)
    except FileExistsError as error:
        print(f"make_folder_dataset: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(masks)} scenes of {args.size[0]}x{args.size[1]} to {args.root}: images/, masks/ (class ids), "
          f"masks_rgb/ (class colours), classes.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
