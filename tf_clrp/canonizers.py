"""Graph rewrites that make a model explainable without touching the user's model.

Each canonizer maps a ``Graph`` to a new ``Graph``: the forward computation is unchanged
(up to float rounding), only its pieces are arranged so that rules apply cleanly:

* ``split_linear_layers``: Dense/Conv become pure linear nodes; fused activations become
  separate activation nodes; SeparableConv becomes depthwise + pointwise.
* ``strip_output_activation``: explain pre-softmax/sigmoid logits.
* ``fold_batch_norm``: BatchNorm after a linear layer is folded into its kernel and bias;
  a BatchNorm with no linear layer before it becomes an elementwise affine node.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import tensorflow as tf

from tf_clrp import layers
from tf_clrp.graph import Graph, Node, new_tensor_id
from tf_clrp.layers import LinearSpec

#: Output non-linearities that are removed so that logits are explained.
STRIPPED_OUTPUT_ACTIVATIONS = frozenset({"softmax", "sigmoid", "log_softmax", "linear"})


def _linear_node(node: Node, spec: LinearSpec, outputs: tuple[int, ...], name: str,
                 inputs: tuple[int, ...] | None = None) -> Node:
    def run(values: list[tf.Tensor]) -> list[tf.Tensor]:
        x = tf.cast(values[0], tf.float32)
        return [spec.add_bias(spec.forward(x, spec.read_kernel()), spec.read_bias())]

    return Node(name=name, op=node.op, group=node.group if node.group != "separable"
                else "convolution", inputs=inputs or node.inputs, outputs=outputs, run=run,
                linear=spec)


def _activation_node(node: Node, name: str, fn: Any, inputs: tuple[int, ...],
                     outputs: tuple[int, ...]) -> Node:
    return Node(name=name, op=node.op, group="activation", inputs=inputs, outputs=outputs,
                run=lambda values: [fn(values[0])], activation=layers.activation_name(fn),
                fused=True)


def split_linear_layers(graph: Graph) -> Graph:
    """Turns Dense/Conv/SeparableConv calls into linear nodes (+ activation nodes).

    Args:
        graph: A traced graph.

    Returns:
        A new graph whose linear layers carry a ``LinearSpec`` and no fused activation.
    """
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.group == "activation" and node.activation is None:
            nodes.append(node.evolve(activation=layers.activation_of(node.op)))
            continue
        if node.group not in ("dense", "convolution", "separable") or node.linear is not None:
            nodes.append(node)
            continue
        activation = layers.fused_activation(node.op)
        linear_out = node.outputs if activation == "linear" else (new_tensor_id(),)
        if node.group == "separable":
            depthwise, pointwise = layers.separable_specs(node.op)
            middle = (new_tensor_id(),)
            nodes.append(_linear_node(node, depthwise, middle, node.name + "/depthwise"))
            nodes.append(_linear_node(node, pointwise, linear_out, node.name + "/pointwise",
                                      inputs=middle))
        else:
            nodes.append(_linear_node(node, layers.linear_spec(node.op), linear_out, node.name))
        if activation != "linear":
            nodes.append(_activation_node(node, node.name + "/activation", node.op.activation,
                                          linear_out, node.outputs))
    return _with_nodes(graph, nodes)


def strip_output_activation(graph: Graph) -> Graph:
    """Explains the logits: drops a final softmax/sigmoid node.

    Args:
        graph: A graph after ``split_linear_layers``.

    Returns:
        The graph ending before the output non-linearity (unchanged if there is none).
    """
    producer = graph.producer().get(graph.output_id)
    if (producer is None or producer.group != "activation"
            or producer.activation not in STRIPPED_OUTPUT_ACTIVATIONS):
        return graph
    return replace(graph, nodes=[n for n in graph.nodes if n is not producer],
                   output_id=producer.inputs[0],
                   stripped_output_activation=producer.activation)


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

    return LinearSpec(spec.forward, read_kernel, read_bias, spec.channel_axis,
                      spec.out_channel_kernel_axis, spec.depthwise_multiplier)


def _affine_spec(bn: Any, rank: int) -> LinearSpec:
    axis = _bn_axis(bn) % rank
    shape = [1] * rank
    shape[axis] = -1

    def forward(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return x * tf.reshape(kernel, shape)

    return LinearSpec(forward, lambda: _batch_norm_affine(bn)[0],
                      lambda: _batch_norm_affine(bn)[1], channel_axis=axis)


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
    folded: dict[int, Node] = {}   # id(linear node) -> folded replacement
    dropped: set[int] = set()
    affine: dict[int, Node] = {}
    for node in graph.nodes:
        if node.group != "batch_norm":
            continue
        source = producer.get(node.inputs[0])
        rank = len(graph.shapes.get(node.inputs[0], ())) or 4
        axis_ok = source is not None and source.linear is not None and (
            _bn_axis(node.op) % rank == source.linear.channel_axis % rank)
        if (axis_ok and len(consumers.get(node.inputs[0], [])) == 1
                and node.inputs[0] != graph.output_id and id(source) not in folded):
            spec = _folded_spec(source.linear, node.op)
            folded[id(source)] = _linear_node(source, spec, node.outputs,
                                              f"{source.name}+{node.name.rsplit('/', 1)[-1]}")
            dropped.add(id(node))
        else:
            spec = _affine_spec(node.op, rank)
            affine[id(node)] = Node(
                name=node.name, op=node.op, group="batch_norm", inputs=node.inputs,
                outputs=node.outputs, run=lambda v, s=spec: [s.add_bias(
                    s.forward(tf.cast(v[0], tf.float32), s.read_kernel()), s.read_bias())],
                linear=spec)
    nodes = []
    for node in graph.nodes:
        if id(node) in dropped:
            continue
        nodes.append(folded.get(id(node)) or affine.get(id(node)) or node)
    return _with_nodes(graph, nodes)


def _with_nodes(graph: Graph, nodes: list[Node]) -> Graph:
    return replace(graph, nodes=nodes)


def canonize(graph: Graph, *, strip_output: bool = True, fold_bn: bool = True) -> Graph:
    """Applies the default canonizers in order.

    Args:
        graph: A traced graph.
        strip_output: Remove a final softmax/sigmoid (explain logits).
        fold_bn: Fold BatchNormalization into preceding linear layers.

    Returns:
        The canonical graph.
    """
    graph = split_linear_layers(graph)
    if strip_output:
        graph = strip_output_activation(graph)
    if fold_bn:
        graph = fold_batch_norm(graph)
    return graph
