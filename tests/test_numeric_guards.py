"""Numbers that are not numbers: refused parameters and weights, warned absorption, and the
first-layer rule on a Dense applied to an image tensor (against a float64 numpy reference)."""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_clrp
from tf_clrp import composites, rules
from tf_clrp.errors import NonFiniteError

L = keras.layers
RNG = np.random.default_rng(7)


def _mlp(name: str = "mlp") -> keras.Model:
    keras.utils.set_random_seed(11)
    inp = keras.Input((6,))
    h = L.Dense(8, activation="relu", name="hidden")(inp)
    return keras.Model(inp, L.Dense(3, name="logits")(h), name=name)


def _with_weight(
    model: keras.Model, layer: str, index: int, value: float, where: tuple[int, ...] | None = None
) -> keras.Model:
    weights = model.get_layer(layer).get_weights()
    weights[index][where or (0,) * weights[index].ndim] = value
    model.get_layer(layer).set_weights(weights)
    return model


# ----------------------------------------------------------------------------- weights
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("layer,index,what", [("hidden", 0, "kernel"), ("logits", 1, "bias")])
def test_non_finite_weights_are_refused_naming_the_layer(
    value: float, layer: str, index: int, what: str
) -> None:
    model = _with_weight(_mlp(), layer, index, value)
    for name in ("lrp.epsilon", "gradient", "clrp"):
        with pytest.raises(NonFiniteError, match=f"layer '{layer}'.*1 in its {what}"):
            tf_clrp.create_analyzer(name, model)


def test_non_finite_batch_norm_is_named_through_its_folded_layer() -> None:
    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 5, 2))
    h = L.Conv2D(3, 3, name="conv")(inp)
    h = L.BatchNormalization(name="bn")(h)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(L.ReLU()(h))))
    bn = model.get_layer("bn")
    gamma, beta, mean, variance = bn.get_weights()
    variance[1] = np.nan
    bn.set_weights([gamma, beta, mean, variance])
    with pytest.raises(NonFiniteError, match=r"layer 'conv\+bn'.*BatchNormalization folded"):
        tf_clrp.create_analyzer("lrp.epsilon", model)


def test_overflowing_kernel_names_the_layer_and_the_sample() -> None:
    model = _mlp()
    kernel, bias = model.get_layer("hidden").get_weights()
    model.get_layer("hidden").set_weights([np.full_like(kernel, 1e38), bias])
    x = np.zeros((3, 6), np.float32)
    x[1] = 1.0  # 6·1e38 overflows in sample 1
    for name in ("lrp.epsilon", "clrp"):  # (the gradient stays finite: no error)
        # a flat input needs data bounds for CLRP's z^B (per-sample ones collapse)
        bounds = {"input_layer_rule": (0.0, 1.0)} if name == "clrp" else {}
        analyzer = tf_clrp.create_analyzer(name, model, **bounds)  # finite weights: accepted
        with pytest.raises(NonFiniteError, match=r"sample\(s\) 1 .*'hidden'.*overflows"):
            analyzer.analyze(x, neuron_selection=0)


def test_backward_overflow_is_reported_as_such() -> None:
    """w² squares a 1e20 kernel to inf in the rule only; the forward stays finite."""
    model = _mlp()
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[0, 0] = 1e20
    model.get_layer("hidden").set_weights([kernel, bias])
    x = np.full((2, 6), 1e-19, np.float32)
    analyzer = tf_clrp.create_analyzer("lrp.w_square", model)
    with pytest.raises(NonFiniteError, match=r"backward pass overflowed.*1e\+20.*'hidden'"):
        analyzer.analyze(x, neuron_selection=0)


def test_weights_that_turn_nan_after_construction_are_named() -> None:
    """Training (e.g. with the HeatmapCallback) may change weights after the analyzer was
    made: the map check then names the layer."""
    model = _mlp()
    analyzer = tf_clrp.create_analyzer("lrp.z", model)
    x = RNG.uniform(0, 1, (2, 6)).astype("float32")
    assert np.isfinite(analyzer.analyze(x, neuron_selection=0)).all()
    _with_weight(model, "logits", 0, np.nan, where=(3, 0))
    with pytest.raises(NonFiniteError, match=r"sample\(s\) 0, 1 .*layer 'logits'.*changed"):
        analyzer.analyze(x, neuron_selection=0)


# ----------------------------------------------------------------------------- parameters
BAD_PARAMETERS: list[tuple[str, dict[str, Any], str]] = [
    *[
        ("lrp.epsilon", {"epsilon": v}, "epsilon")
        for v in (np.nan, -1.0, np.inf, 0.0, "abc", None, True)
    ],
    ("lrp.z", {"epsilon": -1e-7}, "epsilon"),
    ("lrp.z_plus", {"epsilon": np.nan}, "epsilon"),
    ("lrp.flat", {"epsilon": np.inf}, "epsilon"),
    ("lrp.w_square", {"epsilon": "1e-9"}, "epsilon"),
    ("lrp.gamma", {"gamma": np.nan}, "gamma"),
    ("lrp.gamma", {"gamma": -0.25}, "gamma"),
    ("lrp.gamma", {"epsilon": np.nan}, "epsilon"),
    ("lrp.alpha_beta", {"alpha": np.nan}, "alpha"),
    ("lrp.alpha_beta", {"alpha": 3.0, "beta": 1.0}, "alpha - beta = 1"),
    ("lrp.alpha_beta", {"beta": -0.5}, "beta"),
    ("lrp.epsilon_plus", {"epsilon": np.nan}, "epsilon"),
    ("lrp.epsilon_plus_flat", {"epsilon": -1.0}, "epsilon"),
    ("lrp.epsilon_alpha_2_beta_1", {"epsilon": np.inf}, "epsilon"),
    ("lrp.sequential_preset_a", {"epsilon": None}, "epsilon"),
    ("lrp.epsilon_gamma_box", {"low": np.nan}, "low"),
    ("lrp.epsilon_gamma_box", {"high": [1.0, np.inf, 1.0]}, "high"),
    ("lrp.epsilon_gamma_box", {"gamma": -1.0}, "gamma"),
    ("lrp.z", {"input_layer_rule": (np.nan, 1.0)}, "low"),
    ("lrp.z", {"input_layer_rule": (0.0, "abc")}, "high"),
    ("deep_taylor.bounded", {"low": 0.0, "high": np.nan}, "high"),
    ("clrp", {"input_layer_rule": (0.0, np.nan)}, "high"),
    ("smoothgrad", {"noise_scale": np.nan}, "noise_scale"),
    ("smoothgrad", {"noise_scale": np.inf}, "noise_scale"),
    ("smoothgrad", {"noise_scale": -0.1}, "noise_scale"),
    ("smoothgrad", {"augment_by_n": 0}, "augment_by_n"),
    ("smoothgrad", {"augment_by_n": 2.5}, "augment_by_n"),
    ("integrated_gradients", {"steps": 0}, "steps"),
    ("integrated_gradients", {"steps": "8"}, "steps"),
    ("integrated_gradients", {"reference_inputs": np.nan}, "reference_inputs"),
    ("gradient", {"batch_size": 0}, "batch_size"),
    ("lrp.epsilon", {"batch_size": -2}, "batch_size"),
    ("clrp", {"batch_size": 1.5}, "batch_size"),
]


@pytest.mark.parametrize(
    "name,kwargs,parameter", BAD_PARAMETERS, ids=[f"{n}-{k}" for n, k, _ in BAD_PARAMETERS]
)
def test_bad_numeric_parameters_are_refused_at_construction(
    name: str, kwargs: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(ValueError, match=parameter):
        tf_clrp.create_analyzer(name, _mlp(), **kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rules.Epsilon(np.nan),
        lambda: rules.ZPlus(-1.0),
        lambda: rules.Flat("abc"),
        lambda: rules.Gamma(np.nan),
        lambda: rules.ZBox(np.nan, 1.0),
        lambda: rules.ZBox([0.0, 0.0], [1.0, np.nan]),
        lambda: rules.Norm(epsilon=np.inf),
        lambda: rules.AlphaBeta(np.inf, np.inf),
        lambda: composites.epsilon_plus(np.nan),
        lambda: composites.epsilon_gamma_box(gamma=np.nan),
    ],
    ids=[
        "Epsilon",
        "ZPlus",
        "Flat",
        "Gamma",
        "ZBox-low",
        "ZBox-high",
        "Norm",
        "AlphaBeta",
        "epsilon_plus",
        "epsilon_gamma_box",
    ],
)
def test_rules_and_composites_refuse_non_numbers(make: Any) -> None:
    with pytest.raises(ValueError, match="epsilon|gamma|low|high|alpha"):
        make()


def test_valid_parameters_keep_their_values() -> None:
    assert rules.Epsilon(np.float32(0.25)).epsilon == pytest.approx(0.25)
    assert rules.ZBox(0, 1).low.dtype == np.float32
    assert rules.AlphaBeta(2, 1).alpha == 2.0


def test_batch_size_zero_in_analyze_is_refused_and_none_means_one_chunk() -> None:
    model = _mlp()
    analyzer = tf_clrp.create_analyzer("lrp.epsilon", model)
    x = RNG.uniform(0, 1, (5, 6)).astype("float32")
    with pytest.raises(ValueError, match="batch_size"):
        analyzer.analyze(x, neuron_selection=0, batch_size=0)
    whole = analyzer.analyze(x, neuron_selection=0, batch_size=None)
    np.testing.assert_allclose(
        analyzer.analyze(x, neuron_selection=0, batch_size=2), whole, rtol=1e-6, atol=1e-9
    )


# ----------------------------------------------------------------------------- inputs
def test_bfloat16_tensor_input_is_accepted() -> None:
    model = _mlp()
    analyzer = tf_clrp.create_analyzer("lrp.epsilon", model)
    x = tf.cast(tf.constant(RNG.uniform(0, 1, (2, 6)), tf.float32), tf.bfloat16)
    expected = analyzer.analyze(tf.cast(x, tf.float32).numpy(), neuron_selection=1)
    np.testing.assert_array_equal(analyzer.analyze(x, neuron_selection=1), expected)
    np.testing.assert_array_equal(analyzer.analyze(x.numpy(), neuron_selection=1), expected)


# ----------------------------------------------------------------------------- absorption
def _vanishing_model() -> keras.Model:
    """Logits ≈ 1e-12: each kernel scaled by 1e-6 (like a random-weight MobileNetV2)."""
    model = _mlp("vanishing")
    for layer in model.layers[1:]:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * 1e-6, bias * 0.0])
    return model


def test_logit_below_the_stabiliser_warns_naming_logit_and_stabiliser() -> None:
    model = _vanishing_model()
    x = RNG.uniform(0.5, 1, (2, 6)).astype("float32")
    analyzer = tf_clrp.create_analyzer("lrp.epsilon_plus", model)
    logits = model(x).numpy()
    target = np.abs(logits).argmax(axis=1)
    assert np.abs(logits).max() < 1e-10
    with pytest.warns(RuntimeWarning) as caught:
        relevance = analyzer.analyze(x, neuron_selection=target)
    message = str(caught[0].message)
    assert "epsilon=1e-06" in message and "'logits'" in message
    assert f"0 ({logits[0, target[0]]:.3g})" in message
    assert np.abs(relevance).sum() < 1e-3 * np.abs(logits).max()


def test_no_absorption_warning_when_the_stabiliser_is_small_enough() -> None:
    model = _vanishing_model()
    x = RNG.uniform(0.5, 1, (2, 6)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        relevance = tf_clrp.create_analyzer("lrp.epsilon", model, epsilon=1e-20).analyze(x)
        tf_clrp.create_analyzer("lrp.epsilon_plus", _mlp()).analyze(x)
    assert np.abs(relevance).sum() > 0.0


# ----------------------------------------------------------------------------- first layer
def _dense_on_image() -> keras.Model:
    """Dense(5) on (10, 10, 3), then Flatten; named as Keras names the first Dense of a
    session ("dense", also the group's name)."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((10, 10, 3))
    h = L.Dense(5, activation="relu", name="dense")(inp)
    return keras.Model(inp, L.Dense(4, name="dense_1")(L.Flatten()(h)))


def _reference(
    model: keras.Model,
    x: np.ndarray,
    target: int,
    first: str,
    upper: str,
    upper_eps: float,
    seed: str = "value",
    low: float = 0.0,
    high: float = 0.0,
) -> np.ndarray:
    """float64 LRP of ``model``: ``first`` ∈ flat / wsquare / zbox on the first Dense (per
    pixel, stabiliser 1e-9, no bias), ``upper`` ∈ epsilon (with bias) / zplus on the last."""
    w1, b1 = (w.astype(np.float64) for w in model.layers[1].get_weights())
    w2, b2 = (w.astype(np.float64) for w in model.layers[3].get_weights())
    x = x.astype(np.float64)
    a1 = np.maximum(x @ w1 + b1, 0.0)  # (B, 10, 10, 5)
    flat = a1.reshape(len(x), -1)
    z2 = flat @ w2 + b2
    r2 = np.zeros_like(z2)
    r2[:, target] = z2[:, target] if seed == "value" else np.maximum(z2[:, target], 0.0)
    if upper == "epsilon":
        s2 = r2 / (z2 + upper_eps * np.where(z2 >= 0, 1.0, -1.0))
        r1 = flat * (s2 @ w2.T)
    else:  # z+ (a1 >= 0, bias ignored)
        wp = np.maximum(w2, 0.0)
        r1 = flat * ((r2 / (flat @ wp + upper_eps)) @ wp.T)
    r1 = r1.reshape(a1.shape)  # ReLU passes relevance
    eps = 1e-9
    if first == "flat":
        return np.broadcast_to((r1 / (3.0 + eps)).sum(-1, keepdims=True), x.shape)
    if first == "wsquare":
        w2sq = w1**2
        return (r1 / (w2sq.sum(0) + eps)) @ w2sq.T
    wp, wn = np.maximum(w1, 0.0), np.minimum(w1, 0.0)
    z = x @ w1 - low * wp.sum(0) - high * wn.sum(0)
    s = r1 / (z + eps * np.where(z >= 0, 1.0, -1.0))
    return x * (s @ w1.T) - low * (s @ wp.T) - high * (s @ wn.T)


FIRST_LAYER_CASES = [
    ("lrp.epsilon", {"input_layer_rule": "Flat"}, ("flat", "epsilon", 1e-7)),
    ("lrp.epsilon", {"input_layer_rule": "WSquare"}, ("wsquare", "epsilon", 1e-7)),
    ("lrp.epsilon", {"input_layer_rule": (-1.0, 1.0)}, ("zbox", "epsilon", 1e-7)),
    ("lrp.z_plus", {"input_layer_rule": (-1.0, 1.0)}, ("zbox", "zplus", 1e-9)),
    ("lrp.epsilon_plus_flat", {}, ("flat", "epsilon", 1e-6)),
    ("lrp.sequential_preset_a_flat", {}, ("flat", "epsilon", 0.1)),
    ("deep_taylor.bounded", {"low": -1.0, "high": 1.0}, ("zbox", "zplus", 1e-7)),
]


@pytest.mark.parametrize(
    "name,kwargs,spec", FIRST_LAYER_CASES, ids=[f"{n}-{k}" for n, k, _ in FIRST_LAYER_CASES]
)
def test_first_layer_rule_applies_to_a_dense_on_an_image(
    name: str, kwargs: dict[str, Any], spec: tuple[str, str, float]
) -> None:
    model = _dense_on_image()
    x = RNG.uniform(-1, 1, (3, 10, 10, 3)).astype("float32")
    first, upper, upper_eps = spec
    seed = "relu" if name.startswith("deep_taylor") else "value"
    logits = model(x).numpy()
    target = int(np.argmax(np.maximum(logits, 0).sum(0)))
    got = tf_clrp.create_analyzer(name, model, **kwargs).analyze(x, neuron_selection=target)
    want = _reference(model, x, target, first, upper, upper_eps, seed, low=-1.0, high=1.0)
    scale = np.abs(want).max()
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)
    # The z rule's map is a different thing: the first-layer rule really acted.
    z_map = tf_clrp.create_analyzer("lrp.z", model).analyze(x, neuron_selection=target)
    assert np.abs(got - z_map).max() > 1e-2 * scale


def test_layer_rules_keyed_by_a_group_name_mean_the_group() -> None:
    """layer_rules={"dense": ...} is the Dense group (the documented meaning), even though
    the first Dense is named "dense"; the first-layer rule keeps precedence over groups."""
    model = _dense_on_image()
    analyzer = tf_clrp.create_analyzer(
        "lrp.z", model, input_layer_rule="Flat", layer_rules={"dense": rules.Epsilon(0.5)}
    )
    assigned = {s.node.name: s.rule for s in analyzer.mirror.steps if s.rule is not None}
    assert isinstance(assigned["dense"], rules.Flat)
    assert isinstance(assigned["dense_1"], rules.Epsilon)
