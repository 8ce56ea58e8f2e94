"""Invariants of the engine: conservation, gradients, shapes, eager == graph, no mutation."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import logits_of, mlp, small_cnn

import tf_clrp

RNG = np.random.default_rng(2)
LRP_NAMES = [
    n
    for n in tf_clrp.list_analyzers()
    if n.startswith(("lrp.", "deep_taylor")) and n != "deep_taylor.bounded"
]
# attention_rollout needs attention layers (tests/test_rollout.py covers it, model untouched too)
ALL_NAMES = [
    n
    for n in tf_clrp.list_analyzers()
    if n not in ("lrp", "deep_taylor.bounded", "attention_rollout")
]


def _kwargs(name: str) -> dict:
    return (
        {"low": -1.0, "high": 1.0}
        if name in ("deep_taylor.bounded", "lrp.epsilon_gamma_box")
        else {}
    )


# Not listed: α2β1 (a unit without negative contributions passes on α·R), w²/flat (they give
# relevance to the zeros of "same" padding, which the crop then drops) and iNNvestigate's
# deep_taylor (average pooling by the plain gradient spreads R/k, also onto zero inputs).
@pytest.mark.parametrize(
    "name",
    ["lrp.z", "lrp.epsilon", "lrp.z_plus", "lrp.alpha_1_beta_0", "lrp.gamma", "lrp.epsilon_plus"],
)
def test_bias_free_chains_conserve_the_logit(name: str) -> None:
    model = small_cnn(bias=False)
    x = RNG.uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    relevance = tf_clrp.create_analyzer(name, model).analyze(x, neuron_selection=1)
    logit = model(x).numpy()[:, 1]
    np.testing.assert_allclose(relevance.reshape(3, -1).sum(axis=1), logit, rtol=2e-3, atol=1e-6)


def test_z_plus_maps_of_positive_logits_are_nonnegative() -> None:
    model = small_cnn(bias=False)
    x = RNG.uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    logits = model(x).numpy()
    target = logits.argmax(axis=1)
    relevance = tf_clrp.create_analyzer("lrp.z_plus", model).analyze(x)
    for i in range(4):
        if logits[i, target[i]] > 0:
            assert relevance[i].min() >= -1e-7


def test_gradient_equals_tape_gradient_of_the_users_model() -> None:
    model = small_cnn(softmax=True)
    x = RNG.normal(0, 1, (3, 8, 8, 3)).astype("float32")
    logits_model = keras.Model(model.inputs, model.layers[-1].input)
    kernel, bias = model.layers[-1].kernel, model.layers[-1].bias
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = logits_model(xt) @ kernel + bias
        chosen = z[:, 3]
    expected = tape.gradient(chosen, xt).numpy()
    ours = tf_clrp.create_analyzer("gradient", model).analyze(x, neuron_selection=3)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
    ixg = tf_clrp.create_analyzer("input_t_gradient", model).analyze(x, neuron_selection=3)
    np.testing.assert_allclose(ixg, expected * x, rtol=1e-4, atol=1e-6)


def _naive_modified_backprop(
    model: keras.Model, x: np.ndarray, target: int, mode: str
) -> np.ndarray:
    """Guided Backprop / DeConvNet through a Dense-ReLU chain, seeded with the logit's value
    (iNNvestigate's convention)."""
    dense = model.layers[1:]
    pre = []
    a = x
    for layer in dense:
        z = a @ layer.kernel.numpy() + layer.bias.numpy()
        pre.append(z)
        a = np.maximum(z, 0) if layer is not dense[-1] else z
    g = np.zeros(pre[-1].shape)
    g[target] = pre[-1][target]
    for i in range(len(dense) - 1, -1, -1):
        if i < len(dense) - 1:
            if mode == "guided":
                g = g * (pre[i] > 0) * (g > 0)
            else:
                g = np.maximum(g, 0)
        g = g @ dense[i].kernel.numpy().T
    return g


@pytest.mark.parametrize("name,mode", [("guided_backprop", "guided"), ("deconvnet", "deconv")])
def test_modified_backprop_matches_naive(name: str, mode: str) -> None:
    model = mlp()
    x = RNG.normal(0, 1, (3, 6)).astype("float32")
    ours = tf_clrp.create_analyzer(name, model).analyze(x, neuron_selection=1)
    ref = np.stack([_naive_modified_backprop(model, x[i], 1, mode) for i in range(3)])
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_completeness() -> None:
    model = small_cnn()
    x = RNG.uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    attribution = tf_clrp.create_analyzer("integrated_gradients", model, steps=256).analyze(
        x, neuron_selection=0
    )
    gap = model(x).numpy()[:, 0] - model(np.zeros_like(x)).numpy()[:, 0]
    np.testing.assert_allclose(attribution.reshape(2, -1).sum(axis=1), gap, rtol=2e-2, atol=2e-3)


def test_smoothgrad_without_noise_is_the_gradient() -> None:
    model = small_cnn()
    x = RNG.uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    smooth = tf_clrp.create_analyzer("smoothgrad", model, augment_by_n=3, noise_scale=0.0).analyze(
        x, neuron_selection=2
    )
    grad = tf_clrp.create_analyzer("gradient", model).analyze(x, neuron_selection=2)
    np.testing.assert_allclose(smooth, grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_analyzer_finite_shape_and_deterministic(name: str) -> None:
    model = small_cnn(batch_norm=True, softmax=True)
    x = RNG.normal(0, 1, (3, 8, 8, 3)).astype("float32")
    analyzer = tf_clrp.create_analyzer(name, model, **_kwargs(name))
    first = analyzer.analyze(x)
    assert first.shape == x.shape and first.dtype == np.float32
    assert np.all(np.isfinite(first))
    if name != "smoothgrad":
        np.testing.assert_array_equal(first, analyzer.analyze(x))


@pytest.mark.parametrize(
    "name", ["lrp.epsilon", "lrp.sequential_preset_b_flat", "clrp", "guided_backprop", "sglrp"]
)
def test_eager_equals_tf_function(name: str) -> None:
    model = small_cnn(batch_norm=True)
    x = RNG.normal(0, 1, (2, 8, 8, 3)).astype("float32")
    compiled = tf_clrp.create_analyzer(name, model).analyze(x, neuron_selection=1)
    eager = tf_clrp.create_analyzer(name, model, use_tf_function=False).analyze(
        x, neuron_selection=1
    )
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-6)


def _snapshot(model: keras.Model, x: np.ndarray) -> tuple:
    return (
        [w.numpy().copy() for w in model.weights],
        [layer.name for layer in model.layers],
        [layer.trainable for layer in model.layers],
        model(x).numpy(),
        [id(layer) for layer in model.layers],
        len(model.operations),
    )


@pytest.mark.parametrize("name", ALL_NAMES)
def test_users_model_is_unchanged(name: str) -> None:
    model = small_cnn(batch_norm=True, softmax=True)
    model.layers[2].trainable = False
    x = RNG.normal(0, 1, (2, 8, 8, 3)).astype("float32")
    before = _snapshot(model, x)
    tf_clrp.create_analyzer(name, model, **_kwargs(name)).analyze(x)
    after = _snapshot(model, x)
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)
    assert before[1:3] == after[1:3] and before[4:] == after[4:]
    np.testing.assert_array_equal(before[3], after[3])


def test_no_retracing_across_calls_and_batch_sizes() -> None:
    model = small_cnn()
    analyzer = tf_clrp.create_analyzer("lrp.z_plus", model)
    for n in (1, 3, 5, 3):
        analyzer.analyze(RNG.normal(0, 1, (n, 8, 8, 3)).astype("float32"), neuron_selection=0)
    assert analyzer._by_index.experimental_get_tracing_count() == 1


def test_batch_size_chunks_give_the_same_maps() -> None:
    model = small_cnn()
    x = RNG.normal(0, 1, (7, 8, 8, 3)).astype("float32")
    analyzer = tf_clrp.create_analyzer("clrp", model)
    whole = analyzer.analyze(x, neuron_selection=[0, 1, 2, 3, 4, 0, 1])
    chunked = analyzer.analyze(x, neuron_selection=[0, 1, 2, 3, 4, 0, 1], batch_size=3)
    np.testing.assert_allclose(whole, chunked, rtol=1e-5, atol=1e-7)


def test_selection_modes() -> None:
    model = small_cnn(softmax=True)
    x = RNG.normal(0, 1, (3, 8, 8, 3)).astype("float32")
    logits = logits_of(model, x)
    analyzer = tf_clrp.create_analyzer("lrp.epsilon", model)
    by_max = analyzer.analyze(x)
    by_index = analyzer.analyze(x, neuron_selection=logits.argmax(axis=1))
    np.testing.assert_allclose(by_max, by_index, rtol=1e-6)
    seeds = np.zeros_like(logits)
    seeds[np.arange(3), logits.argmax(axis=1)] = logits.max(axis=1)
    np.testing.assert_allclose(
        analyzer.analyze(x, neuron_selection=seeds), by_max, rtol=1e-5, atol=1e-7
    )
    every = analyzer.analyze(x, neuron_selection="all")
    summed = sum(analyzer.analyze(x, neuron_selection=k) for k in range(5))
    np.testing.assert_allclose(every, summed, rtol=1e-4, atol=1e-6)
    index_mode = tf_clrp.create_analyzer("lrp.epsilon", model, neuron_selection_mode="index")
    with pytest.raises(ValueError, match="neuron_selection"):
        index_mode.analyze(x)


def test_concurrent_use_from_two_threads() -> None:
    model = small_cnn()
    x = RNG.normal(0, 1, (2, 8, 8, 3)).astype("float32")
    expected = tf_clrp.create_analyzer("lrp.z_plus", model).analyze(x, neuron_selection=1)
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(tf_clrp.create_analyzer("lrp.z_plus", model).analyze(x, neuron_selection=1))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for r in results:
        np.testing.assert_allclose(r, expected, rtol=1e-6)


def test_sequential_and_nested_models_equal_the_functional_one() -> None:
    functional = small_cnn(bias=True)
    x = RNG.normal(0, 1, (2, 8, 8, 3)).astype("float32")
    sequential = keras.Sequential(
        [keras.Input((8, 8, 3))] + [layer for layer in functional.layers[1:]]
    )
    outer = keras.Sequential([keras.Input((8, 8, 3)), functional])
    reference = tf_clrp.create_analyzer("lrp.epsilon", functional).analyze(x, neuron_selection=2)
    for model in (sequential, outer):
        ours = tf_clrp.create_analyzer("lrp.epsilon", model).analyze(x, neuron_selection=2)
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_non_layer_operations_are_followed() -> None:
    inp = keras.Input((6,))
    a = keras.layers.Dense(5, use_bias=False)(inp)
    b = keras.layers.Dense(5, use_bias=False)(inp)
    h = keras.ops.relu(a + b)
    out = keras.layers.Dense(3, use_bias=False)(h)
    model = keras.Model(inp, out)
    x = RNG.uniform(0, 1, (2, 6)).astype("float32")
    relevance = tf_clrp.create_analyzer("lrp.epsilon", model).analyze(x, neuron_selection=0)
    np.testing.assert_allclose(relevance.sum(axis=1), model(x).numpy()[:, 0], rtol=1e-4)


def test_multi_output_needs_output_index() -> None:
    inp = keras.Input((4,))
    model = keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(3)(inp)])
    with pytest.raises(tf_clrp.ModelStructureError, match="output_index"):
        tf_clrp.create_analyzer("lrp.z", model)
    x = RNG.normal(0, 1, (2, 4)).astype("float32")
    out = tf_clrp.create_analyzer("gradient", model, output_index=1).analyze(x, neuron_selection=2)
    np.testing.assert_allclose(
        out, np.tile(model.layers[2].kernel.numpy()[:, 2], (2, 1)), rtol=1e-6
    )


def test_hidden_channel_relevance_sums_to_the_channel_activation() -> None:
    model = small_cnn(bias=False)
    x = RNG.uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    conv_name = model.layers[3].name  # second conv (followed by a ReLU layer)
    relu_name = model.layers[4].name
    analyzer = tf_clrp.create_analyzer(
        "lrp.z_plus", model, layer_name=relu_name, neuron_selection_unit="channel"
    )
    relevance = analyzer.analyze(x, neuron_selection=3)
    activation = keras.Model(model.inputs, model.get_layer(relu_name).output)(x).numpy()
    np.testing.assert_allclose(
        relevance.reshape(2, -1).sum(axis=1),
        activation[..., 3].reshape(2, -1).sum(axis=1),
        rtol=1e-3,
    )
    assert conv_name != relu_name


@pytest.mark.parametrize("name", ["lrp.z_plus", "lrp.epsilon_plus", "lrp.sequential_preset_a"])
def test_bfloat16_precision_stays_close_to_float32(name: str) -> None:
    model = small_cnn(bias=False)
    x = RNG.uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    exact = tf_clrp.create_analyzer(name, model).analyze(x, neuron_selection=1)
    fast = tf_clrp.create_analyzer(name, model, precision="bfloat16").analyze(x, neuron_selection=1)
    assert fast.dtype == np.float32 and np.isfinite(fast).all()
    assert np.abs(fast - exact).max() <= 3e-2 * np.abs(exact).max()
    for a, b in zip(fast, exact):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    with pytest.raises(ValueError, match="precision"):
        tf_clrp.create_analyzer(name, model, precision="float8")


@pytest.mark.parametrize("precision", ["mixed", "bfloat16"])
@pytest.mark.parametrize("name", ["lrp.z_plus", "clrp", "sglrp"])
def test_reduced_precision_stays_close_to_float32(name: str, precision: str) -> None:
    """Contrastive maps too: their passes run in the contrast basis (see CLRP._backward)."""
    model = small_cnn(bias=False)
    x = RNG.uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    exact = tf_clrp.create_analyzer(name, model).analyze(x, neuron_selection=1)
    mixed = tf_clrp.create_analyzer(name, model, precision=precision).analyze(x, neuron_selection=1)
    assert mixed.dtype == np.float32 and np.isfinite(mixed).all()
    assert not np.array_equal(mixed, exact)  # bfloat16 really ran
    assert np.abs(mixed - exact).max() <= 3e-2 * np.abs(exact).max()
    for a, b in zip(mixed, exact):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


# ----------------------------------------------------------------------------- extension points
class _SoftmaxRule(tf_clrp.rules.Rule):
    """AttnLRP's softmax rule, R_in = x ⊙ (R_out − p ΣR_out), written as one class."""

    linear_in_relevance = True

    def forward(self, site):
        p = site.output()
        return p, p  # keeps the probabilities for the backward

    def backward(self, site, kept, relevance):
        (x,) = site.inputs
        return [x * (relevance - kept * tf.reduce_sum(relevance, axis=-1, keepdims=True))]


class _HalfEach(tf_clrp.rules.Rule):
    """A product of two activations: each factor gets half of the relevance."""

    linear_in_relevance = True

    def relevance(self, site, relevance):
        return [relevance / 2.0, relevance / 2.0]


def _epsilon_back(
    a: np.ndarray, kernel: np.ndarray, z: np.ndarray, r: np.ndarray, epsilon: float
) -> np.ndarray:
    """float64 LRP-ε through a Dense layer: a ⊙ Wᵀ(R / (z + ε·sign z))."""
    return a * ((r / (z + epsilon * np.where(z >= 0, 1.0, -1.0))) @ kernel.T)


def _dense_weights(layer: keras.layers.Layer) -> tuple[np.ndarray, np.ndarray]:
    return layer.kernel.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)


def test_a_softmax_rule_is_one_class() -> None:
    """A rule with a forward hook (it keeps p) runs in the mirror unchanged; the map matches
    a float64 numpy reference of ε-Dense → softmax rule → ε-Dense."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((5,))
    h = keras.layers.Dense(6, name="d1")(inp)
    h = keras.layers.Softmax(name="sm")(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="d2")(h))
    x = RNG.normal(0, 1, (4, 5)).astype("float32")
    analyzer = tf_clrp.create_analyzer(
        "lrp.epsilon", model, epsilon=0.01, layer_rules={"Softmax": _SoftmaxRule()}
    )
    got = analyzer.analyze(x, neuron_selection=2)

    w1, b1 = _dense_weights(model.get_layer("d1"))
    w2, b2 = _dense_weights(model.get_layer("d2"))
    a = x.astype(np.float64)
    z1 = a @ w1 + b1
    p = np.exp(z1 - z1.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    z2 = p @ w2 + b2
    r2 = np.zeros_like(z2)
    r2[:, 2] = z2[:, 2]
    r_p = _epsilon_back(p, w2, z2, r2, 0.01)
    r_z1 = z1 * (r_p - p * r_p.sum(axis=1, keepdims=True))
    expected = _epsilon_back(a, w1, z1, r_z1, 0.01)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


class _Gated(keras.layers.Layer):
    """a(x) ⊙ b(x): walked by the engine, its product becomes a BILINEAR node."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(4, name="a")
        self.b = keras.layers.Dense(4, name="b")

    def call(self, x):
        return keras.ops.multiply(self.a(x), self.b(x))


def test_a_bilinear_rule_is_one_class() -> None:
    """A two-input rule keyed by the BILINEAR group needs no engine change; the map matches
    a float64 numpy reference."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((5,))
    gated = _Gated(name="gated")
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(gated(inp)))
    x = RNG.normal(0, 1, (4, 5)).astype("float32")
    analyzer = tf_clrp.create_analyzer(
        "lrp.epsilon", model, epsilon=0.01, layer_rules={"bilinear": _HalfEach()}
    )
    got = analyzer.analyze(x, neuron_selection=0)

    wa, ba = _dense_weights(gated.a)
    wb, bb = _dense_weights(gated.b)
    wo, bo = _dense_weights(model.get_layer("out"))
    a = x.astype(np.float64)
    ha, hb = a @ wa + ba, a @ wb + bb
    g = ha * hb
    z = g @ wo + bo
    r = np.zeros_like(z)
    r[:, 0] = z[:, 0]
    r_g = _epsilon_back(g, wo, z, r, 0.01)
    expected = _epsilon_back(a, wa, ha, r_g / 2, 0.01) + _epsilon_back(a, wb, hb, r_g / 2, 0.01)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_an_equivalent_user_rule_keeps_the_fast_path() -> None:
    """Modifiers are values equal by name: a user's z⁺-fast built from its own
    Modifier("identity", ...) takes the fused path like ZPlusFast (bit-identical maps)."""
    own_identity = tf_clrp.rules.Modifier("identity", lambda t: t)
    user_rule = tf_clrp.rules.BasicRule(
        (tf_clrp.rules.Term(own_identity, tf_clrp.rules.POSITIVE, tf_clrp.rules.DROP),), 1e-9
    )
    model = small_cnn()
    x = RNG.uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    expected = tf_clrp.create_analyzer("lrp.z_plus_fast", model).analyze(x, neuron_selection=1)
    got = tf_clrp.create_analyzer("lrp", model, rule=user_rule).analyze(x, neuron_selection=1)
    np.testing.assert_array_equal(got, expected)
    site = tf_clrp.rules.Site(
        inputs=[tf.ones((2, 3))],
        forward=lambda xs, k: xs[0] @ k,
        kernel=tf.ones((3, 2)),
        nonnegative=(True,),
    )
    assert user_rule.forward(site)[1].fused_kernel is not None


class _Linear(keras.layers.Layer):
    """A user's own Dense-like layer (not a Dense subclass)."""

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units, self.use_bias = units, True

    def build(self, shape) -> None:
        self.kernel = self.add_weight(shape=(shape[-1], self.units))
        self.bias = self.add_weight(shape=(self.units,), initializer="random_normal")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) + self.bias


def test_a_layer_class_joins_a_group_with_one_line(monkeypatch) -> None:
    """One GROUP_OF_CLASS entry makes a user layer a Dense for the engine: its maps equal
    those of a keras Dense with the same weights; without the entry it is refused."""

    def build(layer: keras.layers.Layer) -> keras.Model:
        inp = keras.Input((6,))
        h = keras.layers.Dense(5, activation="relu", name="h")(inp)
        return keras.Model(inp, layer(h))

    keras.utils.set_random_seed(6)
    own = build(_Linear(3, name="head"))
    dense = build(keras.layers.Dense(3, name="head"))
    dense.set_weights(own.get_weights())
    x = RNG.normal(0, 1, (4, 6)).astype("float32")
    with pytest.raises(tf_clrp.UnsupportedLayerError):
        tf_clrp.create_analyzer("lrp.epsilon", own)
    monkeypatch.setitem(tf_clrp.layers.GROUP_OF_CLASS, "_Linear", tf_clrp.layers.Group.DENSE)
    got = tf_clrp.create_analyzer("lrp.epsilon", own).analyze(x, neuron_selection=1)
    expected = tf_clrp.create_analyzer("lrp.epsilon", dense).analyze(x, neuron_selection=1)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_a_linear_layer_is_recognised_by_its_class_not_its_name() -> None:
    """A DepthwiseConv2D subclass with another name gets the depthwise forward."""

    class PerChannel(keras.layers.DepthwiseConv2D):
        pass

    def build(layer: keras.layers.Layer) -> keras.Model:
        inp = keras.Input((6, 6, 3))
        h = keras.layers.Flatten()(layer(inp))
        return keras.Model(inp, keras.layers.Dense(4, name="out")(h))

    keras.utils.set_random_seed(7)
    own = build(PerChannel(3, depth_multiplier=2, name="dw"))
    plain = build(keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"))
    plain.set_weights(own.get_weights())
    x = RNG.normal(0, 1, (2, 6, 6, 3)).astype("float32")
    got = tf_clrp.create_analyzer("lrp.epsilon", own).analyze(x, neuron_selection=1)
    expected = tf_clrp.create_analyzer("lrp.epsilon", plain).analyze(x, neuron_selection=1)
    np.testing.assert_array_equal(got, expected)


def test_composites_are_assembled_in_one_place() -> None:
    """``composites.assemble``: the analyzers' composite/rule/first-layer options."""
    composites, rules = tf_clrp.composites, tf_clrp.rules
    with pytest.raises(TypeError, match="not both"):
        composites.assemble(composites.zbox_zplus(), rule=rules.ZPlus())
    paper = composites.assemble(default=composites.zbox_zplus)
    assert isinstance(paper.first_layer, rules.ZBox)
    uniform = composites.assemble(
        rule=rules.Epsilon(0.1), input_layer_rule="Flat", layer_rules={"out": rules.Z()}
    )
    assert isinstance(uniform.first_layer, rules.Flat)
    assert isinstance(uniform.layer_map["out"], rules.Z)
    clrp = tf_clrp.create_analyzer("clrp", mlp(), rule=rules.ZPlus())
    assert clrp.composite.first_layer is None  # a uniform rule: no z^B first layer


def test_selection_codes_never_clash() -> None:
    """Every integer code of the compiled functions is distinct and negative (unit
    indices are >= 0), and each has a word."""
    codes = tf_clrp.selection.CODES
    assert len(set(codes.values())) == len(codes) and max(codes.values()) < 0
    assert all(tf_clrp.selection.code_name(code) == name for name, code in codes.items())
    assert set(tf_clrp.analyzers.contrastive.CONTRASTS.values()).isdisjoint(
        {tf_clrp.selection.MAX_ACTIVATION, tf_clrp.selection.ALL_NEURONS}
    )


@pytest.mark.parametrize("name", ["integrated_gradients", "smoothgrad"])
def test_averaged_gradients_take_their_layer_rules(name: str) -> None:
    """``layer_rules`` (advertised by create_analyzer) reach the composite: z⁺ on the Dense
    layers changes the map; the true gradient as a rule keeps it."""
    model = mlp()
    x = RNG.normal(0, 1, (3, 6)).astype("float32")
    options = (
        {"steps": 4} if name == "integrated_gradients" else {"augment_by_n": 3, "noise_scale": 0.0}
    )
    plain = tf_clrp.create_analyzer(name, model, **options).analyze(x, neuron_selection=1)
    same = tf_clrp.create_analyzer(
        name, model, layer_rules={"dense": tf_clrp.rules.Gradient()}, **options
    ).analyze(x, neuron_selection=1)
    ruled = tf_clrp.create_analyzer(
        name, model, layer_rules={"dense": tf_clrp.rules.ZPlus()}, **options
    ).analyze(x, neuron_selection=1)
    np.testing.assert_allclose(same, plain, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ruled, plain, rtol=1e-3, atol=1e-4)
