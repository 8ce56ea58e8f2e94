"""Analyzers: each explains one output (or hidden layer) of a Keras model.

The engine's (``Analyzer`` subclasses) and the model-agnostic ones (``PerturbationAnalyzer``:
Occlusion, Prediction Difference, RISE), each registered by name in ``tf_clrp.registry``.
"""

from tf_clrp.analyzers.base import Analyzer
from tf_clrp.analyzers.cam import GradCAM, GradCAMPlusPlus, GuidedGradCAM, LayerCAM
from tf_clrp.analyzers.contrastive import CLRP, ContrastiveExplanation
from tf_clrp.analyzers.gradient_methods import IntegratedGradients, SmoothGrad
from tf_clrp.analyzers.model_agnostic import Occlusion, PerturbationAnalyzer, PredictionDifference
from tf_clrp.analyzers.propagation import Propagation
from tf_clrp.analyzers.rise import RISE
from tf_clrp.analyzers.sglrp import SGLRP

__all__ = [
    "Analyzer",
    "CLRP",
    "SGLRP",
    "ContrastiveExplanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedGradCAM",
    "IntegratedGradients",
    "LayerCAM",
    "Occlusion",
    "PerturbationAnalyzer",
    "PredictionDifference",
    "Propagation",
    "RISE",
    "SmoothGrad",
]
