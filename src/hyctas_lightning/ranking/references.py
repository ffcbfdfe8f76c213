"""Standalone references: the mIoU each panel member reaches trained alone under one short, fixed recipe, cached on
disk keyed by architecture hash, recipe and data, so the check is cheap to repeat against every new supernet
(``training.standalone`` trains them)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from hyctas_lightning.data.registry import LOADER_ONLY
from hyctas_lightning.fileio import read_json, write_json
from hyctas_lightning.search_space import Architecture


@dataclass(frozen=True)
class StandaloneRecipe:
    """One short, fixed training of a panel member alone, from scratch, with ``SegmentationModule``. The defaults
    are the CamVid retraining recipe (``configs/camvid/retrain.yaml``): SGD momentum 0.9, poly learning rate from
    0.05, weight decay 5e-4, plain cross-entropy, no warm-up, clipping or auxiliary heads. (Gradient clipping at
    1.0 with bootstrapped cross-entropy left the synthetic references at half the mIoU the same networks reach
    without them in the same number of steps, which ranks how fast networks start, not where they go.)

    Args:
        steps: optimiser steps.
        batch_size: images per step (None: the data module's).
        lr: peak learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        warmup_iters: linear warm-up steps.
        bootstrap_ratio: hardest fraction of pixels in the loss (None: plain cross-entropy).
        aux_weight: weight of auxiliary heads (0: none).
        gradient_clip: gradient norm clipping (None: off).
        precision: Lightning precision (``32-true``, ``bf16-mixed``, ...).
        seed: seed of initialisation and data order.
        checkpoint_every: steps between the checkpoints an interrupted training resumes from (not part of the
            recipe's identity).
    """

    steps: int = 300
    batch_size: Optional[int] = None
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 0
    bootstrap_ratio: Optional[float] = None
    aux_weight: float = 0.0
    gradient_clip: Optional[float] = None
    precision: str = "32-true"
    seed: int = 0
    checkpoint_every: int = 100

    def identity(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "checkpoint_every"}


def folder_fingerprint(root: str | Path) -> str:
    """What a data folder holds, not where it is: a hash of its top-level entries (each file's name and size,
    each subfolder's name and entry count), so the same data set copied to another machine or path keeps its
    references and another one at the same path does not; the path itself when it does not exist.

    Args:
        root: the data set's folder.
    """
    folder = Path(root)
    if not folder.is_dir():
        return str(root)
    entries = sorted((p.name, sum(1 for _ in p.iterdir()) if p.is_dir() else p.stat().st_size)
                     for p in folder.iterdir() if not p.name.startswith("."))
    return "sha1:" + hashlib.sha1(json.dumps(entries).encode()).hexdigest()[:16]


def data_identity(spec: Dict[str, Any]) -> Dict[str, Any]:
    """What in a data spec changes the result of training: not worker counts or memory pinning, and the data
    folder by its content (:func:`folder_fingerprint`), not its path.

    Args:
        spec: ``class_path``/``init_args`` of a data module.
    """
    args = {k: v for k, v in spec.get("init_args", {}).items() if k not in LOADER_ONLY and not k.startswith("_")}
    if isinstance(args.get("root"), (str, Path)):
        args["root"] = folder_fingerprint(args["root"])
    return {"class_path": spec["class_path"], "init_args": args}


class ReferenceCache:
    """Standalone results of one recipe on one data set: ``ROOT/references/KEY/HASH.json`` (plus the training
    run folder ``WORK/references/KEY/HASH/`` an interrupted training resumes from), KEY hashing recipe and data
    identity. Results and run folders may live apart, so the results (small JSON) can be committed alone.

    Args:
        root: folder of the results.
        recipe: the standalone recipe.
        data_spec: ``class_path``/``init_args`` of the data module (a supernet checkpoint's ``hyctas.data``).
        work: folder of the training runs (checkpoints); None: ``root``.
    """

    def __init__(self, root: str | Path, recipe: StandaloneRecipe, data_spec: Dict[str, Any],
                 work: Optional[str | Path] = None) -> None:
        self.recipe = recipe
        self.data_spec = data_spec
        identity = {"recipe": recipe.identity(), "data": data_identity(data_spec)}
        self.key = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
        self.dir = Path(root) / "references" / self.key
        self.work = Path(work or root) / "references" / self.key
        self.identity = identity

    def path(self, arch: Architecture) -> Path:
        return self.dir / f"{arch.hash}.json"

    def get(self, arch: Architecture) -> Optional[Dict[str, Any]]:
        return read_json(self.path(arch), None)

    def put(self, arch: Architecture, result: Dict[str, Any]) -> None:
        """Record ``arch``'s result (atomically: processes training other members share the folder)."""
        write_json(self.dir / "identity.json", self.identity, default=str)
        write_json(self.path(arch), {**result, "arch": arch.to_dict()})

    def run_dir(self, arch: Architecture) -> Path:
        return self.work / arch.hash


def load_references(folder: str | Path) -> Dict[str, float]:
    """``{architecture hash: standalone mIoU}`` of every finished result in a reference folder (none while it does
    not exist yet); a file that is not a JSON object raises an error naming it.

    Args:
        folder: a reference folder (``ROOT/references/KEY``), or any folder of ``HASH.json`` files with ``miou``.
    """
    results = {}
    for path in sorted(Path(folder).glob("*.json")):
        entry = read_json(path)
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: not a reference result (a JSON object with 'miou'); remove it from the "
                             f"reference folder")
        if "miou" in entry:
            results[path.stem] = float(entry["miou"])
    return results
