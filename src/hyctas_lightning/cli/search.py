"""``hyctas search --ckpt supernet.ckpt [--config search.yaml]``: NSGA-II (or another registered strategy) over a
trained supernet. The checkpoint carries the search space and the data module, so ``--ckpt`` is all it needs;
``--config`` sets the ``search:`` section, ``--data`` overrides the data (e.g. its ``root``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser, Namespace

EXIT_NOTHING_FEASIBLE = 3


def add_arguments(parser: ArgumentParser) -> None:
    from hyctas_lightning.search import SearchConfig

    parser.add_argument("--config", action="config", help="YAML with search:, and optionally data: and space:")
    parser.add_argument("--ckpt", required=True, help="supernet checkpoint (last.ckpt of hyctas fit)")
    parser.add_argument("--out", type=Optional[str], default=None,
                        help="run folder (default: runs/search/<run folder of the checkpoint>)")
    parser.add_argument("--device", type=Optional[str], default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--wandb", type=bool, default=False, help="also log the candidates and the front to W&B")
    parser.add_dataclass_arguments(SearchConfig, "search")
    parser.add_argument("--space", type=Optional[dict], default=None,
                        help="the search space, if restated: must equal the checkpoint's")
    parser.add_argument("--data", type=Optional[dict], default=None,
                        help="DataModule (class_path, init_args) override")


def run(args: Namespace) -> int:
    from hyctas_lightning.data import build_datamodule
    from hyctas_lightning.models import load_supernet
    from hyctas_lightning.search import NothingFeasible, run_search
    from hyctas_lightning.search.runner import check_space

    ckpt = Path(args.ckpt)
    supernet, meta = load_supernet(ckpt)
    check_space(supernet.space, args.space)
    data_spec = args.data or meta.get("data")
    if not data_spec:
        raise ValueError(f"{ckpt}: the checkpoint names no DataModule; give one with --data or data: in --config")
    out = Path(args.out or Path("runs/search") / ckpt.parent.parent.name)
    logger = None
    if args.wandb:
        from lightning.pytorch.loggers import WandbLogger

        logger = WandbLogger(project="hyctas", name=f"search-{out.name}", save_dir=str(out))
    try:
        result = run_search(supernet, build_datamodule(data_spec), args.search, out, device=args.device, logger=logger,
                            ignore_index=(meta.get("data") or {}).get("ignore_index", 255))
    except NothingFeasible as e:
        print(f"hyctas search: {e}")
        return EXIT_NOTHING_FEASIBLE
    print(f"\n{len(result.front)} non-dominated of {result.history[-1]['evaluations']} evaluated "
          f"({result.new_evaluations} new) -> {out}/pareto.json, {out}/topk/, {out}/pareto.png\n{result.table}")
    return 0
