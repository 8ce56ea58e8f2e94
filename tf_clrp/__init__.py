"""tf_clrp: Contrastive Layer-wise Relevance Propagation and the LRP family for Keras 3.

Quick start::

    import tf_clrp
    analyzer = tf_clrp.create_analyzer("clrp", model, contrast="others")
    heatmaps = analyzer.analyze(images, neuron_selection=class_index)

The names below are imported on first use (PEP 562), so ``import tf_clrp`` and the
``tf-clrp --help``/``--version``/``list`` commands do not import TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "CLRP": "tf_clrp.analyzers",
    "SGLRP": "tf_clrp.analyzers",
    "Analyzer": "tf_clrp.analyzers",
    "ContrastiveExplanation": "tf_clrp.analyzers",
    "IntegratedGradients": "tf_clrp.analyzers",
    "Propagation": "tf_clrp.analyzers",
    "SmoothGrad": "tf_clrp.analyzers",
    "InputError": "tf_clrp.errors",
    "ModelStructureError": "tf_clrp.errors",
    "NonFiniteError": "tf_clrp.errors",
    "SelectionError": "tf_clrp.errors",
    "TfClrpError": "tf_clrp.errors",
    "UnsupportedLayerError": "tf_clrp.errors",
    "create_analyzer": "tf_clrp.registry",
    "list_analyzers": "tf_clrp.registry",
    "model_wo_output_activation": "tf_clrp.logits",
    "model_wo_softmax": "tf_clrp.logits",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
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
        NonFiniteError,
        SelectionError,
        TfClrpError,
        UnsupportedLayerError,
    )
    from tf_clrp.logits import model_wo_output_activation, model_wo_softmax
    from tf_clrp.registry import create_analyzer, list_analyzers


def __getattr__(name: str) -> Any:
    """Imports a public name, or a submodule (``tf_clrp.visualize``), on first access."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"tf_clrp.{name}") is not None:
        value = importlib.import_module(f"tf_clrp.{name}")
    else:
        raise AttributeError(f"module 'tf_clrp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "CLRP",
    "SGLRP",
    "Analyzer",
    "ContrastiveExplanation",
    "InputError",
    "IntegratedGradients",
    "ModelStructureError",
    "NonFiniteError",
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
