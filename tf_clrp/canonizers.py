"""Graph rewrites that make a model explainable without touching the user's model.

A canonizer is a value: any function ``Graph -> Graph`` that returns a new graph computing
the same function (up to float rounding), its pieces arranged so that rules apply cleanly.
A composite carries the sequence it wants (``Composite.canonizers``, default ``DEFAULT``);
``canonize`` applies one in order. Adding a canonizer is writing one such function.

* ``split_linear_layers``: Dense/Conv become pure linear nodes; fused activations become
  separate activation nodes; SeparableConv becomes depthwise + pointwise.
* ``strip_output_activation``: explain pre-softmax/sigmoid logits.
* ``fold_batch_norm``: BatchNorm after a linear layer is folded into its kernel and bias;
  a BatchNorm with no linear layer before it becomes an elementwise affine node.
* ``order_gates``: the inputs of a Multiply, main path first (the rules' gate convention).
* ``append_negated_outputs``: CLRP's "negated" dual as virtual output units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp import layers
from tf_clrp.graph import Graph, Node, new_tensor_id
from tf_clrp.layers import Group, LinearSpec

#: A graph rewrite that keeps the computed function.
Canonizer = Callable[[Graph], Graph]

#: Output non-linearities that are removed so that logits are explained.
STRIPPED_OUTPUT_ACTIVATIONS = frozenset({"softmax", "sigmoid", "log_softmax", "linear"})


def _linear_node(
    node: Node,
    spec: LinearSpec,
    outputs: tuple[int, ...],
    name: str,
    inputs: tuple[int, ...] | None = None,
    within: tuple[Node, ...] | None = None,
) -> Node:
    def run(values: list[tf.Tensor]) -> list[tf.Tensor]:
        x = tf.cast(values[0], tf.float32)
        return [spec.add_bias(spec.forward(x, spec.read_kernel()), spec.read_bias())]

    group = Group.CONVOLUTION if node.group is Group.SEPARABLE else node.group
    return Node(
        name=name,
        op=node.op,
        group=group,
        inputs=inputs or node.inputs,
        outputs=outputs,
        run=run,
        linear=spec,
        within=node.within if within is None else within,
    )


def _activation_node(
    node: Node, name: str, fn: Any, inputs: tuple[int, ...], outputs: tuple[int, ...]
) -> Node:
    return Node(
        name=name,
        op=node.op,
        group=Group.ACTIVATION,
        inputs=inputs,
        outputs=outputs,
        run=lambda values: [fn(values[0])],
        activation=layers.activation_name(fn),
        fused=True,
        within=node.within,
    )


def split_linear_layers(graph: Graph) -> Graph:
    """Turns Dense/Conv/SeparableConv calls into linear nodes (+ activation nodes).

    Args:
        graph: A traced graph.

    Returns:
        A new graph whose linear layers carry a ``LinearSpec`` and no fused activation.
    """
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.group is Group.ACTIVATION and node.activation is None:
            nodes.append(node.evolve(activation=layers.activation_of(node.op)))
            continue
        if node.group is None or not node.group.is_linear or node.linear is not None:
            nodes.append(node)
            continue
        activation = layers.fused_activation(node.op)
        linear_out = node.outputs if activation == "linear" else (new_tensor_id(),)
        if node.group is Group.SEPARABLE:
            depthwise, pointwise = layers.separable_specs(node.op)
            middle = (new_tensor_id(),)
            nodes.append(_linear_node(node, depthwise, middle, node.name + "/depthwise"))
            nodes.append(
                _linear_node(node, pointwise, linear_out, node.name + "/pointwise", inputs=middle)
            )
        else:
            nodes.append(_linear_node(node, layers.linear_spec(node.op), linear_out, node.name))
        if activation != "linear":
            nodes.append(
                _activation_node(
                    node, node.name + "/activation", node.op.activation, linear_out, node.outputs
                )
            )
    return graph.evolve(nodes=nodes)


def strip_output_activation(graph: Graph) -> Graph:
    """Explains the logits: drops a final softmax/sigmoid node of a model output.

    Args:
        graph: A graph after ``split_linear_layers``.

    Returns:
        The graph ending before the output non-linearity (unchanged if there is none, and
        for a hidden layer's output: ``Graph.output_layer``).
    """
    producer = graph.producer().get(graph.output_id)
    if (
        graph.output_layer
        or producer is None
        or producer.group is not Group.ACTIVATION
        or producer.activation not in STRIPPED_OUTPUT_ACTIVATIONS
    ):
        return graph
    return graph.evolve(
        nodes=[n for n in graph.nodes if n is not producer],
        output_id=producer.inputs[0],
        stripped_output_activation=producer.activation,
    )


def _batch_norm_affine(op: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """(scale, shift) of an inference-mode BatchNormalization: y = x·scale + shift."""
    mean = layers.as_float32(op.moving_mean)
    var = layers.as_float32(op.moving_variance)
    scale = tf.math.rsqrt(var + op.epsilon)
    if getattr(op, "gamma", None) is not None:
        scale = scale * layers.as_float32(op.gamma)
    shift = -mean * scale
    if getattr(op, "beta", None) is not None:
        shift = shift + layers.as_float32(op.beta)
    return scale, shift


def _bn_axis(op: Any) -> int:
    axis = op.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return -999
        axis = axis[0]
    return int(axis)


def _scale_kernel(kernel: tf.Tensor, scale: tf.Tensor, spec: LinearSpec) -> tf.Tensor:
    if spec.depthwise_multiplier is not None:
        shape = [1] * (len(kernel.shape) - 2) + [kernel.shape[-2], kernel.shape[-1]]
        return kernel * tf.reshape(scale, shape)
    assert spec.out_channel_kernel_axis is not None  # fold_batch_norm checks it
    axis = spec.out_channel_kernel_axis % len(kernel.shape)
    shape = [1] * len(kernel.shape)
    shape[axis] = -1
    return kernel * tf.reshape(scale, shape)


def _folded_spec(spec: LinearSpec, bn: Any) -> LinearSpec:
    def read_kernel() -> tf.Tensor:
        scale, _ = _batch_norm_affine(bn)
        return _scale_kernel(spec.read_kernel(), scale, spec)

    def read_bias() -> tf.Tensor:
        scale, shift = _batch_norm_affine(bn)
        bias = spec.read_bias()
        return shift if bias is None else bias * scale + shift

    return LinearSpec(
        spec.forward,
        read_kernel,
        read_bias,
        spec.channel_axis,
        spec.out_channel_kernel_axis,
        spec.depthwise_multiplier,
    )


def _affine_spec(bn: Any, rank: int) -> LinearSpec:
    axis = _bn_axis(bn) % rank
    shape = [1] * rank
    shape[axis] = -1

    def forward(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return x * tf.reshape(kernel, shape)

    return LinearSpec(
        forward,
        lambda: _batch_norm_affine(bn)[0],
        lambda: _batch_norm_affine(bn)[1],
        channel_axis=axis,
    )


def fold_batch_norm(graph: Graph) -> Graph:
    """Folds each BatchNorm into the linear layer before it (or makes it an affine node).

    A BatchNorm is folded when its input comes from a Dense/Conv node whose output feeds
    nothing else and whose channel axis is the BatchNorm axis.

    Args:
        graph: A graph after ``split_linear_layers``.

    Returns:
        The graph with no BatchNormalization nodes left.
    """
    producer = graph.producer()
    consumers = graph.consumers()
    folded: dict[int, Node] = {}  # id(linear node) -> folded replacement
    dropped: set[int] = set()
    affine: dict[int, Node] = {}
    for node in graph.nodes:
        if node.group is not Group.BATCH_NORM:
            continue
        source = producer.get(node.inputs[0])
        rank = len(graph.shapes.get(node.inputs[0], ())) or 4
        axis_ok = (
            source is not None
            and source.linear is not None
            and source.linear.out_channel_kernel_axis is not None
            and (_bn_axis(node.op) % rank == source.linear.channel_axis % rank)
        )
        if (
            axis_ok
            and len(consumers.get(node.inputs[0], [])) == 1
            and node.inputs[0] != graph.output_id
            and id(source) not in folded
        ):
            spec = _folded_spec(source.linear, node.op)
            same = len(source.within) == len(node.within) and all(
                a is b for a, b in zip(source.within, node.within)
            )
            folded[id(source)] = _linear_node(
                source,
                spec,
                node.outputs,
                f"{source.name}+{node.name.rsplit('/', 1)[-1]}",
                within=source.within if same else (),
            )
            dropped.add(id(node))
        else:
            spec = _affine_spec(node.op, rank)
            affine[id(node)] = Node(
                name=node.name,
                op=node.op,
                group=Group.BATCH_NORM,
                inputs=node.inputs,
                outputs=node.outputs,
                run=lambda v, s=spec: [
                    s.add_bias(s.forward(tf.cast(v[0], tf.float32), s.read_kernel()), s.read_bias())
                ],
                linear=spec,
                within=node.within,
            )
    nodes = []
    for node in graph.nodes:
        if id(node) in dropped:
            continue
        nodes.append(folded.get(id(node)) or affine.get(id(node)) or node)
    return graph.evolve(nodes=nodes)


def order_gates(graph: Graph) -> Graph:
    """Puts the main path first among a Multiply's inputs, the gates after it.

    The main path is the largest input (a gate broadcasts: a squeeze-excitation scale, a
    mask); ties keep their order. Rules for the MULTIPLY group (``rules.Pass`` by default)
    read the first input as the path relevance flows along. The node's computation is
    unchanged: it receives its inputs back in the original order.

    Args:
        graph: A traced graph.

    Returns:
        The graph with every Multiply's inputs in gate order.
    """
    nodes = []
    for node in graph.nodes:
        if node.group is not Group.MULTIPLY or len(node.inputs) < 2:
            nodes.append(node)
            continue
        sizes = [
            int(np.prod([d for d in graph.shapes.get(t, ())[1:] if d is not None] or [1]))
            for t in node.inputs
        ]
        order = sorted(range(len(node.inputs)), key=lambda i: -sizes[i])
        if order == list(range(len(order))):
            nodes.append(node)
            continue
        inverse = [int(i) for i in np.argsort(order)]
        nodes.append(
            node.evolve(
                inputs=tuple(node.inputs[i] for i in order),
                run=lambda values, run=node.run, inverse=inverse: run([values[i] for i in inverse]),
            )
        )
    return graph.evolve(nodes=nodes)


def append_negated_outputs(graph: Graph) -> Graph:
    """CLRP's "negated" dual: C virtual output units after the C real ones.

    The last linear layer's kernel (and bias) is extended by its negation along the output
    channels, so that layer yields 2C channels per position, and a reordering node (a
    permutation: relevance moves with its gradient) flattens the C real and the C virtual
    channels separately: output unit i (< C) is real unit i, unit C + i its negated twin.
    (Flattening the 2C channels together would interleave real and virtual units at every
    position of a channels-last Conv output or a Dense on a >=3-D input.) The user's
    weights are never edited. ``Graph.virtual_outputs`` is "negated" on the result.

    Args:
        graph: A canonical graph.

    Returns:
        The extended graph, or ``graph`` itself when its output does not come straight from
        a Dense/Conv layer (nothing to negate).
    """
    if not graph.nodes or graph.nodes[-1].outputs[0] != graph.output_id:
        return graph
    last = graph.nodes[-1]
    spec = last.linear
    if (
        spec is None
        or spec.depthwise_multiplier is not None
        or spec.out_channel_kernel_axis is None
        or last.group is Group.BATCH_NORM
    ):
        return graph
    axis = spec.out_channel_kernel_axis

    def read_kernel() -> tf.Tensor:
        kernel = spec.read_kernel()
        return tf.concat([kernel, -kernel], axis=axis)

    def read_bias() -> tf.Tensor | None:
        bias = spec.read_bias()
        if bias is None:
            return None
        # its last axis runs along the output channels (an EinsumDense bias may hold 1 there)
        channels = spec.read_kernel().shape[axis]
        bias = tf.broadcast_to(bias, [*bias.shape[:-1], channels])
        return tf.concat([bias, -bias], axis=-1)

    extended = LinearSpec(spec.forward, read_kernel, read_bias, spec.channel_axis, axis)

    def run(values: list[tf.Tensor]) -> list[tf.Tensor]:
        return [
            extended.add_bias(
                extended.forward(tf.cast(values[0], tf.float32), read_kernel()), read_bias()
            )
        ]

    def real_then_virtual(values: list[tf.Tensor]) -> list[tf.Tensor]:
        real, virtual = tf.split(values[0], 2, axis=spec.channel_axis)
        rows = tf.shape(real)[0]
        return [tf.concat([tf.reshape(real, (rows, -1)), tf.reshape(virtual, (rows, -1))], axis=1)]

    doubled = new_tensor_id()
    # The head keeps its name: layer_rules keyed by it must still apply.
    head = last.evolve(linear=extended, run=run, outputs=(doubled,))
    order = Node(
        name=last.name + "/real_then_virtual",
        op=None,
        group=Group.RESHAPE,
        inputs=(doubled,),
        outputs=(graph.output_id,),
        run=real_then_virtual,
    )
    return graph.evolve(nodes=[*graph.nodes[:-1], head, order], virtual_outputs="negated")


#: The canonizers every analyzer applies, in order.
DEFAULT: tuple[Canonizer, ...] = (
    split_linear_layers,
    strip_output_activation,
    fold_batch_norm,
    order_gates,
)

#: The forward to the logits with every layer's own output kept (BatchNorm not folded):
#: what the metrics evaluate and restart from hidden tensors.
LOGITS: tuple[Canonizer, ...] = (split_linear_layers, strip_output_activation)


def canonize(graph: Graph, canonizers: Sequence[Canonizer] = DEFAULT) -> Graph:
    """Applies ``canonizers`` in order.

    Args:
        graph: A traced graph.
        canonizers: ``Graph -> Graph`` functions (default ``DEFAULT``).

    Returns:
        The canonical graph.
    """
    for canonizer in canonizers:
        graph = canonizer(graph)
    return graph


def without(canonizers: Sequence[Canonizer], *dropped: Canonizer) -> tuple[Canonizer, ...]:
    """``canonizers`` with some removed (e.g. ``without(DEFAULT, fold_batch_norm)``)."""
    return tuple(c for c in canonizers if c not in dropped)
