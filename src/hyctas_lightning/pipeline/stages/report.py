"""Stage ``report``: ``REPORT.md`` and its plots from the run folder's files alone, and their publication."""
from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict

from hyctas_lightning.fileio import read_json

from ..context import RunContext
from ..manifest import PipelineError
from ..report import write_report
from .base import Stage

log = logging.getLogger(__name__)
REPORT_FILES = ("manifest.json", "results.json", "candidates.json")


class WriteReport(Stage):
    """Regenerate the report from ``manifest.json``, ``results.json`` and ``candidates.json``; it always runs."""

    name = "report"
    uses_gpus = False

    def inputs(self, ctx: RunContext) -> Dict[str, Any]:
        return {"report": asdict(ctx.config.report)}

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        missing = [f for f in REPORT_FILES[1:] if not (ctx.folder / f).exists()]
        if missing:
            raise PipelineError(f"stage 'report': {', '.join(missing)} missing in {ctx.folder}; run the stages "
                                f"before the report")
        written = write_report(ctx.folder, ctx.config.report.title, ctx.manifest.data, ctx.results(),
                               read_json(ctx.folder / "candidates.json"))
        return {"report": [ctx.rel(p) for p in written]}


def publish(ctx: RunContext) -> None:
    """Copy the report and the files it is made from to ``report.publish``, which then regenerates it on its own."""
    folder = ctx.config.report.publish
    if not folder or Path(folder).resolve() == ctx.folder.resolve():
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [ctx.folder / p for p in ctx.manifest.outputs("report")["report"]]
    for path in [*(ctx.folder / f for f in REPORT_FILES), *written]:
        shutil.copy2(path, folder / path.name)
    log.info("[report] published to %s", folder)
