"""Evaluating a candidate through the trained supernet (paper section 4.2, 'Search'): parameters and
multiply-adds, latency of its ChildNet at the deployment resolution, BatchNorm recalibration on training
images, mIoU on validation images."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch

from hyctas_lightning.evaluation import profile_architecture
from hyctas_lightning.evaluation.bench import Variant, optimise
from hyctas_lightning.evaluation.latency import measure_latency
from hyctas_lightning.evaluation.weight_sharing import SubnetScorer, collect_images
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
        channels_last: run the supernet channels-last while recalibrating and validating (None: on a GPU, where
            it is faster; the scores agree with NCHW's up to the convolution algorithms' rounding).
    """

    def __init__(self, supernet: SuperNet, calibration: Sequence[torch.Tensor],
                 validation: Sequence[Tuple[torch.Tensor, torch.Tensor]], config: SearchConfig,
                 ignore_index: int = 255, device: torch.device | str = "cpu",
                 channels_last: Optional[bool] = None) -> None:
        self.device = torch.device(device)
        if channels_last is None:
            channels_last = self.device.type == "cuda"
        self.supernet = supernet.to(self.device).set_channels_last(channels_last).eval()
        layout = self.supernet.memory_format
        self.calibration = [x.to(self.device).contiguous(memory_format=layout) for x in calibration]
        self.config = config
        # one candidate's own score: never summed with what other processes of a spread search are scoring
        self.scorer = SubnetScorer(self.supernet, self.calibration, supernet.num_classes, ignore_index,
                                   config.images_per_pass)
        self.validation = self.scorer.passes([(x.to(self.device).contiguous(memory_format=layout), y.to(self.device))
                                              for x, y in validation])
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
        runner = optimise(child, self.variant, example, c.latency_autotune)
        return measure_latency(runner, c.latency_size, c.latency_backend, warmup, runs,
                               autotune=c.latency_autotune).median_ms

    def latency_of(self, arch: Architecture) -> float:
        """Median latency (ms) of ``arch``'s ChildNet under the configured variant and protocol."""
        return self.latency(ChildNet.from_supernet(self.supernet, arch), self.config.latency_warmup,
                            self.config.latency_runs)

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
            self.scorer.calibrate(arch)
        with _timer(timing, "validation"):
            values["miou"] = self.miou(arch)
        return Measurement(values, timing)

    def miou(self, arch: Architecture) -> float:
        """mIoU with the BN statistics in place (the search recalibrates first)."""
        return self.scorer.miou(arch, self.validation)


__all__ = ["SupernetEvaluator", "collect_images"]
