"""Moved to :mod:`tf_clrp.analyzers.model_agnostic`; this old import path re-exports it."""

from tf_clrp.analyzers.model_agnostic import Occlusion, PredictionDifference

__all__ = ["Occlusion", "PredictionDifference"]
