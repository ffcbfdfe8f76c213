"""The pipeline's driver: runs the chosen stages (``stages/``) in order over one shared run context, skipping those
that finished before with unchanged inputs, recording each attempt, its inputs and outputs in the manifest."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence

from .config import STAGES, PipelineConfig
from .context import RunContext
from .manifest import DONE, PipelineError
from .stages import STAGE_RUNNERS, Stage, publish

log = logging.getLogger(__name__)


class Pipeline:
    """One run of the method in the folder ``config.run``.

    Args:
        config: the pipeline settings.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.ctx = RunContext(config)
        self.folder: Path = self.ctx.folder
        self.manifest = self.ctx.manifest
        self.argv: List[str] = []

    def execute(self, stages: Sequence[str] = STAGES, force: Sequence[str] = (),
                argv: Optional[List[str]] = None) -> None:
        """Run ``stages`` in the pipeline's order, skipping finished ones whose inputs are unchanged.

        Args:
            stages: the stages to run (any subset of ``STAGES``).
            force: stages to rerun although finished (their finished jobs are still reused).
            argv: the command line, recorded in the manifest.
        """
        unknown = [s for s in [*stages, *force] if s not in STAGES]
        if unknown:
            raise PipelineError(f"unknown stage(s) {unknown}; the stages are {', '.join(STAGES)}")
        self.ctx.config.validate(needs_files=any(s != "report" for s in stages))
        self.manifest.lock()
        chosen = [STAGE_RUNNERS[s] for s in STAGES if s in stages]
        for stage in chosen:  # before anything changes: a finished stage whose settings changed stops the run
            if stage.name not in force and self._reusable(stage):
                self.manifest.check_inputs(stage.name, stage.inputs(self.ctx))
        self.argv = list(argv or [])
        self.manifest.invoked(self.argv, self.ctx.config.to_dict())
        for name in force:
            self.manifest.reset(name)
        for stage in chosen:
            self._run_stage(stage)
        if "report" in stages:
            publish(self.ctx)

    def _reusable(self, stage: Stage) -> bool:
        """Finished before (the report is made anew every time)."""
        return stage.name != "report" and self.manifest.status(stage.name) == DONE

    def _run_stage(self, stage: Stage) -> None:
        inputs = stage.inputs(self.ctx)
        if self._reusable(stage):
            self.manifest.check_inputs(stage.name, inputs)
            log.info("[%s] finished before, skipped", stage.name)
            return
        log.info("[%s] started", stage.name)
        self.ctx.stage, self.ctx.writes = stage.name, stage.writes
        self.manifest.begin(stage.name, inputs, gpus=int(bool(stage.uses_gpus and self.ctx.gpus)), argv=self.argv)
        try:
            for needed in stage.reads:
                self.ctx.require(needed)
            outputs = stage.run(self.ctx)
        except KeyboardInterrupt:
            self.manifest.finish(stage.name, {}, error="interrupted")
            raise
        except Exception as e:
            self.manifest.finish(stage.name, {}, error=str(e))
            raise
        self.manifest.finish(stage.name, outputs)
        record = self.manifest.stage(stage.name)
        log.info("[%s] finished in %.0f s (%.1f GPU-minutes in all)", stage.name, record["attempts"][-1]["seconds"],
                 record["gpu_minutes"])


def run_pipeline(config: PipelineConfig, stages: Sequence[str] = STAGES, force: Sequence[str] = (),
                 argv: Optional[List[str]] = None) -> Pipeline:
    """Run (or resume) the pipeline; returns it, its manifest and results on disk in ``config.run``.

    Args:
        config: the pipeline settings.
        stages: the stages to run.
        force: stages to rerun although finished.
        argv: the command line, recorded in the manifest.
    """
    pipeline = Pipeline(config)
    pipeline.execute(stages, force, argv)
    return pipeline
