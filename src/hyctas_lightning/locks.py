"""One process at a time on a folder: an exclusive advisory lock (``fcntl.flock``) on a lock file in it. The
operating system releases it when the process ends, however it ends, so a killed holder never leaves a stale lock
behind; a second process is refused at once rather than left waiting."""
from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO, Optional, Union


class LockHeld(RuntimeError):
    """Another process holds the lock."""


class FileLock:
    """An exclusive, non-blocking lock on ``path``, held from ``acquire`` until ``release`` or the process's end.

    Args:
        path: the lock file (created with its folder; its content is never read).
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self._file: Optional[IO] = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> FileLock:
        """Take the lock; raises :class:`LockHeld` if another process (or another ``FileLock``) holds it."""
        if self._file is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LockHeld(f"{self.path} is held by another process") from None
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the lock
            self._file = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["FileLock", "LockHeld"]
