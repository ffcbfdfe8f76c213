"""Evaluating a candidate through the trained supernet (paper section 4.2, 'Search'): parameters and
multiply-adds, latency of its ChildNet at the deployment resolution, BatchNorm recalibration on training
images, mIoU on validation images."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from hyctas_lightning.evaluation.bench import Variant, optimise, prepare_network
from hyctas_lightning.evaluation.latency import measure_latency
from hyctas_lightning.evaluation.weight_sharing import SubnetScorer, collect_images
from hyctas_lightning.models import ChildNet, SuperNet
from hyctas_lightning.search_space import Architecture

from .config import SearchConfig
from .engine import Measurement
from .profiles import ProfileAhead

log = logging.getLogger(__name__)
Mark = Union[float, torch.cuda.Event]


@contextmanager
def _timer(timing: Dict[str, float], part: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    timing[part] = timing.get(part, 0.0) + time.perf_counter() - start


class _DeviceClock:
    """Marks on the timeline of a device's work: CUDA events on a GPU, read once the work is done (the host runs
    ahead of it), the host's wall clock elsewhere (work is done as it is called).

    Args:
        device: the device whose work is marked.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device if device.type == "cuda" else None

    def mark(self) -> Mark:
        if self.device is None:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def wait(self) -> None:
        """Until the device has done everything queued."""
        if self.device is not None:
            torch.cuda.synchronize(self.device)

    def seconds(self, start: Mark, end: Mark) -> float:
        """Seconds between two marks (on a GPU: after :meth:`wait`)."""
        return start.elapsed_time(end) / 1e3 if self.device is not None else end - start


@dataclass
class _Ahead:
    """A candidate's timed network, built and prepared during the previous candidate's scoring.

    Args:
        hash: the candidate's architecture hash.
        net: its prepared ChildNet.
        visible_s: host seconds of the build the device did not cover (it had finished its work).
        hidden_s: host seconds of the build spent while the device worked.
    """

    hash: str
    net: nn.Module
    visible_s: float
    hidden_s: float


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
    floats take slow paths), so a CPU backend times the child with the supernet's weights, as deployed. With
    ``config.build_ahead`` (default: on a CUDA latency backend) the next announced candidate's child is built and
    prepared on the host while the device recalibrates and validates the current one (see :meth:`_score_building`).
    Call :meth:`close` when done (it stops the pool).

    The seconds per part of a :class:`Measurement`: ``profile`` the wait for the counts, ``build`` the host time of
    building and preparing (folding, casting) the timed child that no device work covered, ``latency`` its CUDA
    graph capture or compilation and the timed passes, ``recalibration`` and ``validation`` the device's time of
    their passes (validation: with the metric's read), and with a build ahead ``build_hidden`` the host time of the
    candidate's build spent while the device scored the previous one (not part of the wall time).

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
        self.build_ahead = config.latency_backend == "cuda" if config.build_ahead is None else config.build_ahead
        self._upcoming: List[Architecture] = []
        self._ahead: Optional[_Ahead] = None
        self._warm_up()

    def _warm_up(self) -> None:
        """One throw-away latency measurement, so library start-up cost does not land on the first candidate."""
        self.latency(self.prepared_child(self.supernet.space.smallest()), max(1, self.config.latency_warmup), 1)

    def timed_child(self, arch: Architecture) -> ChildNet:
        """The ChildNet ``arch`` is timed as: with the supernet's weights on a CPU backend, placeholder constants
        on a CUDA one (see the class doc)."""
        return ChildNet.from_supernet(self.supernet, arch, weights=self.config.latency_backend == "cpu")

    def prepare(self, child: nn.Module) -> nn.Module:
        """``child`` itself prepared for the configured variant on the latency backend (folded, cast, laid out):
        work that times nothing."""
        return prepare_network(child, self.variant, self.config.latency_backend, inplace=True)

    def prepared_child(self, arch: Architecture) -> nn.Module:
        """``arch``'s timed child, prepared (:meth:`timed_child`, :meth:`prepare`)."""
        return self.prepare(self.timed_child(arch))

    def latency(self, net: nn.Module, warmup: int, runs: int) -> float:
        """Median latency (ms) of ``net``, a network from :meth:`prepare`, under the configured variant (its graph
        captured or its compilation run first); ``net`` is of no further use."""
        c = self.config
        example = torch.randn(1, 3, *c.latency_size, device=c.latency_backend)
        runner = optimise(net, self.variant, example, c.latency_autotune, prepared=True)
        return measure_latency(runner, c.latency_size, c.latency_backend, warmup, runs,
                               autotune=c.latency_autotune).median_ms

    def latency_of(self, arch: Architecture) -> float:
        """Median latency (ms) of ``arch``'s ChildNet under the configured variant and protocol."""
        return self.latency(self.prepared_child(arch), self.config.latency_warmup, self.config.latency_runs)

    def prefetch(self, archs: Sequence[Architecture]) -> None:
        """``archs`` are the next candidates to be measured, in order: start counting their profiles (with
        ``profile_workers``), and with ``build_ahead`` build each one's timed child during its predecessor's scoring."""
        self.profiles.prefetch(archs)
        self._upcoming = list(archs)

    def close(self) -> None:
        """Stop the profile pool and drop a child built ahead."""
        self.profiles.close()
        self._upcoming, self._ahead = [], None

    def __call__(self, arch: Architecture) -> Measurement:
        c, timing = self.config, {}
        with _timer(timing, "profile"):  # with workers: the wait for a profile counted ahead
            profile = self.profiles(arch)
        following = self._after(arch)
        values = {"macs_g": profile.macs_g, "params_m": profile.params_m, "latency_ms": None, "miou": None}
        with _timer(timing, "build"):
            net = self._built(arch, timing)
        with _timer(timing, "latency"):
            values["latency_ms"] = self.latency(net, c.latency_warmup, c.latency_runs)
        del net
        if c.latency_cap_ms is not None and values["latency_ms"] > c.latency_cap_ms:
            return Measurement(values, timing)
        if self.build_ahead and following is not None:
            values["miou"] = self._score_building(arch, following, timing)
            return Measurement(values, timing)
        with _timer(timing, "recalibration"):
            self.scorer.calibrate(arch)
        with _timer(timing, "validation"):
            values["miou"] = self.miou(arch)
        return Measurement(values, timing)

    def _after(self, arch: Architecture) -> Optional[Architecture]:
        """The candidate announced right after ``arch`` (None: ``arch`` is the last of its batch or was not
        announced); the announced ones up to ``arch`` are done with."""
        hashes = [a.hash for a in self._upcoming]
        if arch.hash not in hashes:
            return None
        self._upcoming = self._upcoming[hashes.index(arch.hash) + 1:]
        return self._upcoming[0] if self._upcoming else None

    def _built(self, arch: Architecture, timing: Dict[str, float]) -> nn.Module:
        """``arch``'s prepared child: the one built ahead if it is ``arch``'s (its visible seconds go to ``build``,
        to which the caller's timer adds the rest), else built now (a child built ahead for another architecture
        is dropped: a stale one is never timed)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.hash == arch.hash:
            timing["build"], timing["build_hidden"] = ahead.visible_s, ahead.hidden_s
            return ahead.net
        if ahead is not None:
            log.debug("dropping the child built ahead for %s: %s was asked for", ahead.hash, arch.hash)
        return self.prepared_child(arch)

    def _score_building(self, arch: Architecture, following: Architecture, timing: Dict[str, float]) -> float:
        """``arch``'s mIoU (recalibrated, then validated) while ``following``'s timed child is built ahead.

        The order keeps every timing clean: first all of ``arch``'s recalibration and validation passes are queued
        (none of them waits for the device); then the host builds and prepares ``following``'s child, which queues
        only untimed work (constant fills, folding, casts) behind them on the same stream; then the metric is read,
        which waits for all of it. ``following`` is timed at the start of its own call, after that read, with
        nothing else in flight: no timed pass overlaps other device work. The scores are those of
        :meth:`SubnetScorer.calibrate` then :meth:`SubnetScorer.miou`: the same passes on the same inputs. A build
        that fails is left to ``following``'s own call, which builds it again and reports the error.
        """
        clock, start = _DeviceClock(self.device), time.perf_counter()
        marks = [clock.mark()]
        self.scorer.calibrate(arch)
        marks.append(clock.mark())
        predictions = self.scorer.predict(arch, self.validation)
        marks.append(clock.mark())
        queued = time.perf_counter()
        try:
            net: Optional[nn.Module] = self.prepared_child(following)
        except Exception:  # noqa: BLE001 - raised again where it belongs, by following's own call
            log.debug("building %s ahead failed; its own evaluation builds it", following.hash, exc_info=True)
            net = None
        built = time.perf_counter()
        clock.wait()
        waited = time.perf_counter()
        miou = self.scorer.score(predictions)
        timing["recalibration"] = clock.seconds(marks[0], marks[1])
        timing["validation"] = clock.seconds(marks[1], marks[2]) + time.perf_counter() - waited
        if net is not None:  # the build's host time beyond the device's work on this candidate was not covered
            visible = min(built - queued, max(0.0, built - start - clock.seconds(marks[0], marks[2])))
            self._ahead = _Ahead(following.hash, net, visible, built - queued - visible)
        return miou

    def miou(self, arch: Architecture) -> float:
        """mIoU with the BN statistics in place (the search recalibrates first)."""
        return self.scorer.miou(arch, self.validation)


__all__ = ["SupernetEvaluator", "collect_images"]
