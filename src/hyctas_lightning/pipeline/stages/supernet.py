"""Stage ``supernet``: ``hyctas fit`` of the supernet config, resumed from ``last.ckpt``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from hyctas_lightning.checkpoints import SUPERNET_KIND, read_checkpoint
from hyctas_lightning.training.curves import last_value, read_curves

from .. import commands
from ..context import RunContext
from ..jobs import Job
from ..manifest import PipelineError, file_digest
from .base import Stage


class TrainSupernet(Stage):
    """Train (or continue training) the supernet on its GPUs; record its checkpoint, classes, data and the
    validation and throughput it logged."""

    name = "supernet"
    writes = ("classes", "supernet")

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        c = ctx.config.supernet
        return {"config": {f: file_digest(Path(f)) for f in c.config}, "args": c.args, "devices": c.devices}

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        c = ctx.config.supernet
        out = ctx.folder / "supernet"
        last = out / "checkpoints" / "last.ckpt"
        gpus = ctx.gpus[: c.devices]
        argv = commands.command("fit", commands.configs(c.config), commands.root(out), commands.data(ctx.config.data),
                                commands.devices(len(gpus)), c.args, commands.resume(last))
        ctx.using(len(gpus))
        ctx.run_job(Job("supernet", argv, out / "fit.log", "supernet", out), gpus)
        if not last.exists():
            raise PipelineError(f"stage 'supernet': {last} was not written; the config needs a ModelCheckpoint with "
                                f"save_last: true (see configs/camvid/supernet.yaml)")
        meta = read_checkpoint(last, SUPERNET_KIND)["hyctas"]
        curves = read_curves(out, recursive=False)
        data = meta.get("data") or {}
        outputs = {"checkpoint": ctx.rel(last), "sha256": file_digest(last), "num_classes": meta["num_classes"],
                   "classes": data.get("classes"), "data": {k: data[k] for k in ("class_path", "init_args")
                                                            if k in data},
                   "images_per_s": last_value(curves, ctx.config.train.throughput_metrics),
                   "val": {k: v.last for k, v in curves.items() if k.startswith("val/")}}
        ctx.save_results(classes=outputs["classes"], supernet={k: outputs[k] for k in ("images_per_s", "val")})
        return outputs

    def products(self, ctx: RunContext) -> List[Path]:
        return [ctx.folder / ctx.manifest.outputs(self.name)["checkpoint"]]
