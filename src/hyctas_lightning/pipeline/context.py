"""What every stage of a run shares: the config, the run folder, its manifest and ``results.json``, the GPUs, and
the running of ``hyctas`` sub-commands with their logs in the folder and their records in the manifest."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hyctas_lightning.errors import EXIT_NOTHING_FEASIBLE, ConfigError, DeviceUnavailable
from hyctas_lightning.fileio import read_json, write_json

from .config import PipelineConfig
from .jobs import Job, JobResult, display, failure_summary, run_jobs, visible_gpus
from .manifest import DONE, Manifest, PipelineError

log = logging.getLogger(__name__)
OUT_OF_MEMORY = "out of memory"


class RunContext:
    """One run folder and the stage running in it.

    Args:
        config: the pipeline settings; ``config.run`` is the folder.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.folder = Path(config.run)
        self.manifest = Manifest(self.folder)
        self.results_path = self.folder / "results.json"
        self.stage = ""
        self.writes: Sequence[str] = ()
        self._gpus: Optional[List[str]] = None

    # ------------------------------------------------------------------ the run folder
    def rel(self, path: Path) -> str:
        """``path`` relative to the run folder, as the manifest and results record paths."""
        return str(Path(path).relative_to(self.folder))

    def results(self) -> Dict[str, Any]:
        """``results.json`` as it is now (empty before any stage wrote it)."""
        return read_json(self.results_path, {})

    def save_results(self, **sections: Any) -> Dict[str, Any]:
        """Replace these sections of ``results.json``; only the sections the running stage declares it writes."""
        undeclared = sorted(set(sections) - set(self.writes))
        if undeclared:
            raise RuntimeError(f"stage '{self.stage}' writes results section(s) {undeclared} it does not declare")
        results = {**self.results(), **sections}
        write_json(self.results_path, results)
        return results

    def require(self, stage: str, reader: Optional[str] = None) -> Dict[str, Any]:
        """The recorded outputs of a finished ``stage``; a clear error naming the command that makes them.

        Args:
            stage: the stage whose outputs are needed.
            reader: the stage that needs them, as the error names it (default: the stage running now).
        """
        if self.manifest.status(stage) != DONE:
            raise ConfigError(f"stage '{reader or self.stage}' needs the '{stage}' stage's results; run --stages "
                              f"{stage} first")
        return self.manifest.outputs(stage)

    def upstream(self, stage: str) -> str:
        """The digest of a stage's recorded outputs: what a later stage's inputs hold of it."""
        return self.manifest.outputs_digest(stage)

    # ------------------------------------------------------------------ devices
    @property
    def gpus(self) -> List[str]:
        """The GPUs this run spreads its processes over (``gpus`` of the visible ones)."""
        if self._gpus is None:
            visible = visible_gpus(self.config.device)
            if self.config.device == "cuda" and not visible:
                raise DeviceUnavailable("device: cuda, but no GPU is visible; use device: auto or cpu")
            wanted = self.config.gpus
            if wanted is not None:
                bad = [i for i in wanted if not 0 <= i < len(visible)]
                if bad:
                    raise DeviceUnavailable(f"gpus: {bad} out of range; {len(visible)} GPU(s) visible")
            self._gpus = visible if wanted is None else [visible[i] for i in wanted]
        return self._gpus

    def using(self, gpus: int) -> None:
        """Record how many GPUs the running stage holds (its GPU-minutes count them)."""
        self.manifest.stage(self.stage)["attempts"][-1]["gpus"] = gpus
        self.manifest.save()

    # ------------------------------------------------------------------ sub-commands
    def run_job(self, job: Job, gpus: Sequence[str]) -> int:
        """Run one sub-command (on ``gpus``, all visible to it) and return its exit status; a failure stops the
        stage with its log's tail (``hyctas search`` finding nothing feasible is left to the stage to report)."""
        self.manifest.add_command(self.stage, display(job.argv))
        result = run_jobs([job], [",".join(gpus)] if gpus else [], on_tick=self._heartbeat)[job.key]
        if not result.ok and result.returncode != EXIT_NOTHING_FEASIBLE:
            raise PipelineError(f"stage '{self.stage}' failed:\n{failure_summary([job], {job.key: result})}")
        return result.returncode

    def run_once(self, job: Job, gpus: Sequence[str], product: Path) -> None:
        """Run a sub-command unless it finished before and its ``product`` file exists, recording it as a job."""
        if self.manifest.job_done(job.key) and product.exists():
            self.manifest.add_command(self.stage, display(job.argv))
            return
        self.run_job(job, gpus)
        self.manifest.record_job(job.key, {"stage": self.stage, "status": DONE, "command": display(job.argv),
                                           "log": self.rel(job.log)})

    def _heartbeat(self) -> None:
        self.manifest.heartbeat(self.stage)

    def run_many(self, jobs: Sequence[Job], per_gpu: int, what: str) -> None:
        """Run the unfinished ``jobs`` over the GPUs (``per_gpu`` each; one at a time on the CPU), recording each in
        the manifest as it ends; afterwards, any failure stops the stage naming every failed job.

        Args:
            jobs: every job of the stage (finished ones are skipped, but listed among its commands).
            per_gpu: jobs sharing one GPU.
            what: what the jobs are, for progress messages (``trainings``).
        """
        todo = [job for job in jobs if not self.manifest.job_done(job.key)]
        for job in jobs:
            self.manifest.add_command(self.stage, display(job.argv))
        if not todo:
            return
        self.using(min(len(self.gpus), math.ceil(len(todo) / per_gpu)) if self.gpus else 0)
        log.info("[%s] %d %s to run (%d finished before)", self.stage, len(todo), what, len(jobs) - len(todo))
        results = run_jobs(todo, self.gpus, per_gpu if self.gpus else 1, on_done=self._record, on_tick=self._heartbeat)
        crowded = [job for job in todo if not results[job.key].ok and per_gpu > 1 and self.gpus
                   and OUT_OF_MEMORY in results[job.key].tail]
        if crowded:  # too big to share a GPU: once more, alone on one
            log.info("[%s] %d job(s) ran out of GPU memory beside others; retrying them one per GPU", self.stage,
                     len(crowded))
            results.update(run_jobs(crowded, self.gpus, 1, on_done=self._record, on_tick=self._heartbeat))
        failed = [job for job in todo if not results[job.key].ok]
        if failed:
            raise PipelineError(f"stage '{self.stage}': {len(failed)} of {len(todo)} job(s) failed (the others "
                                f"finished and are kept; rerun to retry):\n{failure_summary(failed, results)}")

    def _record(self, job: Job, result: JobResult) -> None:
        self.manifest.record_job(job.key, {"stage": self.manifest.job(job.key).get("stage", self.stage),
                                           "status": DONE if result.ok else "failed",
                                           "returncode": result.returncode, "seconds": result.seconds,
                                           "gpu": result.gpu, "command": display(job.argv), "log": self.rel(job.log)})
