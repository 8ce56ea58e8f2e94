"""Walks a Keras model into a flat list of nodes (nested models inlined).

The walk reads the user's model and never changes it. Tensors are identified by integers
(the ``id`` of Keras' symbolic tensors, negative numbers for tensors that canonizers add).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import keras
import tensorflow as tf

from tf_clrp import _compat, layers
from tf_clrp.errors import ModelStructureError

Run = Callable[[list[tf.Tensor]], list[tf.Tensor]]

_synthetic_ids = itertools.count(-1, -1)


def new_tensor_id() -> int:
    """A fresh id for a tensor that a canonizer introduces."""
    return next(_synthetic_ids)


@dataclass(frozen=True)
class Node:
    """One call of a layer or operation in the flattened graph.

    Attributes:
        name: Layer name (``outer/inner`` for layers of nested models).
        op: The original Keras layer/operation (read, never modified), or None.
        group: Its relevance group (see ``layers.GROUP_OF_CLASS``), or None if unknown.
        inputs: Ids of the consumed tensors.
        outputs: Ids of the produced tensors.
        run: Computes the outputs from concrete inputs (the original computation).
        linear: The pure-function view of a linear layer (set by the canonizers).
        activation: Name of the non-linearity of an activation node.
        fused: True for an activation split off a Dense/Conv layer by the canonizers.
    """

    name: str
    op: Any
    group: str | None
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    run: Run
    linear: layers.LinearSpec | None = None
    activation: str | None = None
    fused: bool = False

    @property
    def kind(self) -> str:
        """Layer class name, for messages."""
        return type(self.op).__name__ if self.op is not None else self.group or "?"

    def evolve(self, **changes: Any) -> Node:
        """A copy with some fields replaced."""
        return replace(self, **changes)


@dataclass
class Graph:
    """A flattened model: nodes in execution order from one input to one output."""

    nodes: list[Node]
    input_id: int
    output_id: int
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    model_name: str = ""
    #: The output non-linearity removed by canonization ("softmax", "sigmoid") or None.
    stripped_output_activation: str | None = None
    shapes: dict[int, tuple[int | None, ...]] = field(default_factory=dict)

    def producer(self) -> dict[int, Node]:
        """Maps each tensor id to the node producing it."""
        return {t: n for n in self.nodes for t in n.outputs}

    def consumers(self) -> dict[int, list[Node]]:
        """Maps each tensor id to the nodes consuming it."""
        out: dict[int, list[Node]] = {}
        for n in self.nodes:
            for t in n.inputs:
                out.setdefault(t, []).append(n)
        return out

    def find(self, name: str) -> Node:
        """The node of the layer called ``name`` (the last call if it is shared)."""
        matches = [n for n in self.nodes if n.name == name or n.name.endswith("/" + name)]
        if not matches:
            names = ", ".join(n.name for n in self.nodes)
            raise ModelStructureError(
                f"model {self.model_name!r} has no layer named {name!r}; layers: {names}"
            )
        return matches[-1]

    def truncated(self, output_id: int) -> Graph:
        """The sub-graph of the ancestors of tensor ``output_id``."""
        needed = {output_id}
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if needed.intersection(node.outputs):
                kept.append(node)
                needed.update(node.inputs)
        return Graph(
            nodes=kept[::-1], input_id=self.input_id, output_id=output_id,
            input_shape=self.input_shape, output_shape=self.shapes.get(output_id, ()),
            model_name=self.model_name, shapes=self.shapes,
        )


def _node_runner(node: Any) -> Run:
    if _compat.compute_dtype(_compat.node_operation(node)) == "float32":
        return lambda values: _compat.call_node(node, values)
    # Mixed precision: run the layer's computation in float32 (relevance values are far
    # below float16's range), skipping Keras' cast of the inputs.
    return lambda values: [tf.cast(v, tf.float32) if v.dtype.is_floating else v
                           for v in _compat.call_node(node, values, autocast=False)]


def _walk(functional: Any, alias: dict[int, int], prefix: str, nodes: list[Node],
          shapes: dict[int, tuple[int | None, ...]]) -> None:
    """Appends the nodes of ``functional`` to ``nodes``, inlining nested models."""
    def canonical(t: Any) -> int:
        return alias.get(id(t), id(t))

    for knode in _compat.nodes_in_order(functional):
        op = _compat.node_operation(knode)
        ins = _compat.node_input_tensors(knode)
        outs = _compat.node_output_tensors(knode)
        for t in outs:
            shapes[id(t)] = _compat.tensor_shape(t)
        if _compat.is_model(op):
            inner = _compat.functional_of(op)
            if inner is None:
                raise ModelStructureError(
                    f"nested model {op.name!r} ({type(op).__name__}) is subclassed and has no "
                    "functional graph; rebuild it with the functional API to explain it"
                )
            inner_ins = _compat.graph_inputs(inner)
            if len(inner_ins) != len(ins):
                raise ModelStructureError(
                    f"nested model {op.name!r} is called with {len(ins)} tensors but has "
                    f"{len(inner_ins)} inputs"
                )
            for inner_t, outer_t in zip(inner_ins, ins):
                alias[id(inner_t)] = canonical(outer_t)
            _walk(inner, alias, f"{prefix}{op.name}/", nodes, shapes)
            for inner_t, outer_t in zip(_compat.graph_outputs(inner), outs):
                alias[id(outer_t)] = canonical(inner_t)
            continue
        nodes.append(Node(
            name=prefix + getattr(op, "name", type(op).__name__),
            op=op,
            group=layers.group_of(op),
            inputs=tuple(canonical(t) for t in ins),
            outputs=tuple(id(t) for t in outs),
            run=_node_runner(knode),
        ))


def trace_model(model: keras.Model, output_index: int | None = None) -> Graph:
    """Flattens a Keras model into a Graph.

    Args:
        model: A functional or Sequential Keras 3 model (nested models are inlined).
        output_index: Which output to explain if the model has several.

    Returns:
        The Graph from the model's input to the chosen output.

    Raises:
        ModelStructureError: subclassed model, several inputs, or several outputs and no
            ``output_index``.
    """
    if not isinstance(model, keras.Model):
        raise ModelStructureError(
            f"expected a keras.Model, got {type(model).__name__}; tf_clrp explains Keras 3 models"
        )
    functional = _compat.functional_of(model)
    if functional is None:
        raise ModelStructureError(
            f"model {model.name!r} ({type(model).__name__}) is a subclassed model without a "
            "functional graph; tf_clrp needs a functional or Sequential model (wrap the same "
            "layers with keras.Input(...) and keras.Model(inputs, outputs))"
        )
    inputs = _compat.graph_inputs(functional)
    if len(inputs) != 1:
        raise ModelStructureError(
            f"model {model.name!r} has {len(inputs)} inputs; tf_clrp explains single-input "
            "models (build a sub-model that takes the image as its only input)"
        )
    outputs = _compat.graph_outputs(functional)
    if output_index is None:
        if len(outputs) != 1:
            raise ModelStructureError(
                f"model {model.name!r} has {len(outputs)} outputs; pass output_index=0.."
                f"{len(outputs) - 1} to choose the one to explain"
            )
        output_index = 0
    if not 0 <= output_index < len(outputs):
        raise ModelStructureError(
            f"output_index={output_index} is out of range: model {model.name!r} has "
            f"{len(outputs)} output(s)"
        )
    alias: dict[int, int] = {}
    nodes: list[Node] = []
    shapes: dict[int, tuple[int | None, ...]] = {id(inputs[0]): _compat.tensor_shape(inputs[0])}
    _walk(functional, alias, "", nodes, shapes)
    out_id = alias.get(id(outputs[output_index]), id(outputs[output_index]))
    graph = Graph(
        nodes=nodes, input_id=id(inputs[0]), output_id=out_id,
        input_shape=_compat.tensor_shape(inputs[0]),
        output_shape=_compat.tensor_shape(outputs[output_index]),
        model_name=model.name, shapes=shapes,
    )
    return graph.truncated(out_id) if len(outputs) > 1 else graph
