"""Evaluating a candidate through the trained supernet (paper section 4.2, 'Search'): parameters and
multiply-adds, latency of its ChildNet at the deployment resolution, BatchNorm recalibration on training
images, mIoU on validation images."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence, Tuple

import lightning as L
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from hyctas_lightning.evaluation import profile_architecture
from hyctas_lightning.evaluation.batchnorm import recalibrate_bn
from hyctas_lightning.evaluation.bench import Variant, optimise
from hyctas_lightning.evaluation.latency import measure_latency
from hyctas_lightning.models import ChildNet, SuperNet
from hyctas_lightning.search_space import Architecture

from .config import SearchConfig
from .engine import Measurement


@contextmanager
def _timer(timing: Dict[str, float], part: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    timing[part] = timing.get(part, 0.0) + time.perf_counter() - start


def collect_images(datamodule: L.LightningDataModule, split: str, limit: int | None, seed: int,
                   with_masks: bool) -> List:
    """Batches of a split, up to ``limit`` images, held in memory for every candidate (drawn once, seeded)."""
    datamodule.setup("fit" if split == "train" else "validate")
    torch.manual_seed(seed)
    loader = datamodule.train_dataloader() if split == "train" else datamodule.val_dataloader()
    batches, seen = [], 0
    for batch in loader:
        take = batch["image"].shape[0] if limit is None else min(batch["image"].shape[0], limit - seen)
        images = batch["image"][:take]
        batches.append((images, batch["mask"][:take]) if with_masks else images)
        seen += take
        if limit is not None and seen >= limit:
            break
    if not batches:
        raise ValueError(f"the {split} split gave no images for the search")
    return batches


class SupernetEvaluator:
    """Measures one architecture. Latency comes first, so a candidate over the latency cap skips the costly
    recalibration and validation (its mIoU is left unmeasured: it is infeasible anyway). The ChildNet is timed as
    it will run deployed: prepared by ``hyctas bench``'s ``optimise`` under the config's ``latency_variant``.

    Args:
        supernet: the trained supernet whose sub-networks are measured.
        calibration: training image batches that recalibrate BatchNorm for each candidate.
        validation: (images, masks) batches that give each candidate's mIoU.
        config: the search settings (latency size, variant, protocol, cap).
        ignore_index: label that counts in no metric.
        device: where candidates are evaluated and timed.
    """

    def __init__(self, supernet: SuperNet, calibration: Sequence[torch.Tensor],
                 validation: Sequence[Tuple[torch.Tensor, torch.Tensor]], config: SearchConfig,
                 ignore_index: int = 255, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.supernet = supernet.to(self.device).eval()
        self.calibration = [x.to(self.device) for x in calibration]
        self.validation = [(x.to(self.device), y.to(self.device)) for x, y in validation]
        self.config = config
        self.metric = MulticlassJaccardIndex(supernet.num_classes, ignore_index=ignore_index).to(self.device)
        self.variant = Variant.parse(config.latency_variant)
        self._warm_up()

    def _warm_up(self) -> None:
        """One throw-away latency measurement, so library start-up cost does not land on the first candidate."""
        smallest = ChildNet.from_supernet(self.supernet, self.supernet.space.smallest())
        self.latency(smallest, max(1, self.config.latency_warmup), 1)

    def latency(self, child: ChildNet, warmup: int, runs: int) -> float:
        """Median latency (ms) of ``child`` prepared for inference under the configured variant."""
        c = self.config
        example = torch.randn(1, 3, *c.latency_size, device=c.latency_backend)
        runner = optimise(child, self.variant, example)
        return measure_latency(runner, c.latency_size, c.latency_backend, warmup, runs).median_ms

    def __call__(self, arch: Architecture) -> Measurement:
        c, timing = self.config, {}
        with _timer(timing, "profile"):
            profile = profile_architecture(arch, c.latency_size, self.supernet.num_classes, fch=self.supernet.fch,
                                           output_stride=8, stem_head_width=self.supernet.space.stem_head_width)
        values = {"macs_g": profile.macs_g, "params_m": profile.params_m, "latency_ms": None, "miou": None}
        with _timer(timing, "build"):
            child = ChildNet.from_supernet(self.supernet, arch)
        with _timer(timing, "latency"):
            values["latency_ms"] = self.latency(child, c.latency_warmup, c.latency_runs)
        del child
        if c.latency_cap_ms is not None and values["latency_ms"] > c.latency_cap_ms:
            return Measurement(values, timing)
        with _timer(timing, "recalibration"):
            recalibrate_bn(self.supernet, lambda x: self.supernet(x, arch), self.calibration)
        with _timer(timing, "validation"):
            values["miou"] = self.miou(arch)
        return Measurement(values, timing)

    @torch.no_grad()
    def miou(self, arch: Architecture) -> float:
        self.supernet.eval()
        self.metric.reset()
        for images, masks in self.validation:
            self.metric.update(self.supernet(images, arch).argmax(1), masks)
        return float(self.metric.compute())
