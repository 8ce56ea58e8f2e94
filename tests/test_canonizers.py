"""Canonizers: the canonical graph computes the user's (pre-softmax) function, relevance
through folded layers matches explicit numpy references, and the user's model is untouched.

The canonical graph is executed node by node with ``node.run`` (``run_graph``): that is the
forward pass the rules see, independent of any rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import logits_of, randomize

import tf_clrp
from tf_clrp import canonizers
from tf_clrp.analyzers.base import build_graph
from tf_clrp.graph import Graph, trace_model

L = keras.layers


# ----------------------------------------------------------------------------- helpers
def run_graph(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Executes a (canonical) graph's nodes in order with ``node.run``."""
    values: dict[int, Any] = {graph.input_id: tf.constant(x)}
    for node in graph.nodes:
        outputs = node.run([values[t] for t in node.inputs])
        for tensor, value in zip(node.outputs, outputs, strict=True):
            values[tensor] = value
    return np.asarray(values[graph.output_id])


def model_of(build: Callable[[Any], Any], shape: tuple[int, ...]) -> keras.Model:
    """keras.Model(inp, build(inp)) with random weights and BatchNorm statistics."""
    inp = keras.Input(shape)
    model = keras.Model(inp, build(inp))
    randomize(model)
    return model


def sample(model: keras.Model, n: int = 3) -> np.ndarray:
    """``n`` standard-normal inputs (the same ones whatever the test order)."""
    rng = np.random.default_rng(11)
    return rng.normal(0, 1, (n, *model.input_shape[1:])).astype("float32")


def assert_same_function(graph: Graph, model: keras.Model, x: np.ndarray) -> None:
    expected = logits_of(model, x)
    got = run_graph(graph, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(
        got, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max())
    )


# ----------------------------------------------------------------------------- split
def _fused_activations(inp: Any) -> Any:
    h = L.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = L.SeparableConv2D(5, 3, depth_multiplier=2, activation="elu", name="sep")(h)
    h = L.Flatten()(h)
    h = L.Dense(6, activation="tanh", name="hidden")(h)
    return L.Dense(3, activation="softmax", name="head")(h)


def test_split_linear_layers_separates_fused_activations() -> None:
    model = model_of(_fused_activations, (8, 8, 3))
    traced = trace_model(model)
    split = canonizers.split_linear_layers(traced)
    linear = [n.name for n in split.nodes if n.linear is not None]
    assert linear == ["conv", "sep/depthwise", "sep/pointwise", "hidden", "head"]
    activations = [(n.name, n.activation) for n in split.nodes if n.group == "activation"]
    assert activations == [
        ("conv/activation", "relu"),
        ("sep/activation", "elu"),
        ("hidden/activation", "tanh"),
        ("head/activation", "softmax"),
    ]
    # each activation node consumes exactly its linear node's output
    producer = split.producer()
    feeds = {n.name: producer[n.inputs[0]].name for n in split.nodes if n.group == "activation"}
    assert feeds == {
        "conv/activation": "conv",
        "sep/activation": "sep/pointwise",
        "hidden/activation": "hidden",
        "head/activation": "head",
    }
    assert len(split.nodes) == len(traced.nodes) + 5  # 4 activations + 1 pointwise
    x = sample(model)
    np.testing.assert_allclose(run_graph(split, x), model(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "layer,name",
    [
        (lambda h: L.ReLU()(h), "relu"),
        (lambda h: L.ReLU(max_value=6.0)(h), "relu6"),
        (lambda h: L.LeakyReLU(negative_slope=0.2)(h), "leaky_relu"),
        (lambda h: L.ELU()(h), "elu"),
        (lambda h: L.Activation("swish")(h), "silu"),
        (lambda h: L.Activation("hard_swish")(h), "hard_silu"),
        (lambda h: L.Activation("gelu")(h), "gelu"),
        (lambda h: keras.ops.relu(h), "relu"),
        (lambda h: keras.ops.silu(h), "silu"),
    ],
)
def test_activation_nodes_are_named(layer: Callable[[Any], Any], name: str) -> None:
    model = model_of(lambda inp: L.Dense(2)(layer(L.Dense(4)(inp))), (3,))
    graph = build_graph(model)
    assert [n.activation for n in graph.nodes if n.group == "activation"] == [name]
    x = sample(model)
    assert_same_function(graph, model, x)


# ----------------------------------------------------------------------------- strip
HEADS = {
    "dense_softmax": (lambda h: L.Dense(4, activation="softmax")(h), "softmax"),
    "softmax_layer": (lambda h: L.Softmax()(L.Dense(4)(h)), "softmax"),
    "activation_sigmoid": (lambda h: L.Activation("sigmoid")(L.Dense(4)(h)), "sigmoid"),
    "ops_softmax": (lambda h: keras.ops.softmax(L.Dense(4)(h)), "softmax"),
    "log_softmax": (lambda h: L.Activation("log_softmax")(L.Dense(4)(h)), "log_softmax"),
    "logits": (lambda h: L.Dense(4)(h), None),
}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_strip_output_activation(head: str) -> None:
    make, stripped = HEADS[head]
    model = model_of(lambda inp: make(L.Dense(5, activation="relu")(inp)), (6,))
    graph = build_graph(model)
    assert graph.stripped_output_activation == stripped
    x = sample(model)
    head_dense = [layer for layer in model.layers if isinstance(layer, L.Dense)][-1]
    if head_dense.activation is not keras.activations.linear:
        expected = logits_of(model, x)
    else:  # a separate activation layer / op after the head Dense: its output are the logits
        expected = keras.Model(model.inputs, head_dense.output)(x).numpy()
    np.testing.assert_allclose(run_graph(graph, x), expected, rtol=1e-5, atol=1e-6)


def test_softmax_inside_the_model_is_kept() -> None:
    model = model_of(lambda inp: L.Dense(3)(L.Dense(4, activation="softmax")(inp)), (5,))
    graph = build_graph(model)
    assert graph.stripped_output_activation is None
    assert [n.activation for n in graph.nodes if n.group == "activation"] == ["softmax"]
    assert_same_function(graph, model, sample(model))


def test_strip_in_a_nested_model() -> None:
    inner = model_of(
        lambda inp: L.Dense(4, activation="softmax")(L.Dense(5, activation="relu")(inp)), (6,)
    )
    model = keras.Sequential([keras.Input((6,)), inner])
    graph = build_graph(model)
    assert graph.stripped_output_activation == "softmax"
    assert_same_function(graph, inner, sample(model))


def test_strip_and_fold_before_a_final_softmax() -> None:
    model = model_of(_bn_before_softmax, (6,))
    graph = build_graph(model)
    assert graph.stripped_output_activation == "softmax"
    assert not any(n.group == "batch_norm" for n in graph.nodes)
    x = sample(model)
    expected = keras.Model(model.inputs, model.layers[-2].output)(x).numpy()
    np.testing.assert_allclose(run_graph(graph, x), expected, rtol=1e-5, atol=1e-5)


def test_strip_the_chosen_output_of_a_two_headed_model() -> None:
    inp = keras.Input((6,))
    h = L.Dense(5, activation="relu")(inp)
    first, second = L.Dense(3, activation="softmax"), L.Dense(2, activation="sigmoid")
    model = keras.Model(inp, [first(h), second(h)])
    randomize(model)
    graph = build_graph(model, output_index=1)
    assert graph.stripped_output_activation == "sigmoid"
    x = sample(model)
    features = keras.Model(inp, h)(x).numpy()
    expected = features @ second.kernel.numpy() + second.bias.numpy()
    np.testing.assert_allclose(run_graph(graph, x), expected, rtol=1e-5, atol=1e-6)


def test_no_strip_when_explaining_a_hidden_layer() -> None:
    model = model_of(
        lambda inp: L.Dense(4, activation="softmax", name="head")(
            L.Dense(5, activation="sigmoid", name="hidden")(inp)
        ),
        (6,),
    )
    graph = build_graph(model, layer_name="hidden")
    assert graph.stripped_output_activation is None
    x = sample(model)
    expected = keras.Model(model.inputs, model.get_layer("hidden").output)(x).numpy()
    np.testing.assert_allclose(run_graph(graph, x), expected, rtol=1e-6)


# ----------------------------------------------------------------------------- fold
def _dense_bn(inp: Any) -> Any:
    return L.Dense(3)(L.ReLU()(L.BatchNormalization()(L.Dense(5)(inp))))


def _dense_nobias_bn(inp: Any) -> Any:
    return L.Dense(3)(L.ReLU()(L.BatchNormalization()(L.Dense(5, use_bias=False)(inp))))


def _dense_3d_bn(inp: Any) -> Any:
    h = L.BatchNormalization()(L.Dense(5)(inp))  # (B, T, 5), axis -1: folded
    return L.Dense(3)(L.Flatten()(L.ReLU()(h)))


def _dense_3d_bn_time_axis(inp: Any) -> Any:
    h = L.BatchNormalization(axis=1)(L.Dense(5)(inp))  # normalizes T, not units: affine
    return L.Dense(3)(L.Flatten()(L.ReLU()(h)))


def _conv_bn(inp: Any) -> Any:
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(inp)))
    return L.Dense(3)(L.GlobalAveragePooling2D()(h))


def _conv_bn_no_affine(inp: Any) -> Any:
    h = L.BatchNormalization(center=False, scale=False)(L.Conv2D(4, 3)(inp))
    return L.Dense(3)(L.Flatten()(L.ReLU()(h)))


def _conv_channels_first_bn(inp: Any) -> Any:
    # 5 filters, output width 4: Keras 3.15's ops.add picks NHWC bias_add whenever the last
    # axis has the bias's length, so its own channels_first Conv2D is wrong if W == filters.
    h = L.Conv2D(5, 3, data_format="channels_first")(inp)
    h = L.BatchNormalization(axis=1)(h)
    return L.Dense(3)(L.Flatten()(L.ReLU()(h)))


def _conv1d_bn(inp: Any) -> Any:
    return L.Dense(3)(L.Flatten()(L.BatchNormalization()(L.Conv1D(4, 3)(inp))))


def _conv3d_bn(inp: Any) -> Any:
    return L.Dense(3)(L.Flatten()(L.BatchNormalization()(L.Conv3D(3, 2)(inp))))


def _depthwise_bn(inp: Any) -> Any:
    h = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")(inp)
    return L.Dense(3)(L.Flatten()(L.ReLU()(L.BatchNormalization()(h))))


def _transpose_bn(inp: Any) -> Any:
    h = L.Conv2DTranspose(4, 3, strides=2, padding="same")(inp)
    return L.Dense(3)(L.Flatten()(L.ReLU()(L.BatchNormalization()(h))))


def _separable_bn(inp: Any) -> Any:
    h = L.SeparableConv2D(5, 3, depth_multiplier=2)(inp)
    return L.Dense(3)(L.Flatten()(L.ReLU()(L.BatchNormalization()(h))))


def _bn_after_fused_relu(inp: Any) -> Any:
    h = L.BatchNormalization()(L.Conv2D(4, 3, activation="relu")(inp))
    return L.Dense(3)(L.Flatten()(h))


def _bn_at_input(inp: Any) -> Any:
    h = L.Conv2D(4, 3, activation="relu")(L.BatchNormalization()(inp))
    return L.Dense(3)(L.Flatten()(h))


def _bn_on_a_shared_output(inp: Any) -> Any:
    h = L.Conv2D(4, 3, padding="same")(inp)
    y = L.ReLU()(L.BatchNormalization()(h))  # h also feeds the Add: affine
    return L.Dense(3)(L.GlobalAveragePooling2D()(L.Add()([h, y])))


def _bn_after_add(inp: Any) -> Any:
    a = L.Conv2D(4, 3, padding="same")(inp)
    b = L.Conv2D(4, 3, padding="same")(inp)
    h = L.ReLU()(L.BatchNormalization()(L.Add()([a, b])))
    return L.Dense(3)(L.GlobalAveragePooling2D()(h))


def _bn_in_nested_model(inp: Any) -> Any:
    inner_in = keras.Input((6, 6, 3))
    inner = keras.Model(inner_in, L.Conv2D(4, 3, name="inner_conv")(inner_in), name="inner")
    h = L.ReLU()(L.BatchNormalization(name="outer_bn")(inner(inp)))  # folds across nesting
    return L.Dense(3, activation="softmax")(L.Flatten()(h))


def _two_bns_in_a_row(inp: Any) -> Any:
    h = L.BatchNormalization()(L.BatchNormalization()(L.Conv2D(4, 3)(inp)))
    return L.Dense(3)(L.Flatten()(L.ReLU()(h)))


def _separable1d_bn(inp: Any) -> Any:
    return L.Dense(3)(L.Flatten()(L.BatchNormalization()(L.SeparableConv1D(4, 3)(inp))))


def _depthwise1d_bn(inp: Any) -> Any:
    h = L.DepthwiseConv1D(3, depth_multiplier=2)(inp)
    return L.Dense(3)(L.Flatten()(L.BatchNormalization()(h)))


def _bn_at_the_output(inp: Any) -> Any:
    return L.BatchNormalization()(L.Dense(3)(L.Dense(5, activation="relu")(inp)))


def _bn_before_softmax(inp: Any) -> Any:
    h = L.BatchNormalization()(L.Dense(3)(L.Dense(5, activation="relu")(inp)))
    return L.Softmax()(h)


#: name -> (builder, input shape, number of BatchNorms folded, number left as affine nodes)
FOLD_CASES: dict[str, tuple[Callable[[Any], Any], tuple[int, ...], int, int]] = {
    "dense+bn": (_dense_bn, (6,), 1, 0),
    "dense(no bias)+bn": (_dense_nobias_bn, (6,), 1, 0),
    "dense(3d)+bn": (_dense_3d_bn, (4, 6), 1, 0),
    "dense(3d)+bn(axis=1)": (_dense_3d_bn_time_axis, (4, 6), 0, 1),
    "conv+bn": (_conv_bn, (6, 6, 3), 1, 0),
    "conv+bn(center,scale off)": (_conv_bn_no_affine, (6, 6, 3), 1, 0),
    "conv(channels_first)+bn": (_conv_channels_first_bn, (3, 7, 6), 1, 0),
    "conv1d+bn": (_conv1d_bn, (8, 3), 1, 0),
    "conv3d+bn": (_conv3d_bn, (4, 4, 4, 2), 1, 0),
    "depthwise+bn": (_depthwise_bn, (6, 6, 3), 1, 0),
    "conv2d_transpose+bn": (_transpose_bn, (4, 4, 3), 1, 0),
    "separable+bn": (_separable_bn, (6, 6, 3), 1, 0),
    "conv(relu)+bn": (_bn_after_fused_relu, (6, 6, 3), 0, 1),
    "bn at input": (_bn_at_input, (6, 6, 3), 0, 1),
    "bn on shared output": (_bn_on_a_shared_output, (6, 6, 3), 0, 1),
    "bn after add": (_bn_after_add, (6, 6, 3), 0, 1),
    "nested conv + outer bn": (_bn_in_nested_model, (6, 6, 3), 1, 0),
    "bn+bn": (_two_bns_in_a_row, (6, 6, 3), 1, 1),
    "separable1d+bn": (_separable1d_bn, (8, 3), 1, 0),
    "depthwise1d+bn": (_depthwise1d_bn, (8, 3), 1, 0),
    "dense+bn at the output": (_bn_at_the_output, (6,), 1, 0),
}


@pytest.mark.parametrize("case", list(FOLD_CASES))
def test_fold_batch_norm_keeps_the_function(case: str) -> None:
    build, shape, n_folded, n_affine = FOLD_CASES[case]
    model = model_of(build, shape)
    graph = build_graph(model)
    folded = [n for n in graph.nodes if n.linear is not None and "+" in n.name]
    affine = [n for n in graph.nodes if n.group == "batch_norm"]
    assert (len(folded), len(affine)) == (n_folded, n_affine), [n.name for n in graph.nodes]
    assert all(n.linear is not None for n in affine)
    x = sample(model)
    assert_same_function(graph, model, x)
    # without folding, the graph computes the same function too
    unfolded = canonizers.without(canonizers.DEFAULT, canonizers.fold_batch_norm)
    assert_same_function(build_graph(model, canonizer_sequence=unfolded), model, x)


def test_canonizers_return_new_graphs_and_are_idempotent() -> None:
    model = model_of(_everything, (8, 8, 3))
    traced = trace_model(model)
    traced_nodes = list(traced.nodes)
    split = canonizers.split_linear_layers(traced)
    split_nodes = list(split.nodes)
    stripped = canonizers.strip_output_activation(split)
    folded = canonizers.fold_batch_norm(stripped)
    assert traced.nodes == traced_nodes and split.nodes == split_nodes  # inputs untouched
    assert split.output_id == traced.output_id != stripped.output_id
    again = canonizers.canonize(folded)
    assert [n.name for n in again.nodes] == [n.name for n in folded.nodes]
    x = sample(model)
    np.testing.assert_allclose(run_graph(again, x), run_graph(folded, x), rtol=1e-6)
    assert_same_function(folded, model, x)


def test_folded_node_names_the_layers() -> None:
    model = model_of(_bn_in_nested_model, (6, 6, 3))
    names = [n.name for n in build_graph(model).nodes if n.linear is not None]
    assert names[0] == "inner/inner_conv+outer_bn"


# ----------------------------------------------------------------------------- relevance
def _stab(z: np.ndarray, eps: float) -> np.ndarray:
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def _tiny_bn_net(bn_first: bool = False) -> keras.Model:
    """Dense(5)→BN→ReLU→Dense(3) (or BN→Dense(5)→ReLU→Dense(3)) with random statistics."""

    def build(inp: Any) -> Any:
        if bn_first:
            return L.Dense(3, name="d2")(
                L.ReLU()(L.Dense(5, name="d1")(L.BatchNormalization(name="bn", epsilon=1e-3)(inp)))
            )
        return L.Dense(3, name="d2")(
            L.ReLU()(L.BatchNormalization(name="bn", epsilon=1e-3)(L.Dense(5, name="d1")(inp)))
        )

    return model_of(build, (4,))


def _bn_affine(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (w.astype(np.float64) for w in model.get_layer("bn").get_weights())
    scale = gamma / np.sqrt(var + 1e-3)
    return scale, beta - mean * scale


def _naive_rule(
    rule: str, a: np.ndarray, w: np.ndarray, b: np.ndarray, r: np.ndarray, eps: float
) -> np.ndarray:
    """Relevance at the input of one Dense layer for one sample, by explicit products."""
    if rule == "epsilon":
        c = a[:, None] * w  # (in, out)
        z = c.sum(axis=0) + b
    else:  # z+: (a·w)⁺ without bias
        c = np.maximum(a[:, None] * w, 0.0)
        z = c.sum(axis=0)
    return (c * (r / _stab(z, eps))[None, :]).sum(axis=1)


@pytest.mark.parametrize(
    "rule,analyzer,eps", [("epsilon", "lrp.epsilon", 0.01), ("zplus", "lrp.z_plus", 1e-9)]
)
@pytest.mark.parametrize("bn_first", [False, True], ids=["dense-bn", "bn-dense"])
def test_relevance_through_folded_batch_norm_matches_numpy(
    rule: str, analyzer: str, eps: float, bn_first: bool
) -> None:
    model = _tiny_bn_net(bn_first)
    x = np.random.default_rng(12).normal(0, 1, (4, 4)).astype("float32")
    target = 1
    options = {"epsilon": eps} if rule == "epsilon" else {}
    ours = tf_clrp.create_analyzer(analyzer, model, **options).analyze(x, neuron_selection=target)
    w1, b1 = (v.astype(np.float64) for v in model.get_layer("d1").get_weights())
    w2, b2 = (v.astype(np.float64) for v in model.get_layer("d2").get_weights())
    scale, shift = _bn_affine(model)
    for i, xi in enumerate(x.astype(np.float64)):
        if bn_first:  # BN is an affine node: relevance passes through it unchanged
            a0, w, b = xi * scale + shift, w1, b1
        else:  # BN folded into d1: W' = W·s, b' = b·s + t
            a0, w, b = xi, w1 * scale[None, :], b1 * scale + shift
        h = np.maximum(a0 @ w + b, 0.0)
        y = h @ w2 + b2
        r2 = np.zeros(3)
        r2[target] = y[target]
        r1 = _naive_rule(rule, h, w2, b2, r2, eps)
        r0 = _naive_rule(rule, a0, w, b, r1, eps)
        np.testing.assert_allclose(ours[i], r0, rtol=1e-4, atol=1e-6 * np.abs(r0).max())


FOLDED_LINEAR: dict[str, tuple[Callable[[], keras.layers.Layer], tuple[int, ...], int]] = {
    # name -> (layer factory, input shape, kernel axis of the output channels)
    "conv2d": (lambda: L.Conv2D(4, 3, padding="same"), (6, 6, 3), -1),
    "depthwise": (
        lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
        (6, 6, 3),
        None,
    ),
    "conv2d_transpose": (lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same"), (4, 4, 3), -2),
    "dense": (lambda: L.Dense(5), (6,), -1),
}


def _fold_by_hand(
    kernel: np.ndarray, bias: np.ndarray, scale: np.ndarray, shift: np.ndarray, axis: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if axis is None:  # depthwise (kh, kw, in, mult): channel c = i·mult + m
        folded = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        shape = [1] * kernel.ndim
        shape[axis] = -1
        folded = kernel * scale.reshape(shape)
    return folded, bias * scale + shift


@pytest.mark.parametrize("case", list(FOLDED_LINEAR))
@pytest.mark.parametrize("analyzer", ["lrp.epsilon", "lrp.z_plus", "lrp.alpha_2_beta_1"])
def test_folded_model_explains_like_a_hand_folded_one(case: str, analyzer: str) -> None:
    make, shape, axis = FOLDED_LINEAR[case]
    linear, bn, head = make(), L.BatchNormalization(epsilon=1e-3, name="bn"), L.Dense(3)
    inp = keras.Input(shape)
    model = keras.Model(inp, head(L.Flatten()(L.ReLU()(bn(linear(inp))))))
    randomize(model)
    plain_linear = make()
    inp2 = keras.Input(shape)
    plain = keras.Model(inp2, head(L.Flatten()(L.ReLU()(plain_linear(inp2)))))
    kernel, bias = linear.get_weights()
    scale, shift = _bn_affine(model)
    plain_linear.set_weights(
        [
            w.astype("float32")
            for w in _fold_by_hand(
                kernel.astype(np.float64), bias.astype(np.float64), scale, shift, axis
            )
        ]
    )
    x = sample(model, 2)
    np.testing.assert_allclose(logits_of(plain, x), logits_of(model, x), rtol=1e-5, atol=1e-5)
    ours = tf_clrp.create_analyzer(analyzer, model).analyze(x, neuron_selection=2)
    reference = tf_clrp.create_analyzer(analyzer, plain).analyze(x, neuron_selection=2)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


# ----------------------------------------------------------------------------- no mutation
def _snapshot(model: keras.Model, x: np.ndarray) -> dict[str, Any]:
    return {
        "weights": [w.numpy().copy() for w in model.weights],
        "paths": [w.path for w in model.weights],
        "layers": [id(layer) for layer in model.layers],
        "n_operations": len(model.operations),
        "trainable": [layer.trainable for layer in model.layers],
        "n_trainable_weights": len(model.trainable_weights),
        "activations": [getattr(layer, "activation", None) for layer in model.layers],
        "output": model(x).numpy(),
    }


def _everything(inp: Any) -> Any:
    h = L.Conv2D(4, 3, activation="relu")(inp)
    h = L.BatchNormalization()(L.SeparableConv2D(6, 3)(h))
    h = L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(L.ReLU()(h)))
    h = L.Flatten()(L.ReLU()(h))
    h = L.BatchNormalization()(L.Dense(5)(h))
    return L.Dense(4, activation="softmax")(L.ReLU()(h))


@pytest.mark.parametrize("analyzer", ["lrp.epsilon", "clrp", "gradient"])
def test_users_model_is_unchanged(analyzer: str) -> None:
    model = model_of(_everything, (8, 8, 3))
    model.layers[2].trainable = False
    model.layers[3].trainable = False  # a frozen BatchNorm
    x = sample(model, 2)
    before = _snapshot(model, x)
    graph = build_graph(model)
    run_graph(graph, x)
    options = {"contrast": "negated"} if analyzer == "clrp" else {}
    tf_clrp.create_analyzer(analyzer, model, **options).analyze(x, neuron_selection=1)
    after = _snapshot(model, x)
    assert len(before["weights"]) == len(after["weights"])
    for a, b in zip(before["weights"], after["weights"], strict=True):
        assert a.tobytes() == b.tobytes()  # bitwise
    for key in (
        "paths",
        "layers",
        "n_operations",
        "trainable",
        "n_trainable_weights",
        "activations",
    ):
        assert before[key] == after[key], key
    assert before["output"].tobytes() == after["output"].tobytes()
    assert model.layers[-1].activation is keras.activations.softmax
    assert sum(isinstance(layer, L.BatchNormalization) for layer in model.layers) == 3


# ----------------------------------------------------------------------------- as values
def _doubled_output(graph: Graph) -> Graph:
    """A user canonizer (one function): the output times 2, as a Rescaling-group node."""
    doubled = tf_clrp.graph.new_tensor_id()
    node = tf_clrp.graph.Node(
        name="times_two",
        op=None,
        group=tf_clrp.layers.Group.RESCALING,
        inputs=(graph.output_id,),
        outputs=(doubled,),
        run=lambda values: [2.0 * values[0]],
    )
    return graph.evolve(
        nodes=[*graph.nodes, node],
        output_id=doubled,
        shapes={**graph.shapes, doubled: graph.output_shape},
    )


@pytest.mark.filterwarnings("ignore:.*non-rectifier activation")
def test_a_composite_carries_its_canonizers() -> None:
    """A canonizer added to a composite's sequence reaches the explained graph: the doubled
    logit doubles the z-rule map (relevance passes the rescaling node unchanged)."""
    model = model_of(_fused_activations, (6, 6, 3))
    x = sample(model)
    plain = tf_clrp.composites.uniform(tf_clrp.rules.Z())
    extended = plain.with_canonizers((*canonizers.DEFAULT, _doubled_output))
    base = tf_clrp.create_analyzer("lrp", model, composite=plain)
    doubled = tf_clrp.create_analyzer("lrp", model, composite=extended)
    assert doubled.graph.nodes[-1].name == "times_two"
    np.testing.assert_allclose(
        doubled.analyze(x, neuron_selection=1),
        2.0 * base.analyze(x, neuron_selection=1),
        rtol=1e-6,
        atol=0,
    )


def _gate_first(inp: Any) -> Any:
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="main")(inp)
    gate = L.GlobalAveragePooling2D(keepdims=True)(h)
    gate = L.Conv2D(4, 1, activation="sigmoid", name="gate")(gate)
    h = L.Multiply(name="scale")([gate, h])  # the gate first in the call
    return L.Dense(3, name="head")(L.Flatten()(h))


def test_order_gates_puts_the_main_path_first() -> None:
    model = model_of(_gate_first, (6, 6, 3))
    traced = canonizers.split_linear_layers(trace_model(model))
    ordered = canonizers.order_gates(traced)
    producer = ordered.producer()
    scale = next(n for n in ordered.nodes if n.name == "scale")
    assert [producer[t].name for t in scale.inputs] == ["main/activation", "gate/activation"]
    assert_same_function(ordered, model, sample(model))


def test_append_negated_outputs_adds_the_negated_twins() -> None:
    """Real units first, then each unit's negation (-(Wx + b)), for a Dense head."""
    model = model_of(_fused_activations, (6, 6, 3))
    graph = build_graph(model)
    extended = canonizers.append_negated_outputs(graph)
    assert extended.virtual_outputs == "negated" and graph.virtual_outputs == ""
    x = sample(model)
    logits = logits_of(model, x)
    np.testing.assert_allclose(
        run_graph(extended, x),
        np.concatenate([logits, -logits], 1),
        rtol=1e-5,
        atol=1e-5 * np.abs(logits).max(),
    )
    hidden = build_graph(model, layer_name="sep")  # ends in an activation: nothing to negate
    assert canonizers.append_negated_outputs(hidden) is hidden
