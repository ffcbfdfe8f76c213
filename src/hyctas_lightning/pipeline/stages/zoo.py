"""Stage ``zoo``: compact weights of the best searched network's best seed and of the reference baseline's, with
architecture JSON and metadata."""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict

from hyctas_lightning.checkpoints import save_compact
from hyctas_lightning.fileio import write_json

from .. import networks as nets
from ..context import RunContext
from .base import Stage

log = logging.getLogger(__name__)


class FillZoo(Stage):
    """Write ``zoo.out`` (default ``RUN/zoo``): ``PREFIXNAME.ckpt``, ``.json`` (metadata) and ``.arch.json``."""

    name = "zoo"
    reads = ("evaluate", "retrain")
    writes = ("zoo",)
    uses_gpus = False

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        return {"zoo": asdict(ctx.config.zoo), "evaluate": ctx.upstream("evaluate")}

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        c, reference = ctx.config.zoo, ctx.config.retrain.reference
        results = ctx.results()
        networks = {n.name: n for n in nets.networks_of(ctx, "retrain")}
        searched = [name for name, n in networks.items() if n.kind == "searched"]
        best = max(searched, key=lambda name: results["networks"][name]["miou_mean"])
        out = Path(c.out) if c.out else ctx.folder / "zoo"
        written = {}
        for name, role in ((best, "best searched network"), (reference, "reference baseline")):
            written[name] = zoo_entry(ctx, networks[name], results["networks"][name], role, out)
        ctx.save_results(zoo={"folder": str(out), "entries": written})
        return {"folder": str(out), "entries": written}


def zoo_entry(ctx: RunContext, network: nets.Network, result: Dict[str, Any], role: str,
              out: Path) -> Dict[str, Any]:
    """The network's best seed as compact weights, plus its architecture JSON (if it has one) and metadata.

    Args:
        ctx: the run.
        network: the retrained network.
        result: its ``results.json`` entry (per-seed mIoU, latency).
        role: why it is in the zoo, for the metadata.
        out: the zoo folder.
    """
    c = ctx.config
    seed = max(result["seeds"], key=lambda s: result["seeds"][s]["miou"])
    stem = f"{c.zoo.prefix}{network.name}"
    written = save_compact(nets.last_checkpoint(ctx, network, int(seed)), out / f"{stem}.ckpt", c.zoo.max_mib)
    files = {"checkpoint": f"{stem}.ckpt", "weights": written["hyctas"]["weights"]}
    arch = written["hyctas"]["network"].get("arch")
    if arch:
        write_json(out / f"{stem}.arch.json", arch)
        files["architecture"] = f"{stem}.arch.json"
    meta = {"name": network.name, "role": role, "kind": network.kind, "seed": int(seed),
            "split": c.evaluate.split, "miou": result["seeds"][seed]["miou"],
            "miou_per_seed": {s: v["miou"] for s, v in result["seeds"].items()},
            "miou_mean": result["miou_mean"], "params_m": result.get("params_m"),
            "macs_g": result.get("macs_g"), "latency_ms": result.get("latency"),
            "latency_device": result.get("device"), "network": written["hyctas"]["network"],
            "classes": written["hyctas"].get("classes"), "recipe": c.train.config,
            "recipe_args": [*c.train.args, *network.args], "run": str(ctx.folder), **files}
    write_json(out / f"{stem}.json", meta)
    log.info("[zoo] %s (%s, seed %s, %s weights) -> %s", network.name, role, seed, files["weights"], out)
    return {k: v for k, v in meta.items() if k in ("role", "seed", "miou", "checkpoint", "architecture", "weights")}
