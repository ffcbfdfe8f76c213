"""Running ``hyctas`` sub-commands as processes: one log file each in the run folder, several at a time spread over
the GPUs (``CUDA_VISIBLE_DEVICES`` per process, ``per_gpu`` processes on each), one at a time on a CPU. A failed
job does not stop the others; the caller gets every job's result, failures with the tail of their log.

A job never outlives the process that runs it (``processes``), and its folder is locked (``.job.lock``) before it
starts, by this process and by the job, which inherits the lock: an orphan a killed pipeline left running (where
the parent-death signal does not exist) still holds it, so a rerun refuses its folder instead of writing beside
it."""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from hyctas_lightning.locks import FileLock, LockHeld, describe_process
from hyctas_lightning.processes import PARENT_ENV, child_preexec

log = logging.getLogger(__name__)
TAIL_LINES = 25
JOB_LOCK = ".job.lock"


@dataclass
class Job:
    """One process to run.

    Args:
        key: its identity in the manifest (unique in the run).
        argv: the full command line.
        log: file that receives its stdout and stderr (appended, so a resumed job keeps its history).
        title: how progress messages name it.
        folder: the folder it writes, locked while it runs (None: not locked).
    """

    key: str
    argv: List[str]
    log: Path
    title: str = ""
    folder: Optional[Path] = None

    @property
    def command(self) -> str:
        """The command line as one shell-quoted string."""
        return shlex.join(self.argv)


@dataclass
class JobResult:
    """How one job ended.

    Args:
        key: the job's key.
        returncode: its exit status (0: success).
        seconds: wall-clock seconds it ran.
        gpu: the GPU it ran on (``CUDA_VISIBLE_DEVICES`` value), None on the CPU.
        tail: the last lines of its log when it failed, empty otherwise.
    """

    key: str
    returncode: int
    seconds: float
    gpu: Optional[str]
    tail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the job exited with status 0."""
        return self.returncode == 0


@dataclass
class _Slot:
    gpu: Optional[str]
    job: Optional[Job] = None
    process: Optional[subprocess.Popen] = None
    start: float = 0.0
    handle: Optional[object] = field(default=None, repr=False)
    lock: Optional[FileLock] = None


def hyctas_argv(args: Sequence[str]) -> List[str]:
    """The command line of ``hyctas ARGS`` in this interpreter (``python -m hyctas_lightning.cli``)."""
    return [sys.executable, "-m", "hyctas_lightning.cli", *args]


def display(argv: Sequence[str]) -> str:
    """How a command is shown in logs and reports: ``hyctas ...`` rather than the interpreter path."""
    argv = list(argv)
    if argv[1:3] == ["-m", "hyctas_lightning.cli"]:
        return shlex.join(["hyctas", *argv[3:]])
    return shlex.join(argv)


def visible_gpus(device: str) -> List[str]:
    """The GPUs this process may hand out, as ``CUDA_VISIBLE_DEVICES`` entries; none on a CPU run."""
    if device == "cpu":
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a log (what a failure shows)."""
    if not path.exists():
        return "(no log)"
    return "".join(path.read_text(errors="replace").splitlines(True)[-lines:])


def run_jobs(jobs: Sequence[Job], gpus: Sequence[str], per_gpu: int = 1,
             on_done: Optional[Callable[[Job, JobResult], None]] = None,
             on_tick: Optional[Callable[[], None]] = None, tick_seconds: float = 60.0,
             poll_seconds: float = 0.5) -> Dict[str, JobResult]:
    """Run ``jobs`` to the end, ``per_gpu`` at a time on each of ``gpus`` (``CUDA_VISIBLE_DEVICES`` set to one of
    them per process), or one at a time with no GPU visible when ``gpus`` is empty.

    Args:
        jobs: the processes, started in this order as slots free up.
        gpus: ``CUDA_VISIBLE_DEVICES`` entries to spread over; empty runs on the CPU.
        per_gpu: processes sharing one GPU.
        on_done: called with each job and its result as it finishes (e.g. to record it in the manifest).
        on_tick: called every ``tick_seconds`` while jobs run (the manifest's heartbeat).
        tick_seconds: period of ``on_tick``.
        poll_seconds: how often finished processes are collected.
    """
    slots = [_Slot(gpu) for gpu in gpus for _ in range(per_gpu)] or [_Slot("")]
    pending, results = list(jobs), {}
    locks = lock_folders(jobs)
    last_tick = time.monotonic()
    try:
        while pending or any(s.process for s in slots):
            for slot in slots:
                if slot.process is None and pending:
                    job = pending.pop(0)
                    _start(slot, job, locks.get(job.key))
            time.sleep(poll_seconds)
            for slot in slots:
                if slot.process is not None and slot.process.poll() is not None:
                    job, result = _collect(slot)
                    results[job.key] = result
                    if on_done is not None:
                        on_done(job, result)
            if on_tick is not None and time.monotonic() - last_tick >= tick_seconds:
                on_tick()
                last_tick = time.monotonic()
    finally:  # interrupted: stop what we started, so no orphan keeps a GPU
        for slot in slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.terminate()
                slot.process.wait()
        for lock in locks.values():
            lock.release()
    return results


def lock_folders(jobs: Sequence[Job]) -> Dict[str, FileLock]:
    """Lock every job's folder before any job starts, by job key; a folder another process holds refuses them all.

    Args:
        jobs: the jobs (those without a ``folder`` are not locked).
    """
    held: Dict[str, FileLock] = {}
    for job in jobs:
        if job.folder is None:
            continue
        try:
            held[job.key] = FileLock(Path(job.folder) / JOB_LOCK).acquire()
        except LockHeld as busy:
            for lock in held.values():
                lock.release()
            raise LockHeld(f"{job.folder} is being written by another process ({busy.holder or 'unnamed'}), "
                           f"perhaps one a killed pipeline left running; wait for it to end or stop it, then rerun",
                           busy.holder) from None
    return held


def _start(slot: _Slot, job: Job, lock: Optional[FileLock]) -> None:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot.gpu, PARENT_ENV: str(os.getpid())}
    where = f"GPU {slot.gpu}" if slot.gpu else "CPU"
    log.info("  start %s on %s (log: %s)", job.title or job.key, where, job.log)
    slot.handle = job.log.open("a")
    slot.handle.write(f"\n$ {display(job.argv)}\n")
    slot.handle.flush()
    slot.job, slot.start, slot.lock = job, time.monotonic(), lock
    slot.process = subprocess.Popen(job.argv, stdout=slot.handle, stderr=subprocess.STDOUT, env=env,
                                    pass_fds=(lock.fileno(),) if lock else (), preexec_fn=child_preexec())
    if lock is not None:  # the job holds the lock too, until it ends
        lock.note(describe_process(slot.process.pid, display(job.argv)))


def _collect(slot: _Slot) -> tuple[Job, JobResult]:
    job, code = slot.job, slot.process.returncode
    slot.handle.close()
    if slot.lock is not None:
        slot.lock.release()
    seconds = time.monotonic() - slot.start
    result = JobResult(job.key, code, round(seconds, 1), slot.gpu or None, "" if code == 0 else tail(job.log))
    log.info("  %s %s in %.0f s%s", "finished" if code == 0 else f"FAILED (exit {code})", job.title or job.key,
             seconds, "" if code == 0 else f"; last lines of {job.log}:\n{result.tail}")
    slot.job = slot.process = slot.handle = slot.lock = None
    return job, result


def failure_summary(failed: Sequence[Job], results: Dict[str, JobResult]) -> str:
    """Every failed job with its log and the tail of it."""
    return "\n".join(f"- {job.title or job.key} (exit {results[job.key].returncode}), log {job.log}:\n"
                     f"{results[job.key].tail}" for job in failed)
