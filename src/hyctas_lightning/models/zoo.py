"""Trained weights by name, timm's ``name.tag`` scheme: the model zoo's ``ZOO/TAG/NAME.ckpt`` is the network
``NAME.TAG`` (``model_zoo/camvid/searched_camvid.ckpt`` is ``searched_camvid.camvid``), which ``list_networks()``
lists and ``create_network("searched_camvid.camvid", pretrained=True)`` builds with its weights.

The zoo folders are those in ``$HYCTAS_MODEL_ZOO`` (separated like ``PATH``), else the source tree's
``model_zoo/``: a compact retrain checkpoint carries everything needed to rebuild its network (architecture or
registered name, class count, class names, palette), so the folders hold nothing else the zoo needs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ZOO_ENV = "HYCTAS_MODEL_ZOO"
SOURCE_ZOO = Path(__file__).resolve().parents[3] / "model_zoo"  # a source checkout's; absent in an installed wheel


def zoo_folders() -> List[Path]:
    """The folders searched for ``TAG/NAME.ckpt``: ``$HYCTAS_MODEL_ZOO``'s, else the source tree's
    ``model_zoo/`` (if it exists)."""
    listed = os.environ.get(ZOO_ENV)
    if listed is not None:
        return [Path(p) for p in listed.split(os.pathsep) if p]
    return [SOURCE_ZOO] if SOURCE_ZOO.is_dir() else []


def zoo_weights() -> Dict[str, Path]:
    """``{NAME.TAG: checkpoint}`` of every checkpoint in the zoo folders (the first folder wins a name)."""
    found: Dict[str, Path] = {}
    for folder in zoo_folders():
        for path in sorted(folder.glob("*/*.ckpt")):
            found.setdefault(f"{path.stem}.{path.parent.name}", path)
    return found


def split_tag(name: str) -> Tuple[str, Optional[str]]:
    """``("searched_camvid", "camvid")`` of ``searched_camvid.camvid``; no tag without a dot.

    Args:
        name: a network name, with or without its tag.
    """
    base, dot, tag = name.rpartition(".")
    return (base, tag) if dot and base else (name, None)


def zoo_checkpoint(name: str) -> Optional[Path]:
    """The zoo checkpoint of ``NAME.TAG``, or of ``NAME`` alone when one tag (the first, sorted) has it; None when
    the zoo has no network of that name. A known name with an unknown tag is an error listing the name's tags.

    Args:
        name: ``NAME.TAG`` or ``NAME``.
    """
    weights = zoo_weights()
    if name in weights:
        return weights[name]
    base, tag = split_tag(name)
    tags = sorted(t for t in (split_tag(w)[1] for w in weights if split_tag(w)[0] == base) if t)
    if tag is None and tags:
        return weights[f"{name}.{tags[0]}"]
    if tags:
        raise ValueError(f"no weights '{name}' in the model zoo: '{base}' has the tag(s) {', '.join(tags)} "
                         f"({', '.join(f'{base}.{t}' for t in tags)})")
    return None


__all__ = ["ZOO_ENV", "split_tag", "zoo_checkpoint", "zoo_folders", "zoo_weights"]
