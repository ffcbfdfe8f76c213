"""One process at a time on a folder: an exclusive advisory lock (``fcntl.flock``) on a lock file in it. The
operating system releases it when the last process holding it ends, however it ends, so a killed holder never
leaves a stale lock behind; a second process is refused at once rather than left waiting.

The lock file names its holder (process id, host, start time and command line), so a refusal can say who is
writing the folder; a process that hands its lock to a child it starts (``fileno`` in ``pass_fds``) renames the
holder with ``note``."""
from __future__ import annotations

import fcntl
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import IO, Optional, Union

HOLDER_CHARS = 300  # a holder's command line is cut to this length in the lock file


class LockHeld(RuntimeError):
    """Another process holds the lock; the message names the lock file and its holder.

    Args:
        message: what is refused and what to do.
        holder: the holder as its lock file names it (empty if it named none).
    """

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


def describe_process(pid: int, command: str) -> str:
    """How a lock file names its holder: ``pid N on HOST since TIME: COMMAND``.

    Args:
        pid: the holder's process id.
        command: its command line.
    """
    return f"pid {pid} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: {command}"[:HOLDER_CHARS]


class FileLock:
    """An exclusive, non-blocking lock on ``path``, held from ``acquire`` until ``release`` or the end of every
    process holding its file descriptor.

    Args:
        path: the lock file (created with its folder; it holds the holder's description).
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self._file: Optional[IO] = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def holder(self) -> str:
        """The holder the lock file names (empty if none, e.g. a holder that has not written it yet)."""
        try:
            return self.path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def acquire(self) -> FileLock:
        """Take the lock and name this process as its holder; raises :class:`LockHeld` naming the holder if another
        process (or another ``FileLock``) holds it."""
        if self._file is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666), "r+")  # the holder's text stays
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            holder = self.holder()
            raise LockHeld(f"{self.path} is held by {holder or 'another process'}", holder) from None
        self._file = handle
        self.note(describe_process(os.getpid(), shlex.join(sys.argv)))
        return self

    def note(self, holder: str) -> None:
        """Name ``holder`` in the lock file (e.g. the child process the lock was handed to).

        Args:
            holder: one line describing the holder.
        """
        if self._file is None:
            raise RuntimeError(f"{self.path}: not held")
        self._file.seek(0)
        self._file.truncate()
        self._file.write(holder + "\n")
        self._file.flush()

    def fileno(self) -> int:
        """The descriptor that holds the lock: a child started with it in ``pass_fds`` holds the lock too."""
        if self._file is None:
            raise RuntimeError(f"{self.path}: not held")
        return self._file.fileno()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops this process's hold
            self._file = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["FileLock", "LockHeld", "describe_process"]
