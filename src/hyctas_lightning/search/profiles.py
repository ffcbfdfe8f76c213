"""Profiles of a search's candidates computed ahead, off the critical path of their evaluation.

A candidate's parameters and multiply-adds depend on its architecture alone: tracing them is host work that
needs neither the supernet nor the GPU. The strategy knows a whole batch of candidates (a generation's) before
any is measured, so :class:`ProfileAhead` hands the batch to a pool of worker processes on the host's spare cores
and each evaluation only collects its finished profile, while the GPU measures the candidates before it. The
numbers are those of :func:`~hyctas_lightning.evaluation.profile_architecture`, computed in another process.
"""
from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Dict, Optional, Sequence

import torch

from hyctas_lightning.evaluation import Profile, profile_architecture
from hyctas_lightning.search_space import Architecture

log = logging.getLogger(__name__)


class ProfileAhead:
    """Profiles of architectures at one size and class count, computed inline or ahead in a process pool.

    ``prefetch`` submits the architectures about to be measured; calling the instance returns an architecture's
    profile, waiting for its worker if it was submitted, computing it inline if not. With ``workers`` 0 nothing
    is submitted and every profile is computed inline. The pool starts on the first ``prefetch`` (its workers
    are spawned, not forked: the parent may hold a CUDA context) and runs each worker on one thread; ``close``
    stops it.

    Args:
        size: (height, width) the multiply-adds are counted at.
        num_classes: classes of the classifier.
        fch: the supernet's filter multiplier.
        stem_head_width: the supernet's factor on the stem and head channels.
        workers: processes of the pool (0: profile inline, in the caller's process).
    """

    def __init__(self, size: Sequence[int], num_classes: int, fch: int, stem_head_width: float,
                 workers: int = 0) -> None:
        if workers < 0:
            raise ValueError(f"profile workers: 0 (inline) or more, got {workers}")
        self.profile = partial(profile_architecture, size=tuple(size), num_classes=num_classes, fch=fch,
                               output_stride=8, stem_head_width=stem_head_width)
        self.workers = workers
        self._pool: Optional[ProcessPoolExecutor] = None
        self._pending: Dict[str, Future] = {}

    def prefetch(self, archs: Sequence[Architecture]) -> None:
        """Start profiling ``archs`` (the next ones to be measured, in order) in the pool; profiles of an earlier
        batch that were never collected are dropped."""
        if not self.workers:
            return
        try:
            pending = self._submit(archs)
        except BrokenProcessPool:  # a worker died since the last batch: a fresh pool
            log.warning("the profile pool broke (a worker died); starting a new one")
            self.close()
            pending = self._submit(archs)
        for key, stale in self._pending.items():
            if key not in pending:
                stale.cancel()
        self._pending = pending

    def _submit(self, archs: Sequence[Architecture]) -> Dict[str, Future]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                             initializer=torch.set_num_threads, initargs=(1,))
        return {arch.hash: self._pending.get(arch.hash) or self._pool.submit(self.profile, arch) for arch in archs}

    def __call__(self, arch: Architecture) -> Profile:
        """The profile of ``arch``: its worker's result if it was prefetched, else computed here (also when the pool
        broke, e.g. a worker was killed: the pool is restarted at the next ``prefetch``)."""
        future = self._pending.pop(arch.hash, None)
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                log.warning("the profile pool broke (a worker died); counting inline until the next batch")
                self.close()
        return self.profile(arch)

    def close(self) -> None:
        """Stop the pool (pending profiles are cancelled); a later ``prefetch`` starts a new one."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending = {}


__all__ = ["ProfileAhead"]
