"""Evaluate a Keras model through tf_clrp's canonical graph, without touching the user's model.

The metrics need two things the user's model does not offer directly: the pre-softmax logits
and the ability to restart the computation from a modified hidden tensor. Both come from the
engine's graph (``tf_clrp.graph.trace_model`` canonized with ``canonizers.LOGITS``: linear
layers split from their activations, a final softmax/sigmoid stripped, every layer's own
output kept), evaluated by the engine's node executor (``tf_clrp.graph.execute``) inside a
``tf.function`` compiled once per input signature (batch dimension ``None``). Calling layers
on concrete or traced tensors creates no Keras graph nodes, so the user's layers, weights and
graph metadata are left exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_clrp import canonizers
from tf_clrp.errors import InputError, ModelStructureError
from tf_clrp.graph import Graph, Node, execute, trace_model
from tf_clrp.metrics._common import chunks


def compile_nodes(
    nodes: Sequence[Node],
    inputs: Sequence[int],
    outputs: Sequence[int],
    specs: Sequence[tf.TensorSpec],
) -> Callable[..., list[tf.Tensor]]:
    """Compile the evaluation of ``nodes`` (in order) into one ``tf.function``.

    Args:
        nodes: graph nodes in execution order.
        inputs: ids of the tensors given as arguments (one per spec).
        outputs: ids of the tensors returned.
        specs: input signature, one ``tf.TensorSpec`` per input id.

    Returns:
        ``f(*tensors) -> [tensor per output id]``.
    """
    nodes, inputs, outputs = list(nodes), list(inputs), list(outputs)

    def run(*tensors: tf.Tensor) -> list[tf.Tensor]:
        values = execute(nodes, dict(zip(inputs, tensors)))
        return [values[t] for t in outputs]

    return tf.function(run, input_signature=list(specs))


def batch_spec(shape: Sequence[int | None], dtype: Any = tf.float32) -> tf.TensorSpec:
    """A TensorSpec for batches of ``shape`` (the batch dimension left open)."""
    return tf.TensorSpec((None, *shape[1:]), dtype)


class CanonicalModel:
    """A functional or Sequential Keras model as its canonical graph.

    Args:
        model: functional or built Sequential Keras model, single input and output (nested
            models are inlined).
        logits: drop a final softmax/sigmoid (explain pre-activation logits).

    Raises:
        ModelStructureError: the model has no functional graph or several inputs/outputs.
    """

    def __init__(self, model: keras.Model, logits: bool = True) -> None:
        self.traced: Graph = trace_model(model)
        sequence = (
            canonizers.LOGITS
            if logits
            else canonizers.without(canonizers.LOGITS, canonizers.strip_output_activation)
        )
        self.graph: Graph = canonizers.canonize(self.traced, sequence)
        self.input_spec = batch_spec(self.graph.input_shape)
        self._forward = compile_nodes(
            self.graph.nodes, [self.graph.input_id], [self.graph.output_id], [self.input_spec]
        )

    def as_input(self, x: Any) -> tf.Tensor:
        """Convert a batch to a float32 tensor matching the model's input shape."""
        x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        if not self.input_spec.shape.is_compatible_with(x.shape):
            raise InputError(
                f"input batch has shape {tuple(x.shape)}; model {self.graph.model_name!r} "
                f"expects {tuple(self.input_spec.shape)}"
            )
        return x

    def __call__(self, x: Any) -> np.ndarray:
        """The (logit) output for a batch, as a numpy array."""
        return self._forward(self.as_input(x))[0].numpy()


def score_function(model: Any, logits: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """Turn a Keras model or any callable into ``f(images) -> scores`` returning numpy.

    Args:
        model: a Keras model (functional/Sequential: evaluated through its canonical graph,
            a final softmax/sigmoid stripped when ``logits``, compiled once; other Keras
            models, e.g. subclassed or multi-input ones, are called as they are) or any
            callable.
        logits: strip a final softmax/sigmoid of a Keras model.

    Returns:
        A function mapping a numpy batch to a numpy array of scores (float64).
    """
    if isinstance(model, keras.Model):
        try:
            fn: Callable = CanonicalModel(model, logits=logits)
        except ModelStructureError:  # no single-input/-output graph: call the model as it is

            def fn(x: np.ndarray) -> Any:
                return model(x, training=False)

    elif callable(model):
        fn = model
    else:
        raise TypeError(f"model must be a Keras model or a callable, got {type(model).__name__}")

    def scores(x: np.ndarray) -> np.ndarray:
        out = fn(x)
        if hasattr(out, "numpy"):
            out = out.numpy()
        return np.asarray(out, dtype=np.float64)

    return scores


def batched(
    fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int | None
) -> np.ndarray:
    """Apply ``fn`` to ``x`` in chunks of ``batch_size`` rows and concatenate the results."""
    if len(x) == 0:
        raise ValueError("empty batch")
    return np.concatenate([fn(x[s]) for s in chunks(len(x), batch_size)], axis=0)
