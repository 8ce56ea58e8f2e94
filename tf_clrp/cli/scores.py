"""The explained score of each row: the pre-activation logit and its probability.

The analyzers explain the output *without* a final softmax/sigmoid (the logit); the grids
show that logit and the probability next to the class name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tf_clrp.cli import models


def score_function(
    model: Any, output_index: int | None
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``f(x) -> (logits, probabilities)`` for the explained output, each (batch, units).

    The logits come from tf_clrp's canonical graph of the output with its final activation
    stripped, as the analyzers see it. Probabilities: the stripped softmax or sigmoid; for
    an output without one, softmax over several units and sigmoid of a single unit.
    """
    from tf_clrp.canonizers import LOGITS, canonize
    from tf_clrp.graph import trace_model
    from tf_clrp.metrics._keras import batch_spec, compile_nodes

    graph = canonize(trace_model(model, output_index), LOGITS)
    forward = compile_nodes(
        graph.nodes, [graph.input_id], [graph.output_id], [batch_spec(graph.input_shape)]
    )
    activation = graph.stripped_output_activation

    def scores(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = np.asarray(forward(np.asarray(x, np.float32))[0], np.float64)
        logits = logits.reshape(len(logits), -1)
        if activation == "sigmoid" or (activation is None and logits.shape[1] == 1):
            return logits, 1.0 / (1.0 + np.exp(-logits))
        return logits, models.softmax(logits)

    return scores


def score_label(index: int, names: Sequence[str] | None, logit: float, probability: float) -> str:
    """``"name (index): logit 9.13, p 0.83"``, the row label of a grid."""
    return f"{models.label(index, names)}: logit {logit:.3g}, p {probability:.3g}"
