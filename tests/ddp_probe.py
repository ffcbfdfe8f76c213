"""A callback for the multi-process tests: each training process writes what it did to ``OUT/rank{R}.json`` (the
sub-networks its supernet ran in training mode, step by step; a digest of its weights at the end; the metrics it
logged after each validation) and process 0 the BatchNorm calibration batches (the same on every process)."""
import hashlib
import json
from pathlib import Path

import lightning as L
import torch


class Probe(L.Callback):
    """Args:
        out: folder of the records."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.record = {"trained": {}, "val": []}

    def on_train_start(self, trainer, pl_module):
        forward = pl_module.supernet.forward

        def recording(images, arch):
            if pl_module.supernet.training and torch.is_grad_enabled():
                self.record["trained"].setdefault(str(trainer.global_step), []).append(arch.hash)
            return forward(images, arch)

        pl_module.supernet.forward = recording

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self.record["val"].append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
        if trainer.is_global_zero:  # the same images on every process
            torch.save(pl_module._calibration, self.out / "calibration.pt")

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for name, p in sorted(pl_module.named_parameters()):
            digest.update(name.encode() + p.detach().cpu().numpy().tobytes())
        self.record["weights"] = digest.hexdigest()
        self.record["world_size"] = trainer.world_size
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))
