"""``hyctas search --ckpt supernet.ckpt [--config configs/search.yaml]``: search a trained supernet."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from jsonargparse import ArgumentParser, Namespace

from hyctas_lightning.data.registry import build_datamodule
from hyctas_lightning.search_space import SearchSpace

from .config import SearchConfig
from .engine import NothingFeasible
from .runner import run_search

CHECKPOINT_KIND = "hyctas-supernet"


def load_supernet_checkpoint(path: Path) -> dict:
    """The checkpoint with a check that it is a supernet's (the search needs its space and data)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    meta = ckpt.get("hyctas") if isinstance(ckpt, dict) else None
    if not meta or meta.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path}: not a supernet checkpoint (no hyctas.kind = '{CHECKPOINT_KIND}'); pass the "
                         f"last.ckpt of `hyctas fit --config configs/supernet.yaml`, not a retrained network's")
    return ckpt


def check_space(ckpt_space: SearchSpace, config_space: Optional[dict]) -> None:
    """A config may restate the space, but only as the checkpoint has it."""
    if not config_space:
        return
    wanted = SearchSpace.from_dict({**ckpt_space.to_dict(), **config_space})
    differ = [k for k, v in wanted.to_dict().items() if ckpt_space.to_dict()[k] != v]
    if differ:
        details = ", ".join(f"{k}: config {wanted.to_dict()[k]} vs checkpoint {ckpt_space.to_dict()[k]}" for k in differ)
        raise ValueError(f"the config's search space differs from the checkpoint's ({details}); a supernet can only "
                         f"be searched in the space it was trained on: remove 'space:' or fix those fields")


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="hyctas search", description=__doc__, default_config_files=[])
    p.add_argument("--config", action="config", help="YAML with search:, and optionally data: and space:")
    p.add_argument("--ckpt", required=True, help="supernet checkpoint (last.ckpt of hyctas fit)")
    p.add_argument("--out", default=None, help="run folder (default: runs/search/<checkpoint name>)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--wandb", type=bool, default=False, help="also log the candidates and the front to W&B")
    p.add_dataclass_arguments(SearchConfig, "search")
    p.add_argument("--space", type=Optional[dict], default=None)
    p.add_argument("--data", type=Optional[dict], default=None, help="DataModule (class_path, init_args) override")
    return p


def main(argv: Sequence[str]) -> int:
    args: Namespace = parser().parse_args(list(argv))
    from hyctas_lightning.training import SupernetModule

    ckpt_path = Path(args.ckpt)
    ckpt = load_supernet_checkpoint(ckpt_path)
    meta = ckpt["hyctas"]
    space = SearchSpace.from_dict(meta["space"])
    check_space(space, args.space)
    config = SearchConfig(**vars(args.search)) if not isinstance(args.search, SearchConfig) else args.search
    data_spec = args.data or meta.get("data")
    if not data_spec:
        raise ValueError(f"{ckpt_path}: the checkpoint names no DataModule; give one with --data or data: in --config")
    module = SupernetModule.load_from_checkpoint(ckpt_path, map_location="cpu")
    out = Path(args.out or Path("runs/search") / ckpt_path.parent.parent.name)
    logger = None
    if args.wandb:
        from lightning.pytorch.loggers import WandbLogger

        logger = WandbLogger(project="hyctas", name=f"search-{out.name}", save_dir=str(out))
    try:
        result = run_search(module.supernet, build_datamodule(data_spec), config, out, device=args.device,
                            logger=logger, ignore_index=module.hparams.ignore_index)
    except NothingFeasible as e:
        print(f"hyctas search: {e}")
        return 3
    print(f"\n{len(result.front)} non-dominated of {result.history[-1]['evaluations']} evaluated "
          f"({result.new_evaluations} new) -> {out}/pareto.json, {out}/topk/, {out}/pareto.png\n{result.table}")
    return 0
