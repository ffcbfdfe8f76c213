"""Print an architecture (a JSON file or a preset name) as a table and draw it like the paper's figure 4."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser, Namespace


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, help="architecture JSON file or preset name")
    parser.add_argument("--out", type=Optional[str], default=None, help="write a figure (png, pdf or svg)")


def run(args: Namespace) -> int:
    from hyctas_lightning.models import load_architecture
    from hyctas_lightning.viz import draw_architecture, format_architecture

    arch = load_architecture(args.arch)
    print(format_architecture(arch))
    if args.out:
        draw_architecture(arch, args.out, title=Path(args.arch).stem)
        print(f"figure written to {args.out}")
    return 0
