"""The only place that touches private Keras APIs.

Keras 3 keeps the graph of a functional model in ``Function._nodes_by_depth`` and the
graph of a built ``Sequential`` in ``Sequential._functional``. Everything else in tf_clrp
goes through the small functions below, so a Keras upgrade breaks one file, not twenty.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import keras

from tf_clrp.errors import ModelStructureError


def functional_of(model: Any) -> Any | None:
    """Returns the functional graph behind a Keras model, or None for a subclassed model.

    Args:
        model: A Keras ``Model`` (functional, Sequential or subclassed).

    Returns:
        The object holding ``_nodes_by_depth``, ``inputs`` and ``outputs``, or None.
    """
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ModelStructureError(
                f"Sequential model {model.name!r} has no graph yet: give its first layer an "
                "input shape (keras.Input(...)) or call it on data once before explaining it."
            )
        return functional
    if hasattr(model, "_nodes_by_depth") and getattr(model, "_is_graph_network", True):
        try:
            model.inputs  # noqa: B018 - raises for subclassed models
        except (AttributeError, ValueError):
            return None
        if getattr(model, "_nodes_by_depth", None):
            return model
    return None


def is_model(op: Any) -> bool:
    """True if an operation in a graph is itself a Keras model (nested model)."""
    return isinstance(op, keras.Model)


def graph_inputs(functional: Any) -> list[Any]:
    """The input KerasTensors of a functional graph, flattened."""
    return list(keras.tree.flatten(functional.inputs))


def graph_outputs(functional: Any) -> list[Any]:
    """The output KerasTensors of a functional graph, flattened."""
    return list(keras.tree.flatten(functional.outputs))


def nodes_in_order(functional: Any) -> Iterator[Any]:
    """Yields the graph's call nodes in execution order (inputs first), skipping inputs."""
    nodes_by_depth = functional._nodes_by_depth
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            yield node


def node_operation(node: Any) -> Any:
    """The layer or operation a node calls."""
    return node.operation


def node_input_tensors(node: Any) -> list[Any]:
    """The KerasTensors a node consumes, in argument order."""
    return list(node.arguments.keras_tensors)


def node_output_tensors(node: Any) -> list[Any]:
    """The KerasTensors a node produces."""
    return list(node.outputs)


def call_node(node: Any, values: Sequence[Any], autocast: bool = True) -> list[Any]:
    """Calls a node's operation on concrete tensors, keeping its other arguments.

    Args:
        node: A Keras graph node.
        values: One concrete tensor per KerasTensor in ``node_input_tensors(node)``.
        autocast: False calls a layer's ``call`` directly, skipping the cast of its inputs
            to the layer's compute dtype (keeps float32 under mixed precision).

    Returns:
        The flattened outputs of the call.
    """
    tensor_dict = {id(t): v for t, v in zip(node.arguments.keras_tensors, values, strict=True)}
    args, kwargs = node.arguments.fill_in(tensor_dict)
    operation = node.operation
    if not autocast and isinstance(operation, keras.layers.Layer):
        outputs = operation.call(*args, **kwargs)
    else:
        outputs = operation(*args, **kwargs)
    return list(keras.tree.flatten(outputs))


def compute_dtype(op: Any) -> str:
    """The dtype a layer computes in ("float32" for non-Layer operations)."""
    return str(getattr(op, "compute_dtype", None) or "float32")


def tensor_shape(tensor: Any) -> tuple[int | None, ...]:
    """Static shape of a KerasTensor."""
    return tuple(tensor.shape)
