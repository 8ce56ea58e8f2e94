"""Gradient methods on any differentiable Keras model, and several inputs.

References are direct ``tf.GradientTape`` computations on the user's model (or its
pre-softmax part), never the library's own engine.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_clrp
from tf_clrp import create_analyzer
from tf_clrp.errors import InputError, ModelStructureError, UnsupportedLayerError

GRADIENT_FAMILY = ("gradient", "input_t_gradient", "integrated_gradients", "smoothgrad")


class ScaledResidual(keras.layers.Layer):
    """A custom layer (no rule of its own): sublayers plus keras.ops."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(units, activation="tanh")
        self.scale = self.add_weight(shape=(units,), initializer="ones", name="scale")

    def call(self, x):
        return x + keras.ops.multiply(keras.ops.square(self.inner(x)), self.scale)


class TwoHeads(keras.Model):
    """A subclassed model with two outputs."""

    def __init__(self):
        super().__init__()
        self.body = keras.layers.Dense(8, activation="relu")
        self.head_a = keras.layers.Dense(3)
        self.head_b = keras.layers.Dense(4)

    def call(self, x):
        h = self.body(x)
        return self.head_a(h), self.head_b(h)


def _attention_model() -> tuple[keras.Model, keras.Model]:
    """A small stock-Keras ViT (Conv2D patchify + MultiHeadAttention), and its logits."""
    keras.utils.set_random_seed(1)
    image = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 4, strides=4)(image)
    x = keras.layers.Reshape((4, 16))(x)
    a = keras.layers.MultiHeadAttention(2, 8)(x, x)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, a]))
    x = keras.layers.GlobalAveragePooling1D()(x)
    logits = keras.layers.Dense(5)(x)
    probabilities = keras.layers.Softmax()(logits)
    return keras.Model(image, probabilities), keras.Model(image, logits)


def _custom_layer_model() -> keras.Model:
    keras.utils.set_random_seed(2)
    x_in = keras.Input((6,))
    x = ScaledResidual(6)(x_in)
    return keras.Model(x_in, keras.layers.Dense(3)(x))


def _tape_gradient(fn, x: np.ndarray, index: int) -> np.ndarray:
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = fn(xt)
        score = tf.reshape(y, (len(x), -1))[:, index]
    return tape.gradient(score, xt).numpy().astype(np.float64)


def _reference(name: str, fn, x: np.ndarray, index: int) -> np.ndarray:
    """The analyzer's map from tape gradients, written out per method."""
    if name == "gradient":
        return _tape_gradient(fn, x, index)
    if name == "input_t_gradient":
        return x * _tape_gradient(fn, x, index)
    if name == "integrated_gradients":  # left Riemann sum, 64 steps, baseline 0
        grads = [_tape_gradient(fn, (k / 64) * x, index) for k in range(64)]
        return x * np.mean(grads, axis=0)
    noise = np.random.default_rng(0).standard_normal((64,) + x.shape).astype(np.float32)
    return np.mean([_tape_gradient(fn, x + n, index) for n in noise], axis=0)


@pytest.mark.parametrize("name", GRADIENT_FAMILY)
def test_gradient_family_on_attention_model_equals_autodiff(name):
    model, logits = _attention_model()
    x = np.random.default_rng(3).random((2, 8, 8, 3), dtype=np.float32)
    got = create_analyzer(name, model).analyze(x, neuron_selection=2)
    want = _reference(name, logits, x, 2)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6 * np.abs(want).max())
    assert np.abs(got).max() > 0


def test_gradient_on_custom_layer_equals_autodiff():
    model = _custom_layer_model()
    x = np.random.default_rng(4).standard_normal((3, 6)).astype(np.float32)
    got = create_analyzer("gradient", model).analyze(x, neuron_selection=[0, 1, 2])
    want = np.stack([_tape_gradient(model, x, k)[i] for i, k in enumerate([0, 1, 2])])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("output_index", [0, 1])
def test_gradient_on_subclassed_model_with_two_outputs(output_index):
    keras.utils.set_random_seed(5)
    model = TwoHeads()
    x = np.random.default_rng(5).standard_normal((2, 5)).astype(np.float32)
    model(x)
    got = create_analyzer("input_t_gradient", model, output_index=output_index).analyze(
        x, neuron_selection=1
    )
    want = x * _tape_gradient(lambda t: model(t)[output_index], x, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ModelStructureError, match="output_index"):
        create_analyzer("gradient", model)


@pytest.mark.parametrize("name", ["lrp.z", "guided_backprop", "clrp"])
def test_rule_based_analyzers_refuse_subclassed_models(name):
    model = TwoHeads()
    model(np.zeros((1, 5), np.float32))
    with pytest.raises(ModelStructureError, match="subclassed.*gradient family"):
        create_analyzer(name, model, output_index=0)


def test_unbuilt_subclassed_model_is_refused_with_advice():
    with pytest.raises(ModelStructureError, match="call it once on a batch"):
        create_analyzer("gradient", TwoHeads(), output_index=0)


@pytest.mark.parametrize("name", ["lrp.epsilon", "lrp.z_plus", "clrp"])
def test_lrp_refuses_the_attention_product_naming_op_and_path(name):
    """Composites without AttnLRP's rules refuse the attention product (CLRP with the
    paper's rules given explicitly: its default on transformers is AttnLRP's)."""
    model, _ = _attention_model()
    options = {"composite": tf_clrp.composites.zbox_zplus()} if name == "clrp" else {}
    with pytest.raises(
        UnsupportedLayerError,
        match=r"'multi_head_attention(_\d+)?/dot_product_attention(_\d+)?' "
        r"\(DotProductAttention, group 'bilinear'\).*layer_rules",
    ):
        create_analyzer(name, model, **options)


def test_lrp_refuses_an_op_inside_a_custom_layer():
    with pytest.raises(
        UnsupportedLayerError, match=r"'scaled_residual(_\d+)?/square(_\d+)?' of type Square"
    ):
        create_analyzer("lrp.epsilon", _custom_layer_model())


@pytest.mark.parametrize("name", ["guided_backprop", "deconvnet"])
def test_guided_methods_see_inside_attention(name):
    """No ReLU anywhere: Guided Backprop and DeConvNet are the gradient, seeded with the
    logit's value (iNNvestigate's convention)."""
    model, logits = _attention_model()
    x = np.random.default_rng(15).random((2, 8, 8, 3), dtype=np.float32)
    got = create_analyzer(name, model).analyze(x, neuron_selection=3)
    want = logits(x).numpy()[:, 3, None, None, None] * _tape_gradient(logits, x, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


class DataDependent(keras.layers.Layer):
    """A layer whose call needs concrete values (cannot be traced symbolically)."""

    def call(self, x):
        if float(keras.ops.convert_to_numpy(keras.ops.sum(x))) > 0:
            return x * 2.0
        return x * 3.0

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)


def test_untraceable_layer_gradient_by_autodiff_lrp_refused():
    x_in = keras.Input((4,))
    model = keras.Model(x_in, keras.layers.Dense(2)(DataDependent(name="data_dependent")(x_in)))
    x = np.abs(np.random.default_rng(16).standard_normal((2, 4))).astype(np.float32)
    got = create_analyzer("gradient", model, use_tf_function=False).analyze(x, neuron_selection=1)
    np.testing.assert_allclose(got, _tape_gradient(model, x, 1), rtol=1e-6)
    with pytest.raises(
        UnsupportedLayerError,
        match="'data_dependent' of type DataDependent"
        ".*not walked inside: its call cannot run on symbolic tensors",
    ):
        create_analyzer("lrp.z", model)


def test_explaining_leaves_the_model_untouched():
    model, _ = _attention_model()
    layers = model._flatten_layers(include_self=True)
    before = [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers]
    config = model.get_config()
    weights = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(6).random((2, 8, 8, 3), dtype=np.float32)
    for name in GRADIENT_FAMILY:
        create_analyzer(name, model).analyze(x)
    assert [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers] == before
    assert model.get_config() == config
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- several inputs
def _two_input_model() -> keras.Model:
    """image branch + side branch, added: out = W_i·image + W_s·side (no biases)."""
    keras.utils.set_random_seed(7)
    image = keras.Input((4, 4, 1), name="image")
    side = keras.Input((3,), name="side")
    a = keras.layers.Dense(2, use_bias=False)(keras.layers.Flatten()(image))
    b = keras.layers.Dense(2, use_bias=False)(side)
    out = keras.layers.Dense(2, use_bias=False, name="head")(
        keras.layers.Activation("tanh")(keras.layers.Add()([a, b]))
    )
    return keras.Model({"image": image, "side": side}, out)


def _two_inputs(n: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(8)
    return {
        "image": rng.standard_normal((n, 4, 4, 1)).astype(np.float32),
        "side": rng.standard_normal((n, 3)).astype(np.float32),
    }


@pytest.mark.parametrize("name", GRADIENT_FAMILY)
def test_one_input_of_a_multi_input_model_equals_autodiff(name):
    model = _two_input_model()
    batch = _two_inputs()
    got = create_analyzer(name, model, input_name="image").analyze(batch, neuron_selection=1)
    want = _reference(
        name, lambda t: model({"image": t, "side": tf.constant(batch["side"])}), batch["image"], 1
    )
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6 * np.abs(want).max())
    got_side = create_analyzer(name, model, input_name="side").analyze(
        [batch["image"], batch["side"]],
        neuron_selection=1,
        batch_size=None if name == "smoothgrad" else 2,
    )  # its noise is drawn per chunk
    want_side = _reference(
        name, lambda t: model({"image": tf.constant(batch["image"]), "side": t}), batch["side"], 1
    )
    np.testing.assert_allclose(got_side, want_side, rtol=2e-4, atol=2e-6 * np.abs(want_side).max())


def test_lrp_on_one_input_conserves_that_branch_share():
    """LRP-z through Add (proportional) and bias-free Dense layers: the image map sums to the
    image branch's share of the explained pre-activation, computed here in numpy."""
    keras.utils.set_random_seed(9)
    image = keras.Input((4, 4, 1), name="image")
    side = keras.Input((3,), name="side")
    a = keras.layers.Dense(1, use_bias=False, name="image_dense")(keras.layers.Flatten()(image))
    b = keras.layers.Dense(1, use_bias=False)(side)
    model = keras.Model([image, side], keras.layers.Add()([a, b]))
    batch = _two_inputs()
    got = create_analyzer("lrp.z", model, input_name="image").analyze(
        [batch["image"], batch["side"]], neuron_selection=0
    )
    w_image = model.get_layer("image_dense").get_weights()[0].astype(np.float64)
    share = batch["image"].reshape(3, 16).astype(np.float64) @ w_image
    np.testing.assert_allclose(
        got.reshape(3, 16), batch["image"].reshape(3, 16) * w_image[:, 0], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(got.reshape(3, -1).sum(1), share[:, 0], rtol=1e-4)


def test_multi_input_errors_name_the_choices():
    model = _two_input_model()
    with pytest.raises(ModelStructureError, match="2 inputs.*'image'.*'side'.*input_name"):
        create_analyzer("gradient", model)
    with pytest.raises(ModelStructureError, match="'pixels' is not an input.*'image'"):
        create_analyzer("gradient", model, input_name="pixels")
    analyzer = create_analyzer("gradient", model, input_name="image")
    batch = _two_inputs()
    with pytest.raises(InputError, match=r"missing input\(s\) \['side'\]"):
        analyzer.analyze({"image": batch["image"]})
    with pytest.raises(InputError, match="unknown key"):
        analyzer.analyze({**batch, "extra": batch["side"]})
    with pytest.raises(InputError, match="'side' has shape"):
        analyzer.analyze({"image": batch["image"], "side": batch["side"][:, :2]})
    with pytest.raises(InputError, match="different batch sizes"):
        analyzer.analyze({"image": batch["image"], "side": batch["side"][:2]})
    with pytest.raises(InputError, match="pass a dict"):
        analyzer.analyze(batch["image"])


def _gated_two_input_model() -> keras.Model:
    """image → Conv2D+ReLU, gated per channel by sigmoid(Dense(side)), → Dense+ReLU → head."""
    keras.utils.set_random_seed(31)
    image = keras.Input((5, 5, 2), name="image")
    side = keras.Input((4,), name="side")
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(image)
    gate = keras.layers.Reshape((1, 1, 3))(
        keras.layers.Dense(3, activation="sigmoid", name="gate_dense")(side)
    )
    x = keras.layers.Flatten()(keras.layers.Multiply()([h, gate]))
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    return keras.Model({"image": image, "side": side}, keras.layers.Dense(4, name="head")(x))


@pytest.mark.filterwarnings("ignore:.*non-rectifier activation")
@pytest.mark.parametrize("name,contrast", [("clrp", "others"), ("clrp", 2), ("sglrp", None)])
def test_contrastive_analyzers_explain_one_input_of_several(name, contrast):
    """Float64 numpy reference (tests/clrp_reference.py): with the side input fixed, the
    positive channel gate folds into the next Dense kernel (z⁺ of a·g·w⁺ = a·(g·w)⁺, and the
    gate's Pass rule hands relevance on unchanged), one single-input network per sample."""
    import clrp_reference as ref

    model = _gated_two_input_model()
    rng = np.random.default_rng(32)
    batch = {
        "image": rng.standard_normal((3, 5, 5, 2)).astype(np.float32),
        "side": rng.standard_normal((3, 4)).astype(np.float32),
    }
    targets = [1, 0, 3]
    options = {} if contrast is None else {"contrast": contrast}
    got = create_analyzer(name, model, input_name="image", **options).analyze(
        batch, neuron_selection=targets, return_parts=True
    )
    gates = model.get_layer("gate_dense")(batch["side"]).numpy().astype(np.float64)
    conv, hidden, head = (model.get_layer(n) for n in ("conv", "hidden", "head"))

    def weights(layer):
        return (w.astype(np.float64) for w in layer.get_weights())

    for i in range(3):
        kernel, bias = weights(hidden)
        folded = kernel * np.tile(gates[i], 25)[:, None]
        layers = [
            ref.Layer("conv", *weights(conv)),
            ref.Layer("relu"),
            ref.Layer("flatten"),
            ref.Layer("dense", folded, bias),
            ref.Layer("relu"),
            ref.Layer("dense", *weights(head)),
        ]
        x = batch["image"][i : i + 1].astype(np.float64)
        low = np.broadcast_to(x.min(axis=(1, 2), keepdims=True), x.shape)
        high = np.broadcast_to(x.max(axis=(1, 2), keepdims=True), x.shape)
        if name == "sglrp":
            want = ref.sglrp(layers, x, [targets[i]], low, high)
        else:
            want = ref.clrp(
                layers, x, [targets[i]], contrast if contrast == "others" else [contrast], low, high
            )
        for part in ("target", "dual"):
            expected = want[part][0]
            np.testing.assert_allclose(
                getattr(got, part)[i],
                expected,
                rtol=1e-4,
                atol=1e-5 * np.abs(expected).max(),
                err_msg=part,
            )
    assert np.abs(got.contrastive).max() > 0


@pytest.mark.filterwarnings("ignore:.*non-rectifier activation")
def test_contrastive_per_sample_contrast_with_several_inputs_is_chunked():
    model = _gated_two_input_model()
    rng = np.random.default_rng(33)
    batch = {
        "image": rng.standard_normal((3, 5, 5, 2)).astype(np.float32),
        "side": rng.standard_normal((3, 4)).astype(np.float32),
    }
    analyzer = create_analyzer("clrp", model, input_name="image")
    whole = analyzer.analyze(batch, neuron_selection=[0, 1, 2], contrast=[3, 3, 0])
    chunked = analyzer.analyze(batch, neuron_selection=[0, 1, 2], contrast=[3, 3, 0], batch_size=2)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-9)
    alone = analyzer.analyze(
        {k: v[2:] for k, v in batch.items()}, neuron_selection=[2], contrast=[0]
    )
    np.testing.assert_allclose(whole[2:], alone, rtol=1e-6, atol=1e-9)


def test_a_rule_for_a_whole_walked_layer_applies_to_it_as_one_node():
    """layer_rules keyed by the custom layer's class: ε-LRP of the head, then Pass through
    the whole layer (numpy reference)."""
    model = _custom_layer_model()
    x = np.random.default_rng(17).standard_normal((2, 6)).astype(np.float32)
    got = create_analyzer(
        "lrp.epsilon", model, epsilon=0.1, layer_rules={"ScaledResidual": tf_clrp.rules.Pass()}
    ).analyze(x, neuron_selection=1)
    a = model.layers[1](x).numpy().astype(np.float64)
    kernel, bias = (w.astype(np.float64) for w in model.layers[2].get_weights())
    z = a @ kernel[:, 1] + bias[1]
    want = a * kernel[:, 1] * (z / (z + 0.1 * np.sign(z)))[:, None]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


class ConvBlock(keras.layers.Layer):
    """A subclassed CNN block: Conv2D → ReLU → Conv2D, plus a residual add."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Conv2D(3, 3, padding="same", activation="relu")
        self.second = keras.layers.Conv2D(3, 3, padding="same")

    def call(self, x):
        return keras.layers.ReLU()(self.second(self.first(x)) + x)


@pytest.mark.parametrize("name", ["lrp.epsilon", "lrp.z_plus", "guided_backprop", "clrp"])
def test_subclassed_cnn_block_is_walked_like_its_functional_twin(name):
    """The same weights as a plain functional model: walking inside gives the same maps."""
    keras.utils.set_random_seed(18)
    x_in = keras.Input((6, 6, 3))
    block = ConvBlock()
    model = keras.Model(x_in, keras.layers.Dense(4)(keras.layers.Flatten()(block(x_in))))
    first = keras.layers.Conv2D(3, 3, padding="same", activation="relu")
    second = keras.layers.Conv2D(3, 3, padding="same")
    h = keras.layers.ReLU()(keras.layers.Add()([second(first(x_in)), x_in]))
    head = keras.layers.Dense(4)
    twin = keras.Model(x_in, head(keras.layers.Flatten()(h)))
    first.set_weights(block.first.get_weights())
    second.set_weights(block.second.get_weights())
    head.set_weights(model.layers[-1].get_weights())
    x = np.random.default_rng(19).standard_normal((2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x), twin(x), rtol=1e-6)
    got = create_analyzer(name, model).analyze(x, neuron_selection=2)
    want = create_analyzer(name, twin).analyze(x, neuron_selection=2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert np.abs(got).max() > 0


# ----------------------------------------------------------------------------- EinsumDense
def _einsum_model() -> keras.Model:
    keras.utils.set_random_seed(20)
    x_in = keras.Input((4, 5))
    layer = keras.layers.EinsumDense(
        "abc,cde->abde",
        output_shape=(4, 2, 3),
        bias_axes="de",
        bias_initializer="random_normal",
        name="einsum_dense",
    )
    return keras.Model(x_in, keras.layers.Flatten()(layer(x_in)))


@pytest.mark.parametrize("name", ["lrp.epsilon", "lrp.z_plus"])
def test_einsum_dense_is_a_linear_layer_for_every_rule(name):
    """One EinsumDense with a 2-axis output and a (d, e) bias; numpy float64 reference of
    the ε rule (bias in the denominator) and the z⁺ rule (positive weights, no bias)."""
    model = _einsum_model()
    x = np.random.default_rng(21).random((2, 4, 5)).astype(np.float64) + 0.1
    kernel, bias = (w.astype(np.float64) for w in model.get_layer("einsum_dense").get_weights())
    unit = 17
    t, d, e = np.unravel_index(unit, (4, 2, 3))
    got = create_analyzer(
        name, model, **({"epsilon": 0.1} if name == "lrp.epsilon" else {})
    ).analyze(x.astype(np.float32), neuron_selection=unit)
    z = x[:, t, :] @ kernel[:, d, e] + bias[d, e]
    want = np.zeros_like(x)
    if name == "lrp.epsilon":
        want[:, t, :] = x[:, t, :] * kernel[:, d, e] * (z / (z + 0.1 * np.sign(z)))[:, None]
    else:
        positive = x[:, t, :] * np.maximum(kernel[:, d, e], 0)
        want[:, t, :] = positive / positive.sum(1, keepdims=True) * z[:, None]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- batch size
class ClassToken(keras.layers.Layer):
    """Prepends a learned class token tiled to the batch size (read from ``ops.shape``, so
    the call cannot run on a symbolic batch) and adds learned position embeddings."""

    def build(self, shape):
        self.token = self.add_weight(
            shape=(1, 1, shape[-1]), initializer="random_normal", name="token"
        )
        self.positions = self.add_weight(
            shape=(1, shape[1] + 1, shape[-1]), initializer="random_normal", name="positions"
        )

    def call(self, x):
        token = keras.ops.tile(self.token, (keras.ops.shape(x)[0], 1, 1))
        return keras.ops.concatenate([token, x], axis=1) + self.positions


def _class_token_model() -> keras.Model:
    keras.utils.set_random_seed(34)
    x_in = keras.Input((4, 3))
    x = keras.layers.Flatten()(ClassToken(name="class_token")(x_in))
    return keras.Model(
        x_in, keras.layers.Dense(2, name="head", bias_initializer="random_normal")(x)
    )


@pytest.mark.parametrize("n", [1, 4])
def test_class_token_layer_epsilon_lrp_at_any_batch_size(n):
    """ε-LRP, numpy float64 reference: the head's ε rule, the position embeddings absorbed
    like a bias by the sum (Norm: shares of x_cat in x_cat + positions), the class token's
    row routed away by the concatenation. Batch sizes other than the traced 2 and 3."""
    model = _class_token_model()
    x = np.random.default_rng(35).standard_normal((n, 4, 3)).astype(np.float32)
    analyzer = create_analyzer("lrp.epsilon", model, epsilon=0.1)
    np.testing.assert_allclose(
        analyzer.mirror(tf.constant(x)).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6
    )
    got = analyzer.analyze(x, neuron_selection=1)
    layer = model.get_layer("class_token")
    token, positions = (w.numpy().astype(np.float64) for w in (layer.token, layer.positions))
    kernel, bias = (w.astype(np.float64) for w in model.get_layer("head").get_weights())
    x_cat = np.concatenate([np.broadcast_to(token, (n, 1, 3)), x.astype(np.float64)], axis=1)
    a = (x_cat + positions).reshape(n, -1)
    z = a @ kernel[:, 1] + bias[1]
    relevance_a = a * kernel[:, 1] * (z / (z + 0.1 * np.sign(z)))[:, None]
    want = (x_cat.reshape(n, -1) / a * relevance_a).reshape(n, 5, 3)[:, 1:]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    grad = create_analyzer("gradient", model).analyze(x, neuron_selection=1)
    np.testing.assert_allclose(grad, _tape_gradient(model, x, 1), rtol=1e-5, atol=1e-7)


def test_changed_position_weights_are_read_live():
    """``+ self.positions`` reads the variable in the graph (no constant): a later change
    is followed, no refusal."""
    model = _class_token_model()
    x = np.random.default_rng(36).standard_normal((1, 4, 3)).astype(np.float32)
    analyzer = create_analyzer("gradient", model)
    positions = model.get_layer("class_token").positions
    positions.assign(positions.numpy() + 0.5)
    np.testing.assert_allclose(
        analyzer.mirror(tf.constant(x)).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6
    )


class SingleSampleSpecial(keras.layers.Layer):
    """Scales by 2 except for a batch of one sample (Python control flow on the batch size,
    which a symbolic batch does not have)."""

    def call(self, x):
        return x * (3.0 if keras.ops.shape(x)[0] == 1 else 2.0)

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)


def test_a_call_that_treats_one_sample_differently_is_not_walked():
    x_in = keras.Input((4,))
    model = keras.Model(x_in, keras.layers.Dense(2)(SingleSampleSpecial(name="special")(x_in)))
    with pytest.raises(
        UnsupportedLayerError,
        match="'special' of type SingleSampleSpecial.*differently at batch size 1",
    ):
        create_analyzer("lrp.z", model)
    x = np.random.default_rng(37).standard_normal((1, 4)).astype(np.float32)
    got = create_analyzer("gradient", model, use_tf_function=False).analyze(x, neuron_selection=0)
    np.testing.assert_allclose(got, _tape_gradient(model, x, 0), rtol=1e-6)
