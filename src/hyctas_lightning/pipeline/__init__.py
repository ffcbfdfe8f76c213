"""The whole method as one resumable run driven by YAML: supernet, latency cap, search, rank-correlation study,
retraining against baselines, evaluation, latency, model zoo and report (``hyctas pipeline``)."""
from .config import STAGES, Baseline, PipelineConfig, PipelineConfigError
from .manifest import Manifest, PipelineError
from .run import Pipeline, run_pipeline

__all__ = ["STAGES", "Baseline", "Manifest", "Pipeline", "PipelineConfig", "PipelineConfigError", "PipelineError",
           "run_pipeline"]
