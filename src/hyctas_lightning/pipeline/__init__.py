"""The whole method as one resumable run driven by YAML: supernet, latency cap, search, rank-correlation study,
retraining against baselines, evaluation, latency, model zoo and report (``hyctas pipeline``)."""
from .config import STAGES, Baseline, PipelineConfig, PipelineConfigError
from .context import RunContext
from .manifest import Manifest, PipelineError
from .run import Pipeline, run_pipeline
from .stages import STAGE_RUNNERS, Stage

__all__ = ["STAGES", "STAGE_RUNNERS", "Baseline", "Manifest", "Pipeline", "PipelineConfig", "PipelineConfigError",
           "PipelineError", "RunContext", "Stage", "run_pipeline"]
