"""The pipeline's stages, one class each, in the order they run (``config.STAGES``)."""
from typing import Dict

from .base import Stage, size_key
from .latency import MeasureLatency
from .report import WriteReport, publish
from .retrain import CheckRanking, Evaluate, Retrain
from .search import SearchSupernet, SetLatencyCap
from .supernet import TrainSupernet
from .zoo import FillZoo

STAGE_RUNNERS: Dict[str, Stage] = {stage.name: stage for stage in (
    TrainSupernet(), SetLatencyCap(), SearchSupernet(), CheckRanking(), Retrain(), Evaluate(), MeasureLatency(),
    FillZoo(), WriteReport())}

__all__ = ["STAGE_RUNNERS", "CheckRanking", "Evaluate", "FillZoo", "MeasureLatency", "Retrain", "SearchSupernet",
           "SetLatencyCap", "Stage", "TrainSupernet", "WriteReport", "publish", "size_key"]
