"""A search over several processes, one per GPU (``hyctas search --devices N``, or the ``SearchCallback`` of a
``hyctas fit`` on several devices): every process evaluates candidates on its own GPU, process 0 alone runs the
strategy and writes the journal.

Each batch of candidates the strategy asks for (``engine.evaluate_batch``) is broadcast by process 0 and dealt
out, the largest first, to the process with the least work so far (a deterministic plan every process computes
alike). Every other process sends each result to process 0 as soon as it has it; process 0 evaluates its own share
and journals every result on arrival, so a kill loses only the evaluations in flight, and a rerun repeats none that
was journalled. The strategy sees each batch's results in the order it drew them, so the run, and with
deterministic objectives its front, are those of one process.

Messages are small (an architecture, a few numbers) and travel over a gloo group on the CPU
(``hyctas_lightning.distributed.cpu_group``), so they never wait behind the GPUs' work.
"""
from __future__ import annotations

import json
import logging
import queue
import statistics
import threading
import traceback
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from hyctas_lightning.search_space import Architecture
from hyctas_lightning.search_space.architecture import estimate_training_memory_gb

from .engine import Measurement, prefetch

log = logging.getLogger(__name__)

MESSAGE_BYTES = 1 << 14  # one result: measurements and seconds per part as JSON (an error: its message, cut)
_STOP = "stop"


def plan(archs: Sequence[Architecture], processes: int) -> List[int]:
    """The process that evaluates each architecture: largest first (by estimated activation memory, a proxy of the
    cost of calibration and validation) to the process with the least estimated work so far."""
    owner = [0] * len(archs)
    load = [0.0] * processes
    costs = [estimate_training_memory_gb(arch) for arch in archs]
    for i in sorted(range(len(archs)), key=lambda i: (-costs[i], i)):
        target = min(range(processes), key=lambda p: (load[p], p))
        owner[i] = target
        load[target] += costs[i]
    return owner


def _encode(payload: dict) -> torch.Tensor:
    data = json.dumps(payload).encode()
    if len(data) > MESSAGE_BYTES:
        data = json.dumps({"error": payload.get("error", "a result too large to send")[-MESSAGE_BYTES // 2:]}).encode()
    message = torch.zeros(MESSAGE_BYTES, dtype=torch.uint8)
    message[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return message


def _decode(message: torch.Tensor) -> dict:
    return json.loads(bytes(message.numpy()).rstrip(b"\0").decode())


def _measure(evaluate: Callable[[Architecture], Measurement], arch: Architecture) -> dict:
    """A result as a message payload; an exception becomes an error payload (the search stops on it)."""
    try:
        m = evaluate(arch)
        return {"values": m.values, "timing": m.timing}
    except Exception:  # noqa: BLE001 - reported by process 0, which stops the search
        return {"error": f"process {dist.get_rank()} failed to evaluate {arch.hash}:\n{traceback.format_exc()}"}


class SpreadEvaluator:
    """Process 0's evaluator: measures each batch over all processes of ``group``, the others running ``serve``.
    An evaluation that fails anywhere stops the search once the batch's other results are journalled. Call
    ``close`` when the search ends (also when it fails), which releases the other processes.

    Args:
        evaluate: this process's evaluator (e.g. a ``SupernetEvaluator`` on this process's GPU).
        group: the processes to spread over, a gloo group (``hyctas_lightning.distributed.cpu_group()``).
    """

    def __init__(self, evaluate: Callable[[Architecture], Measurement], group: dist.ProcessGroup) -> None:
        self.evaluate, self.group = evaluate, group
        self.processes = dist.get_world_size(group)

    def __call__(self, arch: Architecture) -> Measurement:
        results: Dict[int, Measurement] = {}
        self.evaluate_batch([arch], results.__setitem__)
        return results[0]

    def evaluate_batch(self, archs: Sequence[Architecture], on_result: Callable[[int, Measurement], None]) -> None:
        """Measure ``archs`` over every process; ``on_result(index, measurement)`` as each arrives."""
        dist.broadcast_object_list([[arch.to_dict() for arch in archs]], src=0, group=self.group)
        owner = plan(archs, self.processes)
        arrivals: queue.Queue[Tuple[int, dict]] = queue.Queue()
        receivers = [threading.Thread(target=self._receive, args=(p, [i for i, o in enumerate(owner) if o == p],
                                                                  arrivals), daemon=True)
                     for p in sorted(set(owner) - {0})]
        for thread in receivers:
            thread.start()
        errors: List[str] = []

        def deliver(i: int, payload: dict) -> None:
            if "error" in payload:
                errors.append(payload["error"])
            else:
                on_result(i, Measurement(payload["values"], payload["timing"]))

        expected = sum(o != 0 for o in owner)
        prefetch(self.evaluate, [arch for arch, o in zip(archs, owner) if o == 0])
        for i in (i for i, o in enumerate(owner) if o == 0):
            deliver(i, _measure(self.evaluate, archs[i]))
            while not arrivals.empty():  # journal what the others finished meanwhile
                expected -= 1
                deliver(*arrivals.get())
        for _ in range(expected):
            deliver(*arrivals.get())
        for thread in receivers:
            thread.join()
        if errors:
            raise RuntimeError(f"an evaluation failed; the search stopped: {errors[0]}")

    def _receive(self, source: int, indices: Sequence[int], arrivals: queue.Queue[Tuple[int, dict]]) -> None:
        """Receive ``source``'s results in the order it measures them (a thread per process: gloo completes a
        receive only in its blocking wait)."""
        for i in indices:
            message = torch.zeros(MESSAGE_BYTES, dtype=torch.uint8)
            try:
                dist.recv(message, src=source, group=self.group, tag=i)
                arrivals.put((i, _decode(message)))
            except Exception as e:  # noqa: BLE001 - a process that died: the search stops with its reason
                arrivals.put((i, {"error": f"no result from process {source}: {e}"}))

    def close(self) -> None:
        """Release the other processes from ``serve``."""
        dist.broadcast_object_list([_STOP], src=0, group=self.group)


def serve(evaluate: Callable[[Architecture], Measurement], group: dist.ProcessGroup) -> int:
    """The loop of every process but 0: evaluate this process's share of each batch process 0 broadcasts and send
    each result as soon as it is measured, until process 0 closes. Returns the number of evaluations made."""
    me, processes, done = dist.get_rank(group), dist.get_world_size(group), 0
    while True:
        box: List[object] = [None]
        dist.broadcast_object_list(box, src=0, group=group)
        if box[0] == _STOP:
            return done
        archs = [Architecture.from_dict(a) for a in box[0]]
        mine = [i for i, p in enumerate(plan(archs, processes)) if p == me]
        prefetch(evaluate, [archs[i] for i in mine])
        sends = [dist.isend(_encode(_measure(evaluate, archs[i])), dst=0, group=group, tag=i) for i in mine]
        for work in sends:
            work.wait()
        done += len(sends)


def latency_spread(latency: Callable[[Architecture], float], archs: Sequence[Architecture],
                   group: Optional[dist.ProcessGroup]) -> List[dict]:
    """Every process times the same ``archs`` on its own device (all at once, as during the search); per
    architecture, the latencies of every process and their spread, (slowest - fastest) / median. Returned on every
    process.

    Args:
        latency: this process's latency measurement of one architecture, in ms.
        archs: the architectures to time.
        group: the processes (None: this process alone).
    """
    mine = [latency(arch) for arch in archs]
    everyone: List[Optional[List[float]]] = [None] * (dist.get_world_size(group) if group is not None else 1)
    if group is None:
        everyone = [mine]
    else:
        dist.all_gather_object(everyone, mine, group=group)
    rows = []
    for j, arch in enumerate(archs):
        values = [process[j] for process in everyone]
        rows.append({"hash": arch.hash, "branches": arch.num_branches, "latency_ms": values,
                     "spread": (max(values) - min(values)) / statistics.median(values)})
    return rows
