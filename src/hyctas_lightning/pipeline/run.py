"""The pipeline's driver: runs the chosen stages (``stages/``) in order over one shared run context, skipping those
that finished before with unchanged inputs, recording each attempt, its inputs and outputs in the manifest."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Set

from hyctas_lightning.errors import ConfigError

from .config import STAGES, PipelineConfig
from .context import RunContext
from .jobs import display
from .manifest import DONE
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
            raise ConfigError(f"--stages/--force: unknown stage(s) {unknown}; the stages are {', '.join(STAGES)}")
        self.ctx.config.validate(needs_files=any(s != "report" for s in stages))
        self.manifest.lock()
        chosen = [STAGE_RUNNERS[s] for s in STAGES if s in stages]
        if any(stage.uses_gpus for stage in chosen):
            _ = self.ctx.gpus  # refuses `device: cuda` without a GPU, or `gpus` out of range, at once
        self.argv = list(argv or [])
        # before anything changes: a finished stage whose settings changed, or a stage to run whose earlier stages
        # did not finish or left no files, stops the run
        running = [stage for stage in chosen if stage.name in force or not self._reusable(stage)]
        for stage in chosen:
            if stage not in running:
                self.manifest.check_inputs(stage.name, stage.inputs(self.ctx))
        for stage in running:
            self._check_reads(stage, {s.name for s in running}, force)
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

    def _check_reads(self, stage: Stage, running: Set[str], force: Sequence[str]) -> None:
        """The stages ``stage`` reads finished before or run now; the files it reads of those finished before are
        still there."""
        for name in stage.reads:
            if name in running:
                continue
            self.ctx.require(name, stage.name)
            gone = [path for path in STAGE_RUNNERS[name].products(self.ctx) if not path.exists()]
            if gone:
                raise ConfigError(f"stage '{stage.name}' reads {gone[0]}"
                                  f"{f' (and {len(gone) - 1} more)' if len(gone) > 1 else ''}, which the '{name}' "
                                  f"stage made and is gone; rerun the {name} stage: "
                                  f"{self.rerun_command(name, force)}")

    def rerun_command(self, stage: str, force: Sequence[str] = ()) -> str:
        """This run's command line with ``stage`` added to ``--force`` (and to ``--stages`` where they are given).

        Args:
            stage: the stage to rerun.
            force: the stages this command already forces.
        """
        words, stages, option = [], None, None
        for word in self.argv or ["--run", str(self.folder)]:
            if word.startswith("--"):
                option = word
                stages = [] if option == "--stages" else stages
                if option in ("--stages", "--force"):
                    continue
            if option == "--stages":
                stages.append(word)
            elif option != "--force":
                words.append(word)
        chosen = ["--stages", *dict.fromkeys([stage, *stages])] if stages is not None else []
        return display(["hyctas", "pipeline", *words, *chosen, "--force", *dict.fromkeys([stage, *force])])

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
