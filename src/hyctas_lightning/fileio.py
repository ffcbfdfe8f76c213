"""The package's text, JSON and checkpoint files are written through here: whole or not at all, and JSON that any
reader parses (figures and images are written by their libraries).

A file is written to a temporary file in its target folder (a unique ``.partial-*.tmp`` name, so two processes
writing the same file never share one, and no glob for the target's name ever matches it), flushed and synced to
disk, then renamed over the target with ``os.replace``: a reader, a kill or a second writer never sees half a file.

JSON is written strictly: ``NaN`` and ``Infinity`` are not JSON, and other languages' parsers refuse them, so a
non-finite float is written as ``null`` (an unmeasured value). A JSON file that cannot be read (cut short, edited by
hand) raises :class:`JSONFileError` naming the file and the place, not a bare ``JSONDecodeError``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional, Union

PathLike = Union[str, Path]
MISSING: Any = object()


class JSONFileError(ValueError):
    """A JSON file that cannot be parsed; the message names the file, the place and what to do."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: PathLike, mode: str = "w") -> Iterator[IO]:
    """A file object whose content replaces ``path`` when the block ends without an error (nothing changes if it
    raises). The folder is created if missing; the file gets the permissions a plain ``open`` would give.

    Args:
        path: the file to write.
        mode: ``w`` (text) or ``wb`` (bytes).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode 'w' or 'wb', got '{mode}'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except OSError as error:  # a full disk or a lost mount names no file: say which one was being written
        Path(tmp).unlink(missing_ok=True)
        if error.filename is not None:
            raise
        raise OSError(error.errno, f"{error.strerror or error} (a previous file there is unchanged)",
                      str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path.

    Args:
        path: the file to write.
        text: its whole content.
    """
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-Infinity) replaced by None, tuples as lists; what JSON holds.

    Args:
        value: plain data (dicts, lists, tuples, numbers, strings).
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(value: Any, indent: Optional[int] = None, sort_keys: bool = False,
              default: Optional[Callable[[Any], Any]] = None) -> str:
    """Strict JSON text of ``value`` (non-finite floats as ``null``): one line without ``indent``, as a JSON-lines
    record needs.

    Args:
        value: plain data.
        indent: spaces per level (None: one line).
        sort_keys: sort every object's keys.
        default: turns other objects into plain data (e.g. ``str`` for paths); None refuses them.
    """
    if default is not None:  # run it first, so what it returns is checked for non-finite floats as well
        value = json.loads(json.dumps(value, default=default))
    return json.dumps(finite(value), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path: PathLike, value: Any, indent: Optional[int] = 1, sort_keys: bool = False,
               default: Optional[Callable[[Any], Any]] = None) -> Path:
    """Write ``value`` as strict JSON (non-finite floats as ``null``) to ``path`` atomically; returns the path.

    Args:
        path: the file to write.
        value: plain data.
        indent: spaces per level (None: one line).
        sort_keys: sort every object's keys.
        default: turns other objects into plain data (e.g. ``str`` for paths); None refuses them.
    """
    return atomic_write_text(path, json_text(value, indent, sort_keys, default) + "\n")


def json_digest(value: Any) -> str:
    """A 16-hex-digit identity of plain data (keys sorted, other objects by ``str``): equal data, equal digest.

    Args:
        value: the data (JSON-serialisable; other values by ``str``).
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_json(path: PathLike, default: Any = MISSING) -> Any:
    """The parsed content of a JSON file; ``default`` (if given) when the file does not exist.

    Args:
        path: the file to read.
        default: returned for a missing file; without it a missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    if default is not MISSING and not path.is_file():
        return default
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        what = "empty" if not text.strip() else f"invalid at line {e.lineno} column {e.colno} ({e.msg})"
        raise JSONFileError(f"{path}: not valid JSON ({what}); it was probably cut short or edited by hand: "
                            f"restore or remove it") from None


__all__ = ["JSONFileError", "atomic_open", "atomic_write_text", "finite", "json_digest", "json_text", "read_json",
           "write_json"]
