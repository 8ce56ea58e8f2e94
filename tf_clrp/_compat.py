"""The only place that touches private Keras APIs.

Keras 3 keeps the graph of a functional model in ``Function._nodes_by_depth`` and the
graph of a built ``Sequential`` in ``Sequential._functional``. Everything else in tf_clrp
goes through the small functions below, so a Keras upgrade breaks one file, not twenty.
The zoo's reader of Keras 2 HDF5 files without an ``.h5`` suffix is here too
(:func:`load_legacy_h5`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
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


def call_node(
    node: Any,
    values: Sequence[Any],
    autocast: bool = True,
    rewrite: Callable[..., tuple[Any, Any, Any]] | None = None,
) -> list[Any]:
    """Calls a node's operation on concrete tensors, keeping its other arguments.

    Args:
        node: A Keras graph node.
        values: One concrete tensor per KerasTensor in ``node_input_tensors(node)``.
        autocast: False calls a layer's ``call`` directly, skipping the cast of its inputs
            to the layer's compute dtype (keeps float32 under mixed precision).
        rewrite: ``rewrite(args, kwargs, operation, values) -> (args, kwargs, operation)``
            adapts the call before it runs (see ``tf_clrp.tracing``).

    Returns:
        The flattened outputs of the call.
    """
    tensor_dict = {id(t): v for t, v in zip(node.arguments.keras_tensors, values, strict=True)}
    args, kwargs = node.arguments.fill_in(tensor_dict)
    operation = node.operation
    if rewrite is not None:
        args, kwargs, operation = rewrite(args, kwargs, operation, values)
    if not autocast and isinstance(operation, keras.layers.Layer):
        outputs = operation.call(*args, **kwargs)
    else:
        outputs = operation(*args, **kwargs)
    flat = list(keras.tree.flatten(outputs))
    if getattr(node, _LEAVES, None) is None:
        return flat
    count, positions = output_leaves(node)
    if len(flat) != count or any((v is None) == (i in positions) for i, v in enumerate(flat)):
        raise ModelStructureError(
            f"layer {getattr(operation, 'name', '?')!r} ({type(operation).__name__}) returned "
            f"{_leaf_kinds(flat)} where it returned {_leaf_kinds(count, positions)} when the "
            "analyzer traced it; a layer whose outputs change between None and tensors "
            "cannot be explained by a graph traced once: create the analyzer again"
        )
    return [flat[i] for i in positions]


def _leaf_kinds(flat: Sequence[Any] | int, positions: Sequence[int] = ()) -> str:
    """``(tensor, None)`` for the leaves of a flattened call output."""
    if isinstance(flat, int):
        kinds = ["tensor" if i in positions else "None" for i in range(flat)]
    else:
        kinds = ["None" if v is None else "tensor" for v in flat]
    return "(" + ", ".join(kinds) + ")"


#: The attribute of a traced node whose call output holds None leaves: (number of leaves,
#: positions of the tensor leaves), see ``none_outputs_allowed``.
_LEAVES = "_tf_clrp_leaves"


def output_leaves(node: Any) -> tuple[int, tuple[int, ...]]:
    """How a node's outputs sit in its call's flattened output: (number of leaves, position
    of each output tensor). Nodes recorded by ``none_outputs_allowed`` for a call that
    returned None leaves skip those positions; every other node has one tensor per leaf."""
    leaves = getattr(node, _LEAVES, None)
    if leaves is not None:
        return leaves
    return len(node.outputs), tuple(range(len(node.outputs)))


_none_state = threading.local()
_patch_lock = threading.Lock()
_patch_depth = 0
_keras_node: type | None = None


@functools.cache
def _none_tolerant_node() -> type:
    from keras.src.ops.node import Node

    class NoneTolerantNode(Node):
        """A Keras node of a call whose output holds None leaves (an attention-weights slot
        that is None): records the tensor leaves as its outputs and where they sit."""

        def __init__(
            self,
            operation: Any,
            call_args: Any = None,
            call_kwargs: Any = None,
            outputs: Any = None,
        ) -> None:
            flat = [] if outputs is None else list(keras.tree.flatten(outputs))
            returned = getattr(_none_state, "returned", None)
            # Other threads see Keras' own node (and its refusal of None) during a trace.
            if returned is None or all(v is not None for v in flat):
                super().__init__(operation, call_args, call_kwargs, outputs)
                return
            positions = tuple(i for i, v in enumerate(flat) if v is not None)
            super().__init__(operation, call_args, call_kwargs, [flat[i] for i in positions])
            setattr(self, _LEAVES, (len(flat), positions))
            returned.append(f"{getattr(operation, 'name', '?')!r} returned {_leaf_kinds(flat)}")

    return NoneTolerantNode


@contextlib.contextmanager
def none_outputs_allowed() -> Iterator[list[str]]:
    """Within: a layer called on symbolic tensors may return None leaves (Keras refuses
    them in a node's outputs). Its node records the tensor leaves only; ``output_leaves``
    tells where they sit, and ``call_node`` checks that its later calls return None at the
    same places. Yields the list of such calls (``'name' returned (tensor, None)``).

    Keras' ``Layer.__call__`` creates its node through the module global ``Node`` of
    ``keras.src.layers.layer``, which is replaced by a subclass for the duration: calls
    whose outputs are all tensors build exactly the node they always did.
    """
    global _patch_depth, _keras_node
    from keras.src.layers import layer as layer_module

    outer = getattr(_none_state, "returned", None)
    returned: list[str] = []
    _none_state.returned = returned
    with _patch_lock:
        if _patch_depth == 0:
            _keras_node = layer_module.Node
            layer_module.Node = _none_tolerant_node()
        _patch_depth += 1
    try:
        yield returned
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                layer_module.Node = _keras_node
        _none_state.returned = outer
        if outer is not None:
            outer.extend(returned)


def compute_dtype(op: Any) -> str:
    """The dtype a layer computes in ("float32" for non-Layer operations)."""
    return str(getattr(op, "compute_dtype", None) or "float32")


def tensor_shape(tensor: Any) -> tuple[int | None, ...]:
    """Static shape of a KerasTensor."""
    return tuple(tensor.shape)


def named_inputs(functional: Any) -> list[tuple[str, Any]]:
    """(name, KerasTensor) of each input of a functional graph, in ``graph_inputs`` order.

    The name is the dict key for a model built on a dict of inputs, else the tensor's
    ``keras.Input(name=...)``.
    """
    struct = getattr(functional, "_inputs_struct", None)
    if isinstance(struct, dict):
        key_of = {id(t): k for k, t in struct.items()}
        return [(str(key_of.get(id(t), t.name)), t) for t in graph_inputs(functional)]
    return [(str(t.name), t) for t in graph_inputs(functional)]


def built_input_shape(model: Any) -> tuple[int | None, ...] | None:
    """The input shape a built subclassed model was built with (batch axis open), or None
    if it is not built or was built with several inputs."""
    shapes = getattr(model, "_build_shapes_dict", None)
    if not getattr(model, "built", False) or not shapes or len(shapes) != 1:
        return None
    shape = next(iter(shapes.values()))
    if not isinstance(shape, (tuple, list)) or not all(
        d is None or isinstance(d, int) for d in shape
    ):
        return None
    return (None, *shape[1:])


def with_keras_mask(x: Any, mask: Any) -> Any:
    """``x`` carrying a Keras mask (read by the layers after it, as in the Keras model)."""
    if mask is None:
        return x
    setter = getattr(keras.src.backend, "set_keras_mask", None)
    if setter is not None:
        setter(x, mask)
    else:
        x._keras_mask = mask
    return x


def is_layer(op: Any) -> bool:
    """True for a Keras layer (as opposed to a bare keras.ops operation)."""
    return isinstance(op, keras.layers.Layer)


def has_keras_mask(tensor: Any) -> bool:
    """Whether a symbolic tensor carries a Keras mask."""
    return getattr(tensor, "_keras_mask", None) is not None


def keras_mask(tensor: Any) -> Any | None:
    """The Keras mask a symbolic tensor carries, or None."""
    return getattr(tensor, "_keras_mask", None)


def fresh_input(
    tensor: Any, shape: Sequence[int | None] | None = None, mask: Any | None = None
) -> Any:
    """A new symbolic input with the dtype of ``tensor`` (not linked to it).

    Args:
        tensor: The symbolic tensor it stands for.
        shape: Its shape, batch axis included (default: ``tensor``'s).
        mask: A symbolic mask to attach (read by layers the way Keras hands masks on).
    """
    fresh = keras.Input(
        batch_shape=tuple(tensor.shape if shape is None else shape), dtype=tensor.dtype
    )
    return with_keras_mask(fresh, mask)


def arguments_of(node: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The (args, kwargs) a node was called with, KerasTensors included."""
    return tuple(node.arguments.args), dict(node.arguments.kwargs)


#: Attributes every Keras operation has that do not configure its computation.
_BOOKKEEPING = frozenset(
    {
        "name",
        "_inbound_nodes",
        "_outbound_nodes",
        "_auto_config",
        "_lock",
        "_remat_mode",
        "_call_has_training_arg",
        "_call_has_mask_arg",
    }
)


def operation_settings(op: Any) -> dict[str, Any]:
    """The attributes that configure a (non-layer) operation's computation, e.g. the target
    shape of ``ops.reshape`` or the repeats of ``ops.tile``."""
    return {k: v for k, v in vars(op).items() if k not in _BOOKKEEPING}


def operation_with(op: Any, settings: dict[str, Any]) -> Any:
    """A shallow copy of a (non-layer) operation with some settings replaced."""
    changed = copy.copy(op)
    changed.__dict__.update(settings)
    return changed


def variables_of(layer: Any) -> list[Any]:
    """Every variable a layer owns, its sublayers' included."""
    return list(layer.weights)


def is_variable(value: Any) -> bool:
    """True for a Keras variable (read live when an operation runs)."""
    return isinstance(value, keras.Variable)


def call_symbolically(node: Any, replacement: dict[int, Any]) -> list[Any]:
    """Runs the ``call`` of a node's layer on symbolic tensors (ids in ``replacement``
    replaced), so its sublayers and ops record their own nodes; returns the flat outputs."""
    args, kwargs = node.arguments.fill_in(replacement)
    kwargs = _with_masks(node.operation, args, kwargs)
    args, kwargs = _causal_mask_up_front(node.operation, args, kwargs)
    return list(keras.tree.flatten(node.operation.call(*args, **kwargs)))


def _causal_mask_up_front(
    layer: Any, args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[Sequence[Any], dict[str, Any]]:
    """``MultiHeadAttention(dropout > 0)`` called with ``use_causal_mask=True`` and no other
    mask builds its causal mask inside ``_compute_attention`` from the *projected* query,
    whose sequence axis Keras' symbolic ``EinsumDense`` leaves open: ``ops.ones((1, None,
    None))`` fails, so the call cannot run on symbolic tensors. An all-True
    ``attention_mask`` (1, T, S) makes Keras build the same causal mask earlier, from the
    call's own query and value (static lengths): the same function, traceable.

    Raises:
        ValueError: the query or value length is not static (the message names the layer).
    """
    if not isinstance(layer, keras.layers.MultiHeadAttention) or not layer.dropout > 0:
        return args, kwargs
    try:
        bound = inspect.signature(layer.call).bind(*args, **kwargs)
    except TypeError:
        return args, kwargs
    arguments = bound.arguments
    if not arguments.get("use_causal_mask") or arguments.get("attention_mask") is not None:
        return args, kwargs
    query, value = arguments.get("query"), arguments.get("value")
    if not isinstance(query, keras.KerasTensor) or not isinstance(value, keras.KerasTensor):
        return args, kwargs
    t, s = query.shape[1], value.shape[1]
    if t is None or s is None:
        raise ValueError(
            f"MultiHeadAttention {layer.name!r} with dropout > 0 and use_causal_mask=True "
            f"needs static query and value lengths to be walked (got {t} and {s}): give the "
            "model a fixed sequence length, or explain a copy with dropout=0.0 (the same "
            "function at inference)"
        )
    arguments["attention_mask"] = keras.ops.ones((1, t, s), dtype="bool")
    return bound.args, bound.kwargs


def _with_masks(layer: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The mask arguments ``Layer.__call__`` fills in from the inputs' Keras masks before it
    runs ``call``: ``mask`` for a single tensor argument, ``<name>_mask`` for each of
    several (``query_mask``, ``value_mask`` of ``MultiHeadAttention``)."""
    try:
        bound = inspect.signature(layer.call).bind_partial(*args, **kwargs)
    except TypeError:
        return kwargs
    parameters = inspect.signature(layer.call).parameters
    tensors = {
        name: value
        for name, value in bound.arguments.items()
        if any(isinstance(t, keras.KerasTensor) for t in keras.tree.flatten(value))
    }
    kwargs = dict(kwargs)
    if len(tensors) == 1:
        only = next(iter(tensors.values()))
        if "mask" in parameters and bound.arguments.get("mask") is None:
            masks = keras.tree.map_structure(keras_mask, only)
            if any(m is not None for m in keras.tree.flatten(masks)):
                kwargs["mask"] = masks
    else:
        for name, value in tensors.items():
            if f"{name}_mask" in parameters and bound.arguments.get(f"{name}_mask") is None:
                masks = keras.tree.map_structure(keras_mask, value)
                if any(m is not None for m in keras.tree.flatten(masks)):
                    kwargs[f"{name}_mask"] = masks
    return kwargs


def symbolic_function(inputs: Sequence[Any], outputs: Sequence[Any]) -> Any:
    """A functional graph (``_nodes_by_depth``) from symbolic inputs to outputs."""
    from keras.src.ops.function import Function

    return Function(list(inputs), list(outputs))


def node_lists(layer: Any) -> list[tuple[list[Any], int]]:
    """The inbound/outbound node lists of ``layer`` and all its sublayers, with lengths."""
    lists = []
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        lists.append((sub._inbound_nodes, len(sub._inbound_nodes)))
        lists.append((sub._outbound_nodes, len(sub._outbound_nodes)))
    return lists


def restore_node_lists(lists: list[tuple[list[Any], int]]) -> None:
    """Drops the nodes appended since ``node_lists`` was taken."""
    for nodes, length in lists:
        del nodes[length:]


def load_legacy_h5(path: str) -> Any:
    """Loads a Keras 2 HDF5 full-model file with Keras 3's legacy reader (never compiled).

    ``keras.saving.load_model`` picks that reader only by the ``.h5``/``.hdf5`` suffix; this
    calls it directly (``keras.src.legacy.saving.legacy_h5_format``) for any file name.
    """
    from keras.src.legacy.saving import legacy_h5_format

    return legacy_h5_format.load_model_from_hdf5(path, compile=False)
