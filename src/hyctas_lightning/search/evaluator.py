"""Evaluating a candidate through the trained supernet (paper section 4.2, 'Search'): parameters and
multiply-adds, latency of its ChildNet at the deployment resolution, BatchNorm recalibration on training
images, mIoU on validation images."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch

from hyctas_lightning.evaluation.bench import Variant, optimise
from hyctas_lightning.evaluation.latency import measure_latency
from hyctas_lightning.evaluation.weight_sharing import SubnetScorer, collect_images
from hyctas_lightning.models import ChildNet, SuperNet
from hyctas_lightning.search_space import Architecture

from .config import SearchConfig
from .engine import Measurement
from .profiles import ProfileAhead


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

    The critical path of a candidate holds device work only where it can: its profile is counted ahead in a pool of
    ``config.profile_workers`` processes (:meth:`prefetch`, which the search calls with each batch before measuring
    it), and on a CUDA latency backend the timed ChildNet is built without the supernet's weights. The mIoU comes
    from the supernet itself, so the child exists only to be timed, and a GPU's run time depends on the shapes,
    dtypes, memory layouts and kernels of a network, all fixed by its architecture and the variant, not on its
    values: the child is filled with constants (:meth:`ChildNet.placeholder_`), finite through the fp16 cast and
    BatchNorm folding, and its forward has no branch on values. A CPU's run time does depend on values (denormal
    floats take slow paths), so a CPU backend times the child with the supernet's weights, as deployed. Call
    :meth:`close` when done (it stops the pool).

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
        self.profiles = ProfileAhead(config.latency_size, supernet.num_classes, self.supernet.fch,
                                     self.supernet.space.stem_head_width, config.profile_workers)
        self._warm_up()

    def _warm_up(self) -> None:
        """One throw-away latency measurement, so library start-up cost does not land on the first candidate."""
        self.latency(self.timed_child(self.supernet.space.smallest()), max(1, self.config.latency_warmup), 1)

    def timed_child(self, arch: Architecture) -> ChildNet:
        """The ChildNet ``arch`` is timed as: with the supernet's weights on a CPU backend, placeholder constants
        on a CUDA one (see the class doc)."""
        return ChildNet.from_supernet(self.supernet, arch, weights=self.config.latency_backend == "cpu")

    def latency(self, child: ChildNet, warmup: int, runs: int) -> float:
        """Median latency (ms) of ``child`` prepared for inference under the configured variant; ``child`` itself
        is prepared (folded, cast) and is of no further use."""
        c = self.config
        example = torch.randn(1, 3, *c.latency_size, device=c.latency_backend)
        runner = optimise(child, self.variant, example, c.latency_autotune, inplace=True)
        return measure_latency(runner, c.latency_size, c.latency_backend, warmup, runs,
                               autotune=c.latency_autotune).median_ms

    def latency_of(self, arch: Architecture) -> float:
        """Median latency (ms) of ``arch``'s ChildNet under the configured variant and protocol."""
        return self.latency(self.timed_child(arch), self.config.latency_warmup, self.config.latency_runs)

    def prefetch(self, archs: Sequence[Architecture]) -> None:
        """Start counting the profiles of ``archs``, the next candidates to be measured (with ``profile_workers``)."""
        self.profiles.prefetch(archs)

    def close(self) -> None:
        """Stop the profile pool."""
        self.profiles.close()

    def __call__(self, arch: Architecture) -> Measurement:
        c, timing = self.config, {}
        with _timer(timing, "profile"):  # with workers: the wait for a profile counted ahead
            profile = self.profiles(arch)
        values = {"macs_g": profile.macs_g, "params_m": profile.params_m, "latency_ms": None, "miou": None}
        with _timer(timing, "build"):
            child = self.timed_child(arch)
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
