"""Does the supernet rank? Everything about the agreement between a supernet's estimates and the same
architectures trained alone: the rank statistics (one Kendall tau), the standalone references and their cache, the
diagnosis of a panel of sub-networks, its callback during training, a study's report and its results read back,
and a surrogate of standalone accuracy for when weight sharing alone does not rank."""
from .callback import RankingCallback
from .correlation import RankCorrelation, kendall, kendall_tau, rank_correlation
from .diagnosis import RankingReport, correlate, diagnose, estimate_panel, references_for
from .finetune import Finetune, FinetuneScorer, finetune_from
from .references import ReferenceCache, StandaloneRecipe, data_identity, load_references
from .study import RankPair, RankStudy, read_rank_study
from .surrogate import Surrogate, fit_surrogate, loo_predictions

__all__ = ["Finetune", "FinetuneScorer", "RankCorrelation", "RankPair", "RankStudy", "RankingCallback",
           "RankingReport", "ReferenceCache", "StandaloneRecipe", "Surrogate", "correlate", "data_identity",
           "diagnose", "estimate_panel", "finetune_from", "fit_surrogate", "kendall", "kendall_tau",
           "load_references", "loo_predictions", "rank_correlation", "read_rank_study", "references_for"]
