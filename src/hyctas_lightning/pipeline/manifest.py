"""The run's one state file, ``RUN/manifest.json``: the config, every stage's status, attempts (start, end,
seconds, GPUs, GPU-minutes), input digests, outputs and commands, and every job's record. It is rewritten
atomically after each change, so a kill at any moment leaves the last consistent state, and a lock keeps two
pipelines off one run folder."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from hyctas_lightning.checkpoints import plain
from hyctas_lightning.errors import ConfigError
from hyctas_lightning.fileio import JSONFileError, json_digest, read_json, write_json
from hyctas_lightning.locks import FileLock, LockHeld

VERSION = 1
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
LOCK_FILE = ".pipeline.lock"


class PipelineError(RuntimeError):
    """A stage cannot run or did not finish; the message says which and what to do."""


def now() -> str:
    """The local time as the manifest records it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """A 16-hex-digit identity of a file's bytes (config files, checkpoints)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def changed_keys(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> List[str]:
    """Dotted keys whose values differ between two nested dicts, compared as JSON holds them (a tuple read back
    from the manifest is a list: no change)."""
    old, new = plain(old), plain(new)
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


class Manifest:
    """``RUN/manifest.json`` in memory; every mutation is saved at once.

    Args:
        run: the run folder.
    """

    def __init__(self, run: Path) -> None:
        self.run = Path(run)
        self.path = self.run / "manifest.json"
        self.data: Dict[str, Any] = read_json(self.path) if self.path.exists() else {
            "version": VERSION, "created": now(), "invocations": [], "stages": {}, "jobs": {}}
        if not isinstance(self.data, dict) or not {"stages", "jobs", "invocations"} <= set(self.data):
            raise JSONFileError(f"{self.path}: not a pipeline manifest (no stages, jobs and invocations); restore it "
                                f"or use a new --run folder")
        if self.data.get("version") != VERSION:
            raise JSONFileError(f"{self.path}: manifest version {self.data.get('version')} is not {VERSION}; "
                                f"use a new --run folder")
        self._lock = FileLock(self.run / LOCK_FILE)

    # ------------------------------------------------------------------ the file
    def save(self) -> None:
        """Write the manifest (atomically), stamped with the time."""
        self.data["updated"] = now()
        write_json(self.path, self.data)

    def lock(self) -> None:
        """Hold ``RUN/.pipeline.lock`` until the process ends: one pipeline per run folder."""
        try:
            self._lock.acquire()
        except LockHeld as held:
            raise LockHeld(f"another pipeline is running on {self.run}: {held.holder or 'a process'} holds "
                           f"{self._lock.path}; wait for it, stop it, or use another --run folder", held.holder) \
                from None

    # ------------------------------------------------------------------ stages
    def stage(self, name: str) -> Dict[str, Any]:
        """The record of stage ``name`` (created pending if new)."""
        return self.data["stages"].setdefault(name, {"status": PENDING, "attempts": [], "seconds": 0.0,
                                                     "gpu_minutes": 0.0, "commands": [], "outputs": {}})

    def status(self, name: str) -> str:
        """``pending``, ``running``, ``done`` or ``failed``."""
        return self.data["stages"].get(name, {}).get("status", PENDING)

    def outputs(self, name: str) -> Dict[str, Any]:
        """What stage ``name`` recorded when it last finished (empty before)."""
        return self.data["stages"].get(name, {}).get("outputs", {})

    def outputs_digest(self, name: str) -> str:
        """A digest of those outputs: what a later stage's inputs hold of them."""
        return json_digest(self.outputs(name))

    def begin(self, name: str, inputs: Dict[str, Any], gpus: int, argv: Optional[List[str]] = None) -> None:
        """Mark ``name`` running with these inputs; an attempt a kill cut short is closed at its last heartbeat."""
        record = self.stage(name)
        self._close_interrupted(record)
        record.update(status=RUNNING, inputs=inputs, inputs_digest=json_digest(inputs), error=None)
        record["attempts"].append({"start": now(), "start_time": time.time(), "heartbeat": time.time(),
                                   "gpus": gpus, "argv": list(argv or [])})
        self.save()

    def heartbeat(self, name: str) -> None:
        """Stamp the running attempt: a kill is then closed at the last heartbeat."""
        self.stage(name)["attempts"][-1]["heartbeat"] = time.time()
        self.save()

    def add_command(self, name: str, command: str) -> None:
        """List a command among the stage's (once), for the report."""
        commands = self.stage(name)["commands"]
        if command not in commands:
            commands.append(command)
            self.save()

    def finish(self, name: str, outputs: Dict[str, Any], error: Optional[str] = None) -> None:
        """Close the running attempt: done with ``outputs``, or failed with ``error``."""
        record = self.stage(name)
        attempt = record["attempts"][-1]
        self._close(record, attempt, time.time())
        record["status"] = FAILED if error else DONE
        record["error"] = error
        if not error:
            record["outputs"] = outputs
        self.save()

    def _close_interrupted(self, record: Dict[str, Any]) -> None:
        attempts = record["attempts"]
        if attempts and "end" not in attempts[-1]:
            attempts[-1]["interrupted"] = True
            self._close(record, attempts[-1], attempts[-1]["heartbeat"])

    @staticmethod
    def _close(record: Dict[str, Any], attempt: Dict[str, Any], end: float) -> None:
        seconds = max(0.0, end - attempt.pop("start_time"))
        attempt.pop("heartbeat", None)
        attempt.update(end=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(end)), seconds=round(seconds, 1),
                       gpu_minutes=round(seconds * attempt["gpus"] / 60, 2))
        record["seconds"] = round(sum(a.get("seconds", 0.0) for a in record["attempts"]), 1)
        record["gpu_minutes"] = round(sum(a.get("gpu_minutes", 0.0) for a in record["attempts"]), 2)

    def check_inputs(self, name: str, inputs: Dict[str, Any]) -> None:
        """A finished stage whose inputs changed since is not silently reused: say what changed and the fix."""
        record = self.data["stages"].get(name, {})
        if record.get("status") == DONE and record.get("inputs_digest") != json_digest(inputs):
            keys = changed_keys(record.get("inputs", {}), inputs)
            raise ConfigError(f"stage '{name}' finished with other inputs than now (changed: {', '.join(keys)}); "
                              f"rerun it with --force {name} (finished work whose own inputs are unchanged is "
                              f"reused), restore the old settings, or use a new --run folder")

    def reset(self, name: str) -> None:
        """Forget that ``name`` finished (``--force``); its attempts and minutes stay on record."""
        record = self.stage(name)
        record["status"] = PENDING
        for job in self.data["jobs"].values():
            if job.get("stage") == name:
                job["status"] = PENDING
        self.save()

    # ------------------------------------------------------------------ jobs
    def job(self, key: str) -> Dict[str, Any]:
        """The record of job ``key`` (empty if it never ran)."""
        return self.data["jobs"].get(key, {})

    def job_done(self, key: str) -> bool:
        """Whether job ``key`` finished successfully (and so is not run again)."""
        return self.job(key).get("status") == DONE

    def record_job(self, key: str, record: Dict[str, Any]) -> None:
        """Update job ``key``'s record."""
        self.data["jobs"][key] = {**self.data["jobs"].get(key, {}), **record}
        self.save()

    def invoked(self, argv: List[str], config: Dict[str, Any]) -> None:
        """Record an invocation and the config it runs with (``hyctas pipeline --run`` reads it back)."""
        self.data["invocations"].append({"start": now(), "argv": argv})
        self.data["config"] = config
        self.save()
