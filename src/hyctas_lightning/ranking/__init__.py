"""Does the supernet rank? Everything about the agreement between a supernet's estimates and the same
architectures trained alone: the rank statistics (one Kendall tau), the standalone references and their cache, the
diagnosis of a panel of sub-networks, its callback during training, and a study's results read back."""
from .callback import RankingCallback
from .correlation import RankCorrelation, kendall, kendall_tau, rank_correlation
from .diagnosis import RankingReport, correlate, diagnose, estimate_panel, references_for
from .references import ReferenceCache, StandaloneRecipe, data_identity, load_references
from .study import RankPair, RankStudy, read_rank_study

__all__ = ["RankCorrelation", "RankPair", "RankStudy", "RankingCallback", "RankingReport", "ReferenceCache",
           "StandaloneRecipe", "correlate", "data_identity", "diagnose", "estimate_panel", "kendall", "kendall_tau",
           "load_references", "rank_correlation", "read_rank_study", "references_for"]
