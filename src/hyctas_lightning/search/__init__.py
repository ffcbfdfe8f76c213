"""Multi-objective search over a trained supernet (paper section 3.4, Algorithm 1)."""
from .callback import SearchCallback
from .config import SearchConfig
from .engine import LocalSettings, Measurement, NothingFeasible, NSGA2Settings, SearchRun, run_strategy
from .journal import Candidate, Journal
from .objectives import OBJECTIVES, Objective, register_objective
from .registry import STRATEGIES, register_strategy
from .runner import SearchResult, run_search, search_with

__all__ = ["OBJECTIVES", "STRATEGIES", "Candidate", "Journal", "LocalSettings", "Measurement", "NSGA2Settings",
           "NothingFeasible", "Objective",
           "SearchCallback", "SearchConfig", "SearchResult", "SearchRun", "register_objective", "register_strategy",
           "run_search", "run_strategy", "search_with"]
