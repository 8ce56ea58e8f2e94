"""Bad inputs get clear errors; numerical edge cases stay finite; property-based checks."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from conftest import mlp, randomize, small_cnn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tf_clrp

RNG = np.random.default_rng(4)


@pytest.fixture(scope="module")
def cnn() -> keras.Model:
    return small_cnn(softmax=True)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "x,match",
    [
        (np.zeros((8, 8, 3), "float32"), "rank 4"),
        (np.zeros((2, 8, 9, 3), "float32"), "axis 2 is 9, not 8"),
        (np.full((1, 8, 8, 3), np.nan, "float32"), "NaN/Inf"),
        (np.array([["a"]]), "dtype"),
    ],
)
def test_bad_inputs_are_named(cnn, x, match) -> None:
    with pytest.raises(tf_clrp.InputError, match=match):
        tf_clrp.create_analyzer("lrp.epsilon", cnn).analyze(x)


def test_uint8_images_are_converted_not_refused(cnn) -> None:
    images = RNG.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    analyzer = tf_clrp.create_analyzer("lrp.epsilon", cnn)
    np.testing.assert_array_equal(
        analyzer.analyze(images, neuron_selection=1),
        analyzer.analyze(images.astype("float32"), neuron_selection=1),
    )


def test_empty_batch_returns_an_empty_map(cnn) -> None:
    empty = np.zeros((0, 8, 8, 3), "float32")
    assert tf_clrp.create_analyzer("lrp.z_plus", cnn).analyze(empty).shape == (0, 8, 8, 3)
    parts = tf_clrp.create_analyzer("clrp", cnn).analyze(empty, return_parts=True)
    assert parts.target.shape == (0, 8, 8, 3)


@pytest.mark.parametrize(
    "selection,match",
    [
        (5, "out of range"),
        (-1, "out of range"),
        ([0, 1, 2], "3 entries for a batch of 2"),
        (np.zeros((2, 4), "float32"), "does not fit"),
        ("most", "not understood"),
        (np.array([0.5, 1.0]), "integer"),
    ],
)
def test_bad_selections_are_named(cnn, selection, match) -> None:
    x = np.zeros((2, 8, 8, 3), "float32")
    with pytest.raises(tf_clrp.SelectionError, match=match):
        tf_clrp.create_analyzer("lrp.epsilon", cnn).analyze(x, neuron_selection=selection)


def test_unknown_analyzer_and_option_list_the_valid_ones(cnn) -> None:
    with pytest.raises(ValueError, match="Did you mean 'lrp.epsilon'") as info:
        tf_clrp.create_analyzer("lrp.epsilom", cnn)
    assert "lrp.z_plus" in str(info.value)
    with pytest.raises(TypeError, match="epsilon") as info:
        tf_clrp.create_analyzer("lrp.epsilon", cnn, epsilonn=0.1)
    assert "epsilonn" in str(info.value)


def test_subclassed_and_non_models_are_refused() -> None:
    class Sub(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Sub()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(tf_clrp.ModelStructureError, match="subclassed"):
        tf_clrp.create_analyzer("lrp.z", model)
    with pytest.raises(tf_clrp.ModelStructureError, match="keras.Model"):
        tf_clrp.create_analyzer("lrp.z", lambda x: x)


def test_unbuilt_sequential_and_multi_input_models_are_refused() -> None:
    with pytest.raises(tf_clrp.ModelStructureError, match="no graph yet"):
        tf_clrp.create_analyzer("lrp.z", keras.Sequential([keras.layers.Dense(2)]))
    a, b = keras.Input((2,)), keras.Input((2,))
    two = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(tf_clrp.ModelStructureError, match="2 inputs"):
        tf_clrp.create_analyzer("lrp.z", two)


class Doubling(keras.layers.Layer):
    """A custom layer tf_clrp has no rule for (walked inside since issue 14: its ``square``
    op has no rule; a plain ``2.0 * x`` would now be explained through its ops)."""

    def call(self, x):
        return 2.0 * keras.ops.square(x)


def test_unsupported_layer_names_the_layer_and_the_escape_hatch() -> None:
    inp = keras.Input((4,))
    h = Doubling(name="my_doubling")(keras.layers.Dense(3, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    with pytest.raises(tf_clrp.UnsupportedLayerError, match="my_doubling.*Doubling.*layer_rules"):
        tf_clrp.create_analyzer("lrp.epsilon", model)
    x = RNG.uniform(0, 1, (2, 4)).astype("float32")
    analyzer = tf_clrp.create_analyzer(
        "lrp.epsilon", model, layer_rules={"Doubling": tf_clrp.rules.Pass()}
    )
    relevance = analyzer.analyze(x, neuron_selection=0)
    assert np.isfinite(relevance).all()


def _side_branch_model(side_layer) -> keras.Model:
    """image -> Dense -> Add <- side_layer(side): relevance of the image never reaches
    ``side_layer`` (it does not depend on the image)."""
    image = keras.Input((4,), name="image")
    side = keras.Input((3,), name="side")
    joined = keras.layers.Add()(
        [keras.layers.Dense(2, name="image_dense")(image), side_layer(side)]
    )
    return keras.Model([image, side], keras.layers.Dense(2, name="head")(joined))


def test_layers_off_the_relevance_path_need_no_rule_and_give_no_warning() -> None:
    batch = [
        RNG.uniform(0, 1, (2, 4)).astype("float32"),
        RNG.uniform(0, 1, (2, 3)).astype("float32"),
    ]
    sigmoid_side = _side_branch_model(keras.layers.Dense(2, activation="sigmoid", name="side_gate"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analyzer = tf_clrp.create_analyzer("lrp.epsilon", sigmoid_side, input_name="image")
    assert not [w for w in caught if "non-rectifier" in str(w.message)]
    assert np.isfinite(analyzer.analyze(batch, neuron_selection=0)).all()
    # the same sigmoid on the explained branch is warned about (the check is not just off)
    with pytest.warns(UserWarning, match="non-rectifier activation 'sigmoid'"):
        tf_clrp.create_analyzer("lrp.epsilon", sigmoid_side, input_name="side")
    # a layer without a rule off the path is no obstacle; on the path it is refused by name
    custom_side = _side_branch_model(lambda t: keras.layers.Dense(2)(Doubling(name="doubling")(t)))
    assert np.isfinite(
        tf_clrp.create_analyzer("lrp.epsilon", custom_side, input_name="image").analyze(
            batch, neuron_selection=1
        )
    ).all()
    with pytest.raises(tf_clrp.UnsupportedLayerError, match="doubling"):
        tf_clrp.create_analyzer("lrp.epsilon", custom_side, input_name="side")


def test_non_rectifier_activation_warns_once_per_model() -> None:
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(3, activation="tanh")(inp)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tf_clrp.create_analyzer("lrp.epsilon", model)
        tf_clrp.create_analyzer("lrp.z", model)
    messages = [str(w.message) for w in caught if "non-rectifier" in str(w.message)]
    assert len(messages) == 1 and "tanh" in messages[0]
    # Another model with the same activation is warned about again (once per model, not
    # once per process).
    inp = keras.Input((4,))
    other = keras.Model(
        inp, keras.layers.Dense(2)(keras.layers.Dense(3, activation="tanh", name="other")(inp))
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tf_clrp.create_analyzer("lrp.epsilon", other)
    messages = [str(w.message) for w in caught if "non-rectifier" in str(w.message)]
    assert len(messages) == 1 and "'other/activation'" in messages[0] and "tanh" in messages[0]


def test_binary_sigmoid_model_sign_of_the_seed() -> None:
    inp = keras.Input((5,))
    h = keras.layers.Dense(4, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h))
    randomize(model)
    x = RNG.uniform(-1, 1, (3, 5)).astype("float32")
    analyzer = tf_clrp.create_analyzer("lrp.epsilon", model)
    positive_class = analyzer.analyze(x, neuron_selection=0)  # seed: the logit z
    logit = keras.Model(inp, model.layers[-1].output)(x).numpy()  # includes sigmoid
    z = np.log(logit / (1 - logit))
    negative_class = analyzer.analyze(x, neuron_selection=-z)  # seed: -z
    np.testing.assert_allclose(negative_class, -positive_class, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- numerics
def test_dead_units_give_zeros_not_nan() -> None:
    model = mlp()
    for layer in model.layers[1:-1]:
        layer.bias.assign(np.full(layer.bias.shape, -100.0, "float32"))
    x = RNG.uniform(0, 1, (2, 6)).astype("float32")
    for name in ("lrp.z", "lrp.epsilon", "lrp.z_plus", "lrp.alpha_2_beta_1", "clrp", "sglrp"):
        # a flat input needs data bounds for CLRP's z^B (per-sample bounds collapse: refused)
        options = {"input_layer_rule": (0.0, 1.0)} if name in ("clrp", "sglrp") else {}
        relevance = tf_clrp.create_analyzer(name, model, **options).analyze(x, neuron_selection=0)
        assert np.isfinite(relevance).all() and np.abs(relevance).max() == 0.0, name


def test_zero_input_gives_zero_clrp_not_nan(cnn) -> None:
    parts = tf_clrp.create_analyzer("clrp", cnn).analyze(
        np.zeros((1, 8, 8, 3), "float32"), return_parts=True
    )
    for field in (parts.target, parts.dual, parts.contrastive):
        assert np.isfinite(field).all()


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_huge_and_tiny_logits(scale: float) -> None:
    model = small_cnn(bias=False)
    x = RNG.uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    reference = tf_clrp.create_analyzer("clrp", model).analyze(x, neuron_selection=1)
    last = model.layers[-1]
    last.kernel.assign(last.kernel.numpy() * scale)
    scaled = tf_clrp.create_analyzer("clrp", model).analyze(x, neuron_selection=1)
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled, reference, rtol=1e-3, atol=1e-6)  # scale-invariant
    relevance = tf_clrp.create_analyzer("lrp.epsilon", model).analyze(x, neuron_selection=1)
    assert np.isfinite(relevance).all()


def test_mixed_precision_model_explained_in_float32() -> None:
    def build() -> keras.Model:
        inp = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(4, 3, padding="same")(inp)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.MaxPooling2D()(h)
        h = keras.layers.Flatten()(h)
        return keras.Model(inp, keras.layers.Dense(5, activation="softmax", dtype="float32")(h))

    full = build()
    randomize(full)
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        mixed = build()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(full.get_weights())
    assert mixed.layers[1].compute_dtype == "float16"
    x = RNG.uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    for name in ("lrp.z_plus", "clrp", "gradient"):
        expected = tf_clrp.create_analyzer(name, full).analyze(x, neuron_selection=1)
        got = tf_clrp.create_analyzer(name, mixed).analyze(x, neuron_selection=1)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-8)


# ----------------------------------------------------------------------------- properties
@st.composite
def small_networks(draw: st.DrawFn) -> tuple[keras.Model, bool]:
    size = draw(st.sampled_from([6, 8]))
    inp = keras.Input((size, size, 2))
    h = inp
    bias = draw(st.booleans())
    batch_norm = draw(st.booleans())
    for _ in range(draw(st.integers(1, 2))):
        conv = keras.layers.Conv2D(
            draw(st.integers(2, 4)),
            draw(st.sampled_from([1, 3])),
            strides=draw(st.sampled_from([1, 2])),
            padding="same",
            use_bias=bias,
        )
        h = conv(h)
        if batch_norm:
            h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        if draw(st.booleans()):  # residual
            h = keras.layers.Add()(
                [h, keras.layers.Conv2D(h.shape[-1], 1, use_bias=bias, activation="relu")(h)]
            )
        pool = draw(st.sampled_from(["none", "max", "avg"]))
        if pool == "max" and h.shape[1] >= 2:
            h = keras.layers.MaxPooling2D(2, padding="same")(h)
        elif pool == "avg" and h.shape[1] >= 2:
            h = keras.layers.AveragePooling2D(2, padding="same")(h)
    h = keras.layers.Flatten()(h)
    if draw(st.booleans()):
        h = keras.layers.Dense(6, activation="relu", use_bias=bias)(h)
    model = keras.Model(inp, keras.layers.Dense(3, use_bias=bias)(h))
    randomize(model, seed=draw(st.integers(0, 1000)))
    return model, bias or batch_norm


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(net=small_networks(), data=st.data())
def test_random_networks(net: tuple[keras.Model, bool], data: st.DataObject) -> None:
    model, has_bias = net
    size = model.input_shape[1]
    x = RNG.uniform(0, 1, (2, size, size, 2)).astype("float32")
    target = data.draw(st.integers(0, 2))
    logits = model(x).numpy()[:, target]
    for name in ("lrp.z_plus", "lrp.epsilon", "gradient"):
        relevance = tf_clrp.create_analyzer(name, model).analyze(x, neuron_selection=target)
        assert relevance.shape == x.shape and np.isfinite(relevance).all()
        if name == "lrp.z_plus" and not has_bias:
            sums = relevance.reshape(2, -1).sum(axis=1)
            positive = logits > 0
            np.testing.assert_allclose(sums[positive], logits[positive], rtol=1e-3, atol=1e-5)
    clrp = tf_clrp.create_analyzer("clrp", model).analyze(x, neuron_selection=target)
    assert clrp.min() >= 0 and np.isfinite(clrp).all()
    eager = tf_clrp.create_analyzer("clrp", model, use_tf_function=False).analyze(
        x, neuron_selection=target
    )
    np.testing.assert_allclose(eager, clrp, rtol=1e-4, atol=1e-6)
