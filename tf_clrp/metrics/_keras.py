"""Run a Keras 3 functional graph eagerly, node by node, without touching the user's model.

The metrics need two things the user's model does not offer directly: the pre-softmax logits
and the ability to restart the computation from a modified hidden tensor. Both are done by
interpreting the model's own graph (``model._nodes_by_depth``, ``node.arguments.fill_in``) with
eager layer calls. Eager calls on concrete tensors create no graph nodes, so the user's layers,
weights and graph metadata are left exactly as they were. A final softmax/sigmoid is skipped by
substituting, for the output node only, an activation-free copy of that layer (weights copied).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from ._common import chunks

_STRIPPED = ("softmax", "sigmoid")


def _functional_of(model: keras.Model) -> Any:
    """Return the functional graph behind a Functional or built Sequential model."""
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise ValueError(
                "the Sequential model has no graph yet: start it with keras.Input(...) or call "
                "model.build(input_shape) before using it with tf_clrp.metrics"
            )
        return fn
    if hasattr(model, "_nodes_by_depth") and getattr(model, "inputs", None):
        return model
    raise ValueError(
        f"{type(model).__name__} is not a functional or Sequential Keras model; subclassed "
        "models have no layer graph that can be split"
    )


def _activation_name(layer: Any) -> str | None:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None)
    return name if name in _STRIPPED else None


def _linear_copy(layer: keras.layers.Layer, input_shape: tuple) -> keras.layers.Layer:
    """Build an activation-free copy of ``layer`` holding copies of its weights."""
    config = layer.get_config()
    config["activation"] = "linear"
    try:
        clone = layer.__class__.from_config(config)
        clone.build(input_shape)
        clone.set_weights(layer.get_weights())
    except Exception as err:  # pragma: no cover - exotic layers
        raise ValueError(
            f"cannot evaluate the pre-activation output of layer {layer.name!r} "
            f"({type(layer).__name__}); pass logits=False or a model that outputs logits"
        ) from err
    return clone


class GraphRunner:
    """Eager node-by-node interpreter of a single-output functional Keras model.

    Args:
        model: functional or built Sequential Keras model with one output.
        logits: if True and the output layer ends in softmax/sigmoid, return its input
            (pre-activation) instead.
    """

    def __init__(self, model: keras.Model, logits: bool = True) -> None:
        fn = _functional_of(model)
        self.model = model
        self.inputs = list(fn.inputs)
        outputs = list(fn.outputs)
        if len(outputs) != 1:
            raise ValueError(f"only single-output models are supported, got {len(outputs)}")
        self.output = outputs[0]
        self.nodes = []
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                if node.operation is not None and not node.is_input:
                    self.nodes.append(node)
        self.overrides: dict[int, Callable] = {}
        self.stripped: str | None = None
        if logits:
            node = self.producer(self.output)
            name = _activation_name(node.operation) if node is not None else None
            if name is not None:
                self.stripped = name
                if isinstance(node.operation, (keras.layers.Softmax, keras.layers.Activation)):
                    self.overrides[id(node)] = lambda x, *args, **kwargs: x
                else:
                    shape = tuple(node.input_tensors[0].shape)
                    self.overrides[id(node)] = _linear_copy(node.operation, shape)

    def producer(self, tensor: Any) -> Any:
        """Return the graph node that produced a symbolic tensor (None for model inputs)."""
        op, node_index, _ = tensor._keras_history
        node = op._inbound_nodes[node_index]
        return None if node.is_input else node

    def run(self, values: dict[int, Any], nodes: Sequence[Any]) -> dict[int, Any]:
        """Evaluate ``nodes`` in order, reading and filling ``values`` (id(KerasTensor) → value)."""
        for node in nodes:
            args, kwargs = node.arguments.fill_in(values)
            if "training" in getattr(node.operation, "_call_context_args", ()):
                kwargs["training"] = False
            op = self.overrides.get(id(node), node.operation)
            out = op(*args, **kwargs)
            for kt, value in zip(node.outputs, keras.tree.flatten(out)):
                values[id(kt)] = value
        return values

    def __call__(self, x: Any) -> np.ndarray:
        """Return the (logit) output for a batch as a numpy array."""
        xs = x if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.inputs):
            raise ValueError(f"model has {len(self.inputs)} inputs, got {len(xs)}")
        values = {id(kt): keras.ops.convert_to_tensor(v) for kt, v in zip(self.inputs, xs)}
        values = self.run(values, self.nodes)
        return keras.ops.convert_to_numpy(values[id(self.output)])


def score_function(model: Any, logits: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """Turn a Keras model or any callable into ``f(images) -> scores`` returning numpy.

    Args:
        model: a Keras model (functional/Sequential: final softmax/sigmoid stripped when
            ``logits``; other Keras models are called as they are) or any callable.
        logits: strip a final softmax/sigmoid of a Keras model.

    Returns:
        A function mapping a numpy batch to a numpy array of scores (float64).
    """
    if isinstance(model, keras.Model):
        runner: GraphRunner | None = None
        if logits:
            try:
                runner = GraphRunner(model, logits=True)
            except ValueError:  # subclassed model: no graph to strip, call it as it is
                runner = None
        if runner is not None and runner.stripped:
            fn: Callable = runner
        else:

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
