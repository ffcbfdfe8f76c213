"""One error handler for every ``hyctas`` command: the project's own errors and the common mistakes of a user
(a bad value, a missing file, an output folder under a file, a GPU that is not there, a folder another process is
writing) become one line on stderr
and an exit status per kind; anything else is a bug and keeps its traceback. ``--debug`` (or ``HYCTAS_DEBUG=1``)
prints the traceback of every error as well."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import List, Optional, Tuple

from hyctas_lightning.errors import EXIT_NOTHING_FEASIBLE  # the search found no architecture within the limits

EXIT_PROBLEMS = 1  # `hyctas data check` found problems, a pipeline stage failed (and Python's own status for an
# unexpected error)
EXIT_USAGE = 2  # a bad option, config value or name
EXIT_CHECKPOINT = 4  # a checkpoint is missing, unreadable, untrusted, of the wrong kind or does not fit
EXIT_DATASET = 5  # the data is missing or broken
EXIT_ARCHITECTURE = 6  # an architecture file is invalid
EXIT_CLASSES = 7  # model or checkpoint and data disagree on the class count
EXIT_DIVERGED = 8  # training produced a non-finite loss or weights
EXIT_DEVICE = 9  # a GPU was asked for and there is none
EXIT_FILES = 10  # a file is missing, or an output cannot be written
EXIT_BUSY = 11  # another process is writing the output folder (its lock names it)

EXIT_CODES = {
    EXIT_PROBLEMS: "`hyctas data check` found problems; `hyctas pipeline`: a stage failed (its jobs' logs named)",
    EXIT_USAGE: "bad option, config value or name (unknown objective, network, op, strategy)",
    EXIT_NOTHING_FEASIBLE: "search: no architecture met the latency cap / minimum mIoU",
    EXIT_CHECKPOINT: "checkpoint missing, corrupt, holding code, of the wrong kind, or not fitting the network",
    EXIT_DATASET: "dataset missing or broken (DatasetError)",
    EXIT_ARCHITECTURE: "invalid architecture (ArchitectureError)",
    EXIT_CLASSES: "class count of the model or checkpoint differs from the data's",
    EXIT_DIVERGED: "training diverged: NaN or infinite loss or weights",
    EXIT_DEVICE: "a GPU was asked for but none is available",
    EXIT_FILES: "a file is missing or unreadable (a JSON file cut short), or an output cannot be written",
    EXIT_BUSY: "another process is writing the output folder (the message names it); wait for it or stop it",
}
DEBUG_HINT = "(--debug or HYCTAS_DEBUG=1 prints the traceback)"


def _own_errors() -> List[Tuple[int, tuple]]:
    """The project's errors, most specific first; imported only when something failed."""
    from hyctas_lightning.checkpoints import CheckpointError
    from hyctas_lightning.data.files import DatasetError
    from hyctas_lightning.errors import ClassCountError, ConfigError, DeviceUnavailable, TrainingDiverged
    from hyctas_lightning.fileio import JSONFileError
    from hyctas_lightning.locks import LockHeld
    from hyctas_lightning.pipeline.manifest import PipelineError
    from hyctas_lightning.search.engine import NothingFeasible
    from hyctas_lightning.search_space import ArchitectureError

    return [(EXIT_CHECKPOINT, (CheckpointError,)), (EXIT_DATASET, (DatasetError,)),
            (EXIT_ARCHITECTURE, (ArchitectureError,)), (EXIT_CLASSES, (ClassCountError,)),
            (EXIT_DIVERGED, (TrainingDiverged,)), (EXIT_DEVICE, (DeviceUnavailable,)),
            (EXIT_NOTHING_FEASIBLE, (NothingFeasible,)), (EXIT_USAGE, (ConfigError,)), (EXIT_FILES, (JSONFileError,)),
            (EXIT_BUSY, (LockHeld,)), (EXIT_PROBLEMS, (PipelineError,))]


def _user_errors() -> List[Tuple[int, tuple]]:
    """Common mistakes reported by Python, jsonargparse or Lightning rather than by the project."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return [(EXIT_FILES, (OSError,)), (EXIT_USAGE, (ValueError, KeyError, MisconfigurationException))]


def _chain(error: BaseException) -> List[BaseException]:
    """``error`` and the errors it was raised from (outermost first), as Python would print them."""
    chain: List[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return chain


def raised_by_hyctas(error: BaseException) -> bool:
    """Whether the package's own code raised ``error`` (its messages are written for the user)."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and "hyctas_lightning" in Path(frame.tb_frame.f_code.co_filename).parts


def classify(error: BaseException) -> Optional[Tuple[int, BaseException, bool]]:
    """(exit status, the error to report, whether its message is the project's own) or None for an unexpected
    error.

    The project's errors are found anywhere in the chain, since jsonargparse wraps what a class raises while it
    is built; for the others the root cause speaks first."""
    chain = _chain(error)
    for candidate in chain:
        for code, types in _own_errors():
            if isinstance(candidate, types):
                return code, candidate, True
    for candidate in (chain[-1], chain[0]):
        for code, types in _user_errors():
            if isinstance(candidate, types):
                return code, candidate, raised_by_hyctas(candidate)
    return None


def message(error: BaseException, own: bool) -> str:
    """The error's text: the project's messages whole (they are written for the user), others' first line and a
    pointer to the traceback."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    text = str(text).strip() or type(error).__name__
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: the error's own message comes last
        text = text.rsplit(f"{type(error).__name__}: ", 1)[-1].strip()
    if own:
        return text
    first = text.splitlines()[0]
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        first += "; a part of the output path is a file: choose another folder"
    return f"{first} {DEBUG_HINT}"


def report(error: Exception, prog: str, debug: bool) -> int:
    """Print ``error`` as one line (and its traceback with ``debug``) and return its exit status; re-raise an
    unexpected error, whose traceback is what a bug report needs."""
    found = classify(error)
    if found is None:
        raise error
    code, cause, own = found
    if debug:
        traceback.print_exception(error)
    print(f"{prog}: error: {message(cause, own)}", file=sys.stderr)
    return code
