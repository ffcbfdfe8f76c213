"""Processes that end with the process that started them. A pipeline's sub-commands must not outlive it: killed
with ``kill -9`` it cannot stop them, and an orphan left training would write into the folder of the rerun's own
training. On Linux the kernel ends them instead (the parent-death signal, ``prctl(PR_SET_PDEATHSIG)``); elsewhere
this is a no-op and the folder locks (``locks``) still refuse a second writer.

A child gets the signal through ``die_with_parent`` in ``subprocess.Popen``'s ``preexec_fn``; it reaches further
down (Lightning's DDP ranks run the same ``hyctas`` command) through ``PARENT_ENV``, which ``follow_parent`` reads
when a ``hyctas`` command starts."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from functools import partial
from typing import Callable, Optional

PARENT_ENV = "HYCTAS_PARENT_PID"  # the process id a hyctas command must not outlive
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _libc_prctl() -> Optional[Callable[..., int]]:
    """libc's ``prctl`` on Linux (None elsewhere), found once: a ``preexec_fn`` runs between fork and exec, where
    loading a library is unsafe."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def die_with_parent(parent: int) -> None:
    """End this process with SIGKILL when its parent ends (Linux; a no-op elsewhere). If ``parent`` has ended
    already, before the request took effect, end now.

    Args:
        parent: the process id of the parent this process must not outlive.
    """
    if _PRCTL is None:
        return
    _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def child_preexec() -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` for ``subprocess.Popen`` that makes the child die with this process (None where the
    operating system offers no parent-death signal)."""
    return partial(die_with_parent, os.getpid()) if _PRCTL is not None else None


def running(pid: int) -> bool:
    """Whether process ``pid`` exists.

    Args:
        pid: the process id.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        pass
    return True


def follow_parent() -> None:
    """In a process started with ``PARENT_ENV`` set: die with that parent, and pass the duty on, so processes this
    one starts die with it in turn. Started by it through another process (a launcher, a shell), die with that one
    instead: only a named parent that has ended already ends this process at once."""
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit():
        named = int(parent)
        die_with_parent(named if os.getppid() == named or not running(named) else os.getppid())
        os.environ[PARENT_ENV] = str(os.getpid())


__all__ = ["PARENT_ENV", "child_preexec", "die_with_parent", "follow_parent", "running"]
