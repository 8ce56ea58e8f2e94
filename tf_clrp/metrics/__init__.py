"""Evaluation metrics and model-agnostic baselines for explanation maps.

Everything works on numpy batches: maps (N, H, W) or (N, H, W, C) (reduced by channel sum),
images (N, H, W, C), regions as boolean masks or half-open boxes ``(y0, x0, y1, x1)``.
See docs/metrics.md for the exact formulas.

The model-agnostic analyzers ``Occlusion``, ``PredictionDifference`` and ``RISE`` live in
``tf_clrp.analyzers``; the names here are kept for old imports and loaded on first use.
"""

import importlib
from typing import Any

from tf_clrp.metrics.discriminativeness import (
    DiscriminativenessReport,
    discriminativeness_report,
    map_correlation,
    relevance_mass_in_region,
)
from tf_clrp.metrics.insertion_deletion import (
    InsertionDeletionResult,
    insertion_deletion,
    trapezoid_auc,
)
from tf_clrp.metrics.perturbation import PerturbationResult, patch_scores, region_perturbation
from tf_clrp.metrics.pointing import (
    PointingGame,
    PointingGameResult,
    center_baseline,
    max_points,
    pointing_game,
    random_baseline,
    random_hit_rate,
    random_hit_rates,
)
from tf_clrp.metrics.quantus import explain_func
from tf_clrp.metrics.randomization import RandomizationResult, model_randomization, ssim
from tf_clrp.metrics.unit_ablation import rank_agreement, unit_ablation, unit_relevance

#: Names re-exported from ``tf_clrp.analyzers`` (lazily: those modules import this package).
_MOVED = {
    "Occlusion": "tf_clrp.analyzers.model_agnostic",
    "PredictionDifference": "tf_clrp.analyzers.model_agnostic",
    "RISE": "tf_clrp.analyzers.rise",
    "make_masks": "tf_clrp.analyzers.rise",
}


def __getattr__(name: str) -> Any:
    """Loads a name that moved to ``tf_clrp.analyzers`` on first access."""
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'tf_clrp.metrics' has no attribute {name!r}")


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
    "random_hit_rates",
    "rank_agreement",
    "region_perturbation",
    "relevance_mass_in_region",
    "ssim",
    "trapezoid_auc",
    "unit_ablation",
    "unit_relevance",
]
