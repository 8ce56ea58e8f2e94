"""tf_clrp: Contrastive Layer-wise Relevance Propagation and the LRP family for Keras 3.

Quick start::

    import tf_clrp
    analyzer = tf_clrp.create_analyzer("clrp", model, contrast="others")
    heatmaps = analyzer.analyze(images, neuron_selection=class_index)
"""

from tf_clrp import analyzer, bounds, composites, rules
from tf_clrp.analyzers import (
    CLRP,
    SGLRP,
    Analyzer,
    ContrastiveExplanation,
    IntegratedGradients,
    Propagation,
    SmoothGrad,
)
from tf_clrp.errors import (
    InputError,
    ModelStructureError,
    SelectionError,
    TfClrpError,
    UnsupportedLayerError,
)
from tf_clrp.logits import model_wo_output_activation, model_wo_softmax
from tf_clrp.registry import create_analyzer, list_analyzers

__version__ = "0.1.0"

__all__ = [
    "CLRP",
    "SGLRP",
    "Analyzer",
    "ContrastiveExplanation",
    "InputError",
    "IntegratedGradients",
    "ModelStructureError",
    "Propagation",
    "SelectionError",
    "SmoothGrad",
    "TfClrpError",
    "UnsupportedLayerError",
    "analyzer",
    "bounds",
    "composites",
    "create_analyzer",
    "list_analyzers",
    "model_wo_output_activation",
    "model_wo_softmax",
    "rules",
]
