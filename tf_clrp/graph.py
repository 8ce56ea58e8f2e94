"""Walks a Keras model into a flat list of nodes (nested models inlined).

The walk reads the user's model and never changes it. Tensors are identified by integers
(the ``id`` of Keras' symbolic tensors, negative numbers for tensors that canonizers add).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import keras
import tensorflow as tf

from tf_clrp import _compat, layers, tracing
from tf_clrp.errors import ModelStructureError
from tf_clrp.layers import Group

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
        group: Its relevance group (see ``layers.Group``; a group's name is accepted and
            converted), or None if unknown.
        inputs: Ids of the consumed tensors.
        outputs: Ids of the produced tensors.
        run: Computes the outputs from concrete inputs (the original computation).
        linear: The pure-function view of a linear layer (set by the canonizers).
        activation: Name of the non-linearity of an activation node.
        fused: True for an activation split off a Dense/Conv layer by the canonizers.
    """

    name: str
    op: Any
    group: Group | None
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    run: Run
    linear: layers.LinearSpec | None = None
    activation: str | None = None
    fused: bool = False
    #: Why a layer without a group was not walked inside (see ``tf_clrp.tracing``), or "".
    untraced: str = ""
    #: The calls of walked layers this node is inside, outermost first: each as the one
    #: node it would be without walking (``collapse_layers`` restores it).
    within: tuple[Node, ...] = ()

    def __post_init__(self) -> None:
        if self.group is not None and not isinstance(self.group, Group):
            object.__setattr__(self, "group", Group(self.group))

    @property
    def kind(self) -> str:
        """Layer class name, for messages."""
        return type(self.op).__name__ if self.op is not None else self.group or "?"

    @property
    def whole_layer_hint(self) -> str:
        """For a node inside a walked layer: how to give the whole layer one rule."""
        if not self.within:
            return ""
        outer = self.within[-1]
        return (
            f" (inside layer {outer.name!r} of type {outer.kind}: give that whole layer "
            f"one rule with layer_rules={{{outer.kind!r}: <Rule>}})"
        )

    def evolve(self, **changes: Any) -> Node:
        """A copy with some fields replaced."""
        return replace(self, **changes)


@dataclass(frozen=True)
class ModelInput:
    """One input of the walked model.

    Attributes:
        name: The key the model takes it under (dict inputs) or its ``keras.Input`` name.
        id: The tensor id in the graph.
        shape: Static shape, batch axis first.
        dtype: Keras dtype name ("float32", "int32", ...).
    """

    name: str
    id: int
    shape: tuple[int | None, ...]
    dtype: str

    @property
    def is_integer(self) -> bool:
        """True for integer or boolean inputs (token ids, segment ids, masks)."""
        return self.dtype.startswith(("int", "uint", "bool"))


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
    #: Every input of the model, in the order of ``model.inputs``.
    model_inputs: tuple[ModelInput, ...] = ()
    #: The name of the explained input (one of ``model_inputs``).
    explained_input: str = ""
    #: Model inputs fed through unchanged (not explained), in mirror-call order.
    feeds: tuple[ModelInput, ...] = ()
    #: For token inputs: the Embedding call whose output is explained (``input_id``), run
    #: on the token ids before the graph (see ``tf_clrp.inputs``); else None.
    embedding: Node | None = None
    #: The name of the hidden layer whose output is explained (``at_layer``), or "" for a
    #: model output (only a model output's final softmax/sigmoid is stripped).
    output_layer: str = ""
    #: Virtual output units appended after the real ones by a canonizer ("negated" for
    #: ``canonizers.append_negated_outputs``), or "".
    virtual_outputs: str = ""

    def evolve(self, **changes: Any) -> Graph:
        """A copy with some fields replaced (the nodes list is shared unless replaced)."""
        return replace(self, **changes)

    def at_layer(self, name: str) -> Graph:
        """The sub-graph explaining the output of the layer called ``name``."""
        return self.truncated(self.find(name).outputs[0]).evolve(output_layer=name)

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
        return self.evolve(
            nodes=kept[::-1],
            output_id=output_id,
            output_shape=self.shapes.get(output_id, ()),
            stripped_output_activation=None,
        )


#: How one node is evaluated by ``execute``: ``call(node, inputs) -> outputs``.
NodeCall = Callable[[Node, list[tf.Tensor]], list[tf.Tensor]]


def run_node(node: Node, inputs: list[tf.Tensor]) -> list[tf.Tensor]:
    """A node's original computation (``node.run``)."""
    return node.run(inputs)


def execute(
    nodes: Sequence[Node], values: dict[int, tf.Tensor], call: NodeCall = run_node
) -> dict[int, tf.Tensor]:
    """Evaluates ``nodes`` in order: the one node executor of the mirror and the metrics.

    Args:
        nodes: Graph nodes in execution order.
        values: Tensor id -> value for the given tensors; filled with every output.
        call: Evaluates one node (default: its own computation). The mirrored model passes
            one that applies the rules.

    Returns:
        ``values``.
    """
    for node in nodes:
        values.update(zip(node.outputs, call(node, [values[t] for t in node.inputs])))
    return values


def _node_runner(node: Any, rewrite: tracing.Rewrite | None = None) -> Run:
    if _compat.compute_dtype(_compat.node_operation(node)) == "float32":
        return lambda values: _compat.call_node(node, values, rewrite=rewrite)
    # Mixed precision: run the layer's computation in float32 (relevance values are far
    # below float16's range), skipping Keras' cast of the inputs.
    return lambda values: [
        tf.cast(v, tf.float32) if v.dtype.is_floating else v
        for v in _compat.call_node(node, values, autocast=False, rewrite=rewrite)
    ]


def _walk(
    functional: Any,
    alias: dict[int, int],
    prefix: str,
    nodes: list[Node],
    shapes: dict[int, tuple[int | None, ...]],
    within: tuple[Node, ...] = (),
    traced: tracing.TracedCall | None = None,
    keep: list[Any] | None = None,
) -> None:
    """Appends the nodes of ``functional`` to ``nodes``, inlining nested models and the
    calls of layers without a group of their own (``within``: the walked calls around;
    ``traced``: the traced call ``functional`` comes from, if it does; ``keep``: holds the
    traced graphs until the walk ends, see ``trace_model``)."""
    keep = [] if keep is None else keep

    def canonical(t: Any) -> int:
        return alias.get(id(t), id(t))

    def open_shape(t: Any) -> tuple[int | None, ...]:
        return shapes.get(id(t)) or _compat.tensor_shape(t)

    rewrites = traced.rewrites if traced is not None else {}
    read_cache: list[dict[int, str]] = []
    for knode in _compat.nodes_in_order(functional):
        op = _compat.node_operation(knode)
        ins = _compat.node_input_tensors(knode)
        outs = _compat.node_output_tensors(knode)
        for t in outs:
            shapes[id(t)] = (
                traced.shapes.get(id(t)) if traced is not None else None
            ) or _compat.tensor_shape(t)
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
            _walk(inner, alias, f"{prefix}{op.name}/", nodes, shapes, within, keep=keep)
            for inner_t, outer_t in zip(_compat.graph_outputs(inner), outs):
                alias[id(outer_t)] = canonical(inner_t)
            continue
        untraced = ""
        group = layers.group_of_call(op, len(ins), bool(within))
        if layers.group_of(op) is None and _compat.is_layer(op) and id(knode) not in rewrites:
            _walk_masks(functional, ins, alias, prefix, nodes, shapes, within, traced, keep)
            result = tracing.trace_call(knode, open_shape)
            keep.append(result)  # its tensors' ids key ``alias`` and ``shapes``
            if isinstance(result, tracing.TracedCall):
                read = _unread_outputs_read(functional, knode, result, read_cache)
                if read:
                    result = read
            if isinstance(result, tracing.TracedCall):  # walk inside the layer's call
                for inner_t, outer_t in zip(result.inputs, result.outer_inputs):
                    alias[id(inner_t)] = canonical(outer_t)
                    shapes[id(inner_t)] = result.shapes.get(id(inner_t)) or open_shape(outer_t)
                whole = Node(
                    name=prefix + op.name,
                    op=op,
                    group=None,
                    inputs=tuple(canonical(t) for t in ins),
                    outputs=(),
                    run=_node_runner(knode),
                    within=within,
                )
                _walk(
                    result.function,
                    alias,
                    f"{prefix}{op.name}/",
                    nodes,
                    shapes,
                    (*within, whole),
                    result,
                    keep,
                )
                for inner_t, outer_t in zip(result.outputs, outs):
                    if inner_t is not None:  # None: an output that carries no relevance
                        alias[id(outer_t)] = canonical(inner_t)
                _set_outputs(nodes, whole, tuple(alias.get(id(t), id(t)) for t in outs))
                continue
            if isinstance(result, tracing.ShapeOnlyCall):
                # A constant for relevance (its output ignores its inputs' values), like the
                # lookup of a fed input.
                group, untraced = "embedding", tracing.SHAPE_ONLY
            else:
                untraced = result
        nodes.append(
            Node(
                name=prefix + getattr(op, "name", type(op).__name__),
                op=op,
                group=group,
                inputs=tuple(canonical(t) for t in ins),
                outputs=tuple(id(t) for t in outs),
                run=_node_runner(knode, rewrites.get(id(knode))),
                untraced=untraced,
                within=within,
            )
        )


def _unread_outputs_read(
    functional: Any, knode: Any, result: tracing.TracedCall, cache: list[dict[int, str]]
) -> str:
    """Why a traced call cannot be walked inside because the model reads one of its outputs
    that the traced graph does not compute (None or a constant), or ""."""
    if all(t is not None for t in result.outputs):
        return ""
    if not cache:  # tensor id -> who reads it, for the graph being walked
        readers = {id(t): "the model's output" for t in _compat.graph_outputs(functional)}
        for kn in _compat.nodes_in_order(functional):
            op = _compat.node_operation(kn)
            for t in _compat.node_input_tensors(kn):
                readers.setdefault(id(t), f"layer {getattr(op, 'name', type(op).__name__)!r}")
        cache.append(readers)
    outs = _compat.node_output_tensors(knode)
    for i, (inner, outer) in enumerate(zip(result.outputs, outs)):
        if inner is None and id(outer) in cache[0]:
            return (
                f"its output {i} is None or a constant when its call runs on symbolic "
                f"tensors (no relevance can flow through it), but {cache[0][id(outer)]} "
                "reads it"
            )
    return ""


def _walk_masks(
    functional: Any,
    tensors: list[Any],
    alias: dict[int, int],
    prefix: str,
    nodes: list[Node],
    shapes: dict[int, tuple[int | None, ...]],
    within: tuple[Node, ...],
    traced: tracing.TracedCall | None,
    keep: list[Any],
) -> None:
    """Walks the computation of the Keras masks ``tensors`` carry if the graph has not
    computed them yet (Keras hands masks on beside the graph's edges), so that a traced
    call can read them as inputs."""
    masks = [m for m in (_compat.keras_mask(t) for t in tensors) if m is not None]
    if not masks:
        return
    inputs = _compat.graph_inputs(functional)
    known = (
        {t for n in nodes for t in n.outputs}
        | set(alias.values())
        | {alias.get(id(t), id(t)) for t in inputs}
    )
    missing = [m for m in masks if alias.get(id(m), id(m)) not in known]
    if not missing:
        return
    try:
        computation = _compat.symbolic_function(inputs, missing)
    except Exception:  # noqa: BLE001 - the traced call then names the missing mask
        return
    keep.append(computation)
    before = len(nodes)
    _walk(computation, alias, prefix, nodes, shapes, within, traced, keep)
    kept = nodes[:before]
    produced = {t for n in kept for t in n.outputs}
    for node in nodes[before:]:  # drop the nodes that were walked already
        if not set(node.outputs) <= produced:
            kept.append(node)
            produced.update(node.outputs)
    nodes[:] = kept


def _set_outputs(nodes: list[Node], whole: Node, outputs: tuple[int, ...]) -> None:
    """Gives a walked call's whole-layer node its (canonical) outputs, in every node
    inside it (nodes are immutable: the inner nodes get updated copies)."""
    complete = whole.evolve(outputs=outputs)
    for i, node in enumerate(nodes):
        if any(w is whole for w in node.within):
            nodes[i] = node.evolve(within=tuple(complete if w is whole else w for w in node.within))


def collapse_layers(graph: Graph, keys: Any) -> Graph:
    """Undoes the walk inside layers that ``keys`` names (by path, name or class name), so
    that a rule given for a whole layer (``layer_rules``) applies to it as one node.

    Args:
        graph: A traced graph.
        keys: Layer names / class names with a rule of their own.

    Returns:
        The graph with each such walked call back as one node.
    """

    def named(node: Node) -> bool:
        return any(k in keys for k in (node.name, node.name.rsplit("/", 1)[-1], node.kind))

    nodes: list[Node] = []
    placed: set[int] = set()
    for node in graph.nodes:
        outer = next((w for w in node.within if named(w)), None)
        if outer is None:
            nodes.append(node)
        elif id(outer) not in placed:
            placed.add(id(outer))
            nodes.append(outer.evolve(within=()))
    return graph if not placed else graph.evolve(nodes=nodes)


def trace_model(
    model: keras.Model, output_index: int | None = None, input_name: str | None = None
) -> Graph:
    """Flattens a Keras model into a Graph.

    Args:
        model: A Keras 3 model. Functional and Sequential models are walked layer by layer
            (nested models inlined); a subclassed model becomes one opaque node (enough for
            gradient methods, refused by rules).
        output_index: Which output to explain if the model has several.
        input_name: Which input to explain if the model has several (the others are fed
            through unchanged).

    Returns:
        The Graph from the explained input to the chosen output.

    Raises:
        ModelStructureError: several inputs and no (or an unknown) ``input_name``, several
            outputs and no ``output_index``, an unbuilt subclassed model.
    """
    if not isinstance(model, keras.Model):
        raise ModelStructureError(
            f"expected a keras.Model, got {type(model).__name__}; tf_clrp explains Keras 3 models"
        )
    functional = _compat.functional_of(model)
    if functional is None:
        return _opaque_graph(model, output_index, input_name)
    named = _compat.named_inputs(functional)
    explained = _explained_input(model.name, [name for name, _ in named], input_name)
    outputs = _compat.graph_outputs(functional)
    output_index = _output_index(model.name, len(outputs), output_index)
    model_inputs = tuple(
        ModelInput(name, id(t), _compat.tensor_shape(t), str(t.dtype)) for name, t in named
    )
    alias: dict[int, int] = {}
    nodes: list[Node] = []
    shapes = {m.id: m.shape for m in model_inputs}
    # Tensors are keyed by ``id`` during the walk: every traced graph is held until it ends,
    # or a freed tensor's id (an input the traced call ignores) could be given to a later
    # tensor, which ``alias`` would then wire to the wrong producer.
    keep: list[Any] = []
    _walk(functional, alias, "", nodes, shapes, keep=keep)
    del keep
    out_id = alias.get(id(outputs[output_index]), id(outputs[output_index]))
    chosen = next(m for m in model_inputs if m.name == explained)
    graph = Graph(
        nodes=nodes,
        input_id=chosen.id,
        output_id=out_id,
        input_shape=chosen.shape,
        output_shape=_compat.tensor_shape(outputs[output_index]),
        model_name=model.name,
        shapes=shapes,
        model_inputs=model_inputs,
        explained_input=explained,
        feeds=tuple(m for m in model_inputs if m is not chosen),
    )
    return graph.truncated(out_id) if len(outputs) > 1 else graph


def _explained_input(model_name: str, names: list[str], input_name: str | None) -> str:
    if input_name is None:
        if len(names) != 1:
            raise ModelStructureError(
                f"model {model_name!r} has {len(names)} inputs ({', '.join(map(repr, names))}); "
                "pass input_name=<one of them> to create_analyzer to choose the explained "
                "input (the others are fed through unchanged)"
            )
        return names[0]
    if input_name not in names:
        raise ModelStructureError(
            f"input_name={input_name!r} is not an input of model {model_name!r}; its inputs: "
            f"{', '.join(map(repr, names))}"
        )
    return input_name


def _output_index(model_name: str, n_outputs: int, output_index: int | None) -> int:
    if output_index is None:
        if n_outputs != 1:
            raise ModelStructureError(
                f"model {model_name!r} has {n_outputs} outputs; pass output_index=0.."
                f"{n_outputs - 1} to choose the one to explain"
            )
        return 0
    if not 0 <= output_index < n_outputs:
        raise ModelStructureError(
            f"output_index={output_index} is out of range: model {model_name!r} has "
            f"{n_outputs} output(s)"
        )
    return output_index


#: The group of a subclassed model's single node: autodiff only, no relevance rule.
OPAQUE_GROUP = Group.OPAQUE_MODEL


def opaque_refusal(node: Node) -> ModelStructureError:
    """The error for a rule-based analyzer on a subclassed (opaque) model."""
    return ModelStructureError(
        f"model {node.name!r} ({node.kind}) is a subclassed model without a functional graph: "
        "the gradient family (gradient, input_t_gradient, integrated_gradients, smoothgrad) "
        "explains it by autodiff, but relevance rules need its layers; rebuild it with the "
        "functional API (keras.Input(...), keras.Model(inputs, outputs))"
    )


def _opaque_graph(model: keras.Model, output_index: int | None, input_name: str | None) -> Graph:
    """A subclassed model as one node (no inner graph to walk): its gradient is autodiff of
    the whole model, and no relevance rule applies to it."""
    shape = _compat.built_input_shape(model)
    if shape is None:
        raise ModelStructureError(
            f"model {model.name!r} ({type(model).__name__}) is a subclassed model that is not "
            "built with a single input; call it once on a batch (model(x)) before explaining "
            "it, or rebuild it with the functional API (keras.Input(...), keras.Model(...))"
        )
    if input_name is not None:
        raise ModelStructureError(
            f"input_name={input_name!r}: subclassed model {model.name!r} has one input"
        )
    spec = model.compute_output_spec(keras.KerasTensor(shape))
    output_specs = list(keras.tree.flatten(spec))
    index = _output_index(model.name, len(output_specs), output_index)

    def run(values: list[tf.Tensor]) -> list[tf.Tensor]:
        output = keras.tree.flatten(model(values[0]))[index]
        return [tf.cast(output, tf.float32)]

    input_id, output_id = new_tensor_id(), new_tensor_id()
    out_shape = tuple(output_specs[index].shape)
    node = Node(
        name=model.name,
        op=model,
        group=OPAQUE_GROUP,
        inputs=(input_id,),
        outputs=(output_id,),
        run=run,
    )
    return Graph(
        nodes=[node],
        input_id=input_id,
        output_id=output_id,
        input_shape=shape,
        output_shape=out_shape,
        model_name=model.name,
        shapes={input_id: shape, output_id: out_shape},
        model_inputs=(ModelInput("input", input_id, shape, "float32"),),
        explained_input="input",
    )
