"""Offline evaluation of next-item and retrieval models: full-ranking HR@K, NDCG@K, MRR.

`evaluate_full_ranking` (the default protocol) ranks each target against the
whole catalog; `evaluate_sampled_ranking` (against 100 sampled negatives) is
biased and only there to reproduce papers; `popularity_scores` is the
most-popular baseline.
"""

from keras_recsys.evaluation.ranking import (
    evaluate_full_ranking,
    evaluate_sampled_ranking,
    full_ranking_metrics,
    metrics_from_ranks,
    popularity_scores,
    sample_negatives,
    sampled_ranking_metrics,
    target_ranks,
)

__all__ = [
    "evaluate_full_ranking",
    "evaluate_sampled_ranking",
    "full_ranking_metrics",
    "metrics_from_ranks",
    "popularity_scores",
    "sample_negatives",
    "sampled_ranking_metrics",
    "target_ranks",
]
