"""Evaluation metrics and model-agnostic baselines for explanation maps.

Everything works on numpy batches: maps (N, H, W) or (N, H, W, C) (reduced by channel sum),
images (N, H, W, C), regions as boolean masks or half-open boxes ``(y0, x0, y1, x1)``.
See docs/metrics.md for the exact formulas.
"""

from .discriminativeness import (
    DiscriminativenessReport,
    discriminativeness_report,
    map_correlation,
    relevance_mass_in_region,
)
from .insertion_deletion import InsertionDeletionResult, insertion_deletion, trapezoid_auc
from .model_agnostic import Occlusion, PredictionDifference
from .perturbation import PerturbationResult, patch_scores, region_perturbation
from .pointing import (
    PointingGame,
    PointingGameResult,
    center_baseline,
    max_points,
    pointing_game,
    random_baseline,
    random_hit_rate,
)
from .quantus import explain_func
from .randomization import RandomizationResult, model_randomization, ssim
from .rise import RISE, make_masks
from .unit_ablation import rank_agreement, unit_ablation, unit_relevance

__all__ = [
    "DiscriminativenessReport",
    "InsertionDeletionResult",
    "Occlusion",
    "PerturbationResult",
    "PointingGame",
    "PointingGameResult",
    "PredictionDifference",
    "RandomizationResult",
    "RISE",
    "center_baseline",
    "discriminativeness_report",
    "explain_func",
    "insertion_deletion",
    "map_correlation",
    "make_masks",
    "max_points",
    "model_randomization",
    "patch_scores",
    "pointing_game",
    "random_baseline",
    "random_hit_rate",
    "rank_agreement",
    "region_perturbation",
    "relevance_mass_in_region",
    "ssim",
    "trapezoid_auc",
    "unit_ablation",
    "unit_relevance",
]
