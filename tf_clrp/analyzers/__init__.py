"""Analyzers: each explains one output (or hidden layer) of a Keras model."""

from tf_clrp.analyzers.base import Analyzer
from tf_clrp.analyzers.cam import GradCAM, GradCAMPlusPlus, GuidedGradCAM, LayerCAM
from tf_clrp.analyzers.contrastive import CLRP, SGLRP, ContrastiveExplanation
from tf_clrp.analyzers.gradient_methods import IntegratedGradients, SmoothGrad
from tf_clrp.analyzers.propagation import Propagation

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
    "Propagation",
    "SmoothGrad",
]
