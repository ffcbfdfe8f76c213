"""What a stage is: its name, the stages whose results it reads, the ``results.json`` sections it writes, the
inputs a finished run of it depends on, and its work; plus the ``hyctas bench`` run two stages share."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Dict, List, Sequence, Tuple

from hyctas_lightning.fileio import read_json

from .. import commands
from ..context import RunContext
from ..jobs import Job


class Stage:
    """One stage of the pipeline. The driver checks that the stages in ``reads`` finished before it runs, skips it
    when it finished before with the same ``inputs``, and records what ``run`` returns as its outputs; ``run`` may
    write only the ``writes`` sections of ``results.json``."""

    name: ClassVar[str] = ""
    reads: ClassVar[Tuple[str, ...]] = ()
    writes: ClassVar[Tuple[str, ...]] = ()
    uses_gpus: ClassVar[bool] = True

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        """What a finished run of the stage depends on: its settings and the digests of what it reads."""
        raise NotImplementedError

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        """Do the stage's work (resuming what finished before); its outputs, recorded in the manifest."""
        raise NotImplementedError

    def products(self, ctx: RunContext) -> List[Path]:
        """The files of its finished run that later stages read (none by default): one that is gone stops them
        with the stage to rerun named, rather than failing inside a sub-command."""
        return []


def size_key(size: Sequence[int]) -> str:
    """``HxW`` text of an image size, as folder names and report keys use it.

    Args:
        size: (height, width).
    """
    return f"{int(size[0])}x{int(size[1])}"


def bench(ctx: RunContext, source: List[str], out: Path, size: Sequence[int], variants: Sequence[str], warmup: int,
          runs: int, device: str, gpus: Sequence[str]) -> Dict[str, Any]:
    """``hyctas bench`` of one network into ``out`` (reused if it finished before); its ``bench.json``.

    Args:
        ctx: the run.
        source: the arguments naming the network (``--network``, ``--arch`` or ``--ckpt``).
        out: its output folder.
        size: (height, width) of the input.
        variants: ``hyctas bench`` variants.
        warmup: untimed passes.
        runs: timed passes.
        device: ``cuda`` or ``cpu``.
        gpus: the GPU it runs on (none on a CPU).
    """
    job = Job(f"bench:{ctx.rel(out)}", commands.command("bench", source, commands.bench(size, variants, device,
                                                                                        warmup, runs, out)),
              out / "bench.log", f"bench {ctx.rel(out)}", out)
    ctx.run_once(job, gpus, out / "bench.json")
    return read_json(out / "bench.json")
