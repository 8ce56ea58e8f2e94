"""AttnLRP beyond the LXT parity tests: the ε composite on CNNs, the explicit attention path,
masks, bad inputs (a fully masked row, one token, hybrids, mixed precision), CLRP's default
and its contrasts on transformers.

The rules themselves are checked against LXT in ``test_attnlrp_parity.py``; here the checks
are equalities that must hold whatever the rules are (two ways of writing the same model give
the same map), the ε composite's identity on models without attention, and "finite or a
clear error" on inputs that could produce NaN.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import pytest
import transformer_models
from keras import layers

import tf_clrp
from tf_clrp import composites, rules, rules_attention
from tf_clrp.errors import SelectionError

RNG = np.random.default_rng(7)


def small_cnn() -> keras.Model:
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3))
    h = layers.Conv2D(4, 3, activation="relu")(inp)
    h = layers.AveragePooling2D(2)(h)
    h = layers.Flatten()(h)
    return keras.Model(inp, layers.Dense(3)(h))


def test_attnlrp_on_a_cnn_is_the_epsilon_composite() -> None:
    model = small_cnn()
    x = RNG.uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    got = tf_clrp.create_analyzer("attnlrp", model).analyze(x, neuron_selection=1)
    expected = tf_clrp.create_analyzer("lrp.epsilon", model, epsilon=1e-6).analyze(
        x, neuron_selection=1
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def _attention_model(
    dropout: float, causal: bool = False, tokens: int = 6, mask: bool = False
) -> keras.Model:
    """x → LN → MHA (fused without dropout, explicit einsum/softmax with it) → Add → mean."""
    keras.utils.set_random_seed(5)
    x_in = keras.Input((tokens, 8), name="x")
    h = layers.LayerNormalization(name="ln")(x_in)
    mha = layers.MultiHeadAttention(2, 4, dropout=dropout, name="mha")
    if mask:
        m_in = keras.Input((tokens, tokens), dtype="bool", name="mask")
        h = mha(h, h, attention_mask=m_in)
    else:
        h = mha(h, h, use_causal_mask=causal)
    h = layers.Add(name="res")([x_in, h])
    h = layers.Dense(8, activation="gelu", name="mlp")(h)
    out = layers.Dense(3, name="head")(layers.GlobalAveragePooling1D(name="mean")(h))
    return keras.Model([x_in, m_in] if mask else x_in, out)


def _same_weights(source: keras.Model, target: keras.Model) -> keras.Model:
    for var, value in zip(target.weights, source.weights, strict=True):
        var.assign(value)
    return target


@pytest.mark.parametrize("name", ["attnlrp", "attnlrp.cp"])
def test_fused_and_explicit_attention_give_the_same_map(name: str) -> None:
    """MultiHeadAttention without dropout is one fused op (split by the canonizer), with
    dropout explicit einsum/Softmax/einsum nodes: the same function, the same rules, so
    the same map (a split with a wrong scale or weight order would differ)."""
    fused = _attention_model(0.0)
    explicit = _same_weights(fused, _attention_model(0.3))
    x = RNG.normal(0, 1, (3, 6, 8)).astype("float32")
    np.testing.assert_allclose(explicit(x), fused(x), rtol=1e-5, atol=1e-6)
    a = tf_clrp.create_analyzer(name, fused).analyze(x, neuron_selection=2)
    b = tf_clrp.create_analyzer(name, explicit).analyze(x, neuron_selection=2)
    assert np.abs(a).sum() > 0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())


def _masked_maps(
    model: keras.Model, x: np.ndarray, mask: np.ndarray, name: str = "attnlrp"
) -> np.ndarray:
    analyzer = tf_clrp.create_analyzer(name, model, input_name="x")
    return analyzer.analyze({"x": x, "mask": mask}, neuron_selection=0)


@pytest.mark.parametrize("name", ["attnlrp", "attnlrp.cp"])
def test_masks_and_causal_attention(name: str) -> None:
    """A boolean mask (fused: the split's softmax; explicit: Keras' masked Softmax layer)
    and the fused causal kernel (``use_causal_mask``) against the same model fed the
    lower-triangular mask: equal maps; an all-True mask is no mask."""
    x = RNG.normal(0, 1, (2, 6, 8)).astype("float32")
    fused = _attention_model(0.0, mask=True)
    explicit = _same_weights(fused, _attention_model(0.3, mask=True))
    column = np.ones((2, 6, 6), bool)
    column[1, :, 2] = False  # key 2 of sample 1 is masked for every query
    a, b = _masked_maps(fused, x, column, name), _masked_maps(explicit, x, column, name)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())
    unmasked = tf_clrp.create_analyzer(name, _same_weights(fused, _attention_model(0.0))).analyze(
        x, neuron_selection=0
    )
    np.testing.assert_allclose(
        _masked_maps(fused, x, np.ones((2, 6, 6), bool), name), unmasked, rtol=1e-4, atol=1e-6
    )
    assert not np.allclose(a, unmasked, atol=1e-4)
    causal = _same_weights(fused, _attention_model(0.0, causal=True))
    lower = np.broadcast_to(np.tril(np.ones((6, 6), bool)), (2, 6, 6))
    np.testing.assert_allclose(
        tf_clrp.create_analyzer(name, causal).analyze(x, neuron_selection=0),
        _masked_maps(explicit, x, lower, name),
        rtol=1e-4,
        atol=1e-5 * np.abs(a).max(),
    )


def test_a_mask_blanking_a_whole_row_gives_finite_maps() -> None:
    """A query that may attend to nothing: Keras' fused op gives it uniform weights, its
    Softmax layer zero weights (the two models differ there); AttnLRP counts its masked
    scores as 0 either way: finite maps, never NaN."""
    x = RNG.normal(0, 1, (2, 6, 8)).astype("float32")
    fused = _attention_model(0.0, mask=True)
    explicit = _same_weights(fused, _attention_model(0.3, mask=True))
    blank = np.ones((2, 6, 6), bool)
    blank[0, 1, :] = False
    blank[1] = False  # every query of sample 1
    for model in (fused, explicit):
        for name in ("attnlrp", "attnlrp.cp"):  # CLRP takes one-input models only
            maps = _masked_maps(model, x, blank, name)
            assert np.all(np.isfinite(maps)), (model.name, name)


def test_one_token_gives_finite_maps() -> None:
    model = _attention_model(0.0, tokens=1)
    x = RNG.normal(0, 1, (2, 1, 8)).astype("float32")
    for name in ("attnlrp", "attnlrp.cp", "clrp", "sglrp"):
        maps = tf_clrp.create_analyzer(name, model).analyze(x, neuron_selection=0)
        assert maps.shape == x.shape and np.all(np.isfinite(maps)), name


def test_hybrid_conv_attention_model() -> None:
    """Conv + ReLU stem, then attention: finite maps, and CLRP picks AttnLRP by default."""
    keras.utils.set_random_seed(9)
    inp = keras.Input((8, 8, 3))
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = layers.MaxPooling2D()(h)
    h = layers.Reshape((16, 8))(h)
    h = layers.Add()([h, layers.MultiHeadAttention(2, 4)(h, h)])
    h = layers.LayerNormalization()(h)
    model = keras.Model(inp, layers.Dense(4)(layers.GlobalAveragePooling1D()(h)))
    x = RNG.uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    maps = tf_clrp.create_analyzer("attnlrp", model).analyze(x, neuron_selection=1)
    assert np.all(np.isfinite(maps)) and np.abs(maps).sum() > 0
    default = tf_clrp.create_analyzer("clrp", model).analyze(x, neuron_selection=1)
    explicit = tf_clrp.create_analyzer("clrp", model, composite=composites.attnlrp()).analyze(
        x, neuron_selection=1
    )
    np.testing.assert_array_equal(default, explicit)
    assert tf_clrp.create_analyzer("clrp", model).composite.name == "attnlrp"
    assert tf_clrp.create_analyzer("clrp", small_cnn()).composite.name == "zbox_zplus"


@pytest.fixture
def float32_policy_after() -> Iterator[None]:
    """Restores Keras' float32 policy after the test, whatever happens in it."""
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_transformer_gives_the_float32_map(
    float32_policy_after: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mixed_bfloat16 ViT against the same weights in float32: finite maps, Pearson r ≥
    0.9999 and max |difference| ≤ 0.5 % of max |map| per sample (measured: r ≥ 0.999996, 0.13-
    0.26 %); the rules see float32 tensors. Not equal: Keras' LayerNormalization casts its
    output to bfloat16 inside its call, so the engine's float32 run of the layer still rounds
    it; that rounding is the whole difference (docs/transformers.md)."""
    seen: list[tuple[str, ...]] = []
    forward = rules_attention.LayerNormIdentity.forward

    def recording(self: Any, site: Any) -> Any:
        output, kept = forward(self, site)
        seen.append((site.inputs[0].dtype.name, output.dtype.name, kept[1].dtype.name))
        return output, kept

    monkeypatch.setattr(rules_attention.LayerNormIdentity, "forward", recording)
    reference = transformer_models.randomize(transformer_models.build_vit(), seed=10)
    x = RNG.uniform(0, 1, (4, 16, 16, 1)).astype("float32")
    expected = tf_clrp.create_analyzer("attnlrp", reference).analyze(x, neuron_selection=0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    mixed = transformer_models.build_vit()
    keras.mixed_precision.set_global_policy("float32")
    assert mixed.get_layer("final_ln").compute_dtype == "bfloat16"
    _same_weights(reference, mixed)
    seen.clear()
    got = tf_clrp.create_analyzer("attnlrp", mixed).analyze(x, neuron_selection=0)
    assert seen and len(seen) % 5 == 0 and set(seen) == {("float32",) * 3}, seen  # 5 LNs
    assert np.all(np.isfinite(got))
    for g, e in zip(got, expected):
        corr = np.corrcoef(g.ravel(), e.ravel())[0, 1]
        gap = np.abs(g - e).max() / np.abs(e).max()
        assert corr >= 0.9999, f"Pearson r = {corr:.6f} against the float32 model's map"
        assert gap <= 5e-3, f"max |difference| {gap:.2%} of max |map|"


def test_negated_contrast_is_refused_under_attnlrp() -> None:
    model = _attention_model(0.0)
    x = RNG.normal(0, 1, (2, 6, 8)).astype("float32")
    with pytest.raises(SelectionError, match="negated"):
        tf_clrp.create_analyzer("clrp", model, contrast="negated").analyze(x, neuron_selection=0)


def test_every_contrast_on_a_transformer() -> None:
    """others, others_uniform, a rival, per-sample rivals, parts, a hidden layer: finite,
    and the parts recombine into the map."""
    model = _attention_model(0.0)
    x = RNG.normal(0, 1, (3, 6, 8)).astype("float32")
    clrp = tf_clrp.create_analyzer("clrp", model)
    for contrast in ("others", "others_uniform", 1, np.array([1, 2, 0])):
        parts = clrp.analyze(
            x, neuron_selection=np.array([0, 0, 2]), contrast=contrast, return_parts=True
        )
        for field in ("target", "dual", "contrastive"):
            assert np.all(np.isfinite(getattr(parts, field))), (contrast, field)
        np.testing.assert_allclose(parts.contrastive, np.maximum(parts.difference, 0))
    hidden = tf_clrp.create_analyzer("clrp", model, layer_name="mlp")
    maps = hidden.analyze(x, neuron_selection=np.array([3, 5, 7]))
    assert maps.shape == x.shape and np.all(np.isfinite(maps))


def test_layer_rules_change_the_linear_layers() -> None:
    """LXT's ViT recipe: γ on linear layers, the rest AttnLRP."""
    model = _attention_model(0.0)
    x = RNG.normal(0, 1, (2, 6, 8)).astype("float32")
    plain = tf_clrp.create_analyzer("attnlrp", model).analyze(x, neuron_selection=0)
    gamma = tf_clrp.create_analyzer(
        "attnlrp", model, layer_rules={"dense": rules.Gamma(0.25)}
    ).analyze(x, neuron_selection=0)
    assert np.all(np.isfinite(gamma)) and not np.allclose(plain, gamma)


class _ScaledAttention(layers.Layer):
    """Self-attention through ops.dot_product_attention with a scale of its own (0.5)."""

    def call(self, x):
        q = keras.ops.reshape(x, (-1, 6, 2, 4))
        return keras.ops.reshape(keras.ops.dot_product_attention(q, q, q, scale=0.5), (-1, 6, 8))


def test_a_fused_attention_the_split_does_not_reproduce_is_refused() -> None:
    """The split is checked against the fused op on a probe: a custom scale is refused
    with the layer's name, never explained with the wrong scores."""
    inp = keras.Input((6, 8))
    model = keras.Model(inp, layers.Dense(2)(layers.Flatten()(_ScaledAttention(name="own")(inp))))
    with pytest.raises(tf_clrp.errors.UnsupportedLayerError, match="cannot split.*own"):
        tf_clrp.create_analyzer("attnlrp", model)


def _epsilon_back(
    a: np.ndarray, w: np.ndarray, z: np.ndarray, r: np.ndarray, eps: float
) -> np.ndarray:
    """ε rule of a Dense layer in float64: a ⊙ W (R / (z + ε·sign z))."""
    return a * ((r / (z + eps * np.where(z >= 0, 1.0, -1.0))) @ w.T)


@pytest.mark.parametrize("norm", ["rms", "layer"])
def test_normalization_holds_the_scale_constant(norm: str) -> None:
    """Dense → RMSNormalization / LayerNormalization → Dense against float64 numpy: the
    identity on 1/rms (1/σ), the ε rule through γ ⊙ x/rms (γ ⊙ (x − mean)/σ + β)."""
    keras.utils.set_random_seed(12)
    inp = keras.Input((6,))
    h = layers.Dense(6, name="d1")(inp)
    layer = (
        layers.RMSNormalization(epsilon=1e-3, name="norm")
        if norm == "rms"
        else layers.LayerNormalization(epsilon=1e-3, name="norm")
    )
    model = keras.Model(inp, layers.Dense(3, name="d2")(layer(h)))
    for var in layer.weights:  # non-trivial γ (and β)
        var.assign(RNG.normal(1.0 if var.name in ("gamma", "scale") else 0.0, 0.3, var.shape))
    x = RNG.normal(0, 1, (4, 6)).astype("float32")
    got = tf_clrp.create_analyzer("attnlrp", model).analyze(x, neuron_selection=1)

    w1, b1 = (np.asarray(v, np.float64) for v in model.get_layer("d1").weights)
    w2, b2 = (np.asarray(v, np.float64) for v in model.get_layer("d2").weights)
    a = x.astype(np.float64)
    z1 = a @ w1 + b1
    if norm == "rms":
        (gamma,) = (np.asarray(v, np.float64) for v in layer.weights)
        inverse = 1.0 / np.sqrt((z1**2).mean(1, keepdims=True) + 1e-3)
        y = gamma * z1 * inverse
    else:
        gamma, beta = (np.asarray(v, np.float64) for v in layer.weights)
        centred = z1 - z1.mean(1, keepdims=True)
        inverse = 1.0 / np.sqrt((centred**2).mean(1, keepdims=True) + 1e-3)
        y = gamma * centred * inverse + beta
    z2 = y @ w2 + b2
    r2 = np.zeros_like(z2)
    r2[:, 1] = z2[:, 1]
    r_y = _epsilon_back(y, w2, z2, r2, 1e-6)
    s = r_y / (y + 1e-6 * np.where(y >= 0, 1.0, -1.0)) * gamma * inverse
    r_z1 = z1 * (s if norm == "rms" else s - s.mean(1, keepdims=True))
    expected = _epsilon_back(a, w1, z1, r_z1, 1e-6)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


CAUSAL_T, CAUSAL_D, CAUSAL_DK = 5, 8, 4


def _explicit_causal_attention() -> keras.Model:
    """One causal attention head from plain layers, as Keras users write it: Dense
    query/key/value, scores by a ``Dot`` layer, ``Rescaling(1/√d)``, ``Softmax`` called with
    a lower-triangular mask, ``Dropout`` on the weights, A·V by a ``Dot`` layer, output Dense."""
    keras.utils.set_random_seed(4)
    x_in = keras.Input((CAUSAL_T, CAUSAL_D), name="x")
    q = layers.Dense(CAUSAL_DK, name="query")(x_in)
    k = layers.Dense(CAUSAL_DK, name="key")(x_in)
    v = layers.Dense(CAUSAL_DK, name="value")(x_in)
    scores = layers.Rescaling(1 / np.sqrt(CAUSAL_DK))(layers.Dot(axes=2)([q, k]))
    causal = np.tril(np.ones((CAUSAL_T, CAUSAL_T), bool))
    weights = layers.Dropout(0.1)(layers.Softmax(axis=-1)(scores, mask=causal))
    h = layers.Dense(CAUSAL_D, name="attention_output")(layers.Dot(axes=(2, 1))([weights, v]))
    out = layers.Dense(3, name="head")(layers.GlobalAveragePooling1D()(h))
    model = keras.Model(x_in, out)
    for var in model.weights:
        var.assign(RNG.normal(0, 0.5, var.shape).astype("float32"))
    return model


def _causal_mha(dropout: float, explicit: keras.Model) -> keras.Model:
    """MultiHeadAttention(1 head, use_causal_mask=True) with the explicit model's weights."""
    x_in = keras.Input((CAUSAL_T, CAUSAL_D), name="x")
    mha = layers.MultiHeadAttention(1, CAUSAL_DK, dropout=dropout, name="mha")
    h = mha(x_in, x_in, use_causal_mask=True)
    model = keras.Model(x_in, layers.Dense(3, name="head")(layers.GlobalAveragePooling1D()(h)))
    d, dk = CAUSAL_D, CAUSAL_DK
    shapes = [(d, 1, dk), (1, dk)] * 3 + [(1, dk, d), (d,)]
    source = [
        w.numpy()
        for name in ("query", "key", "value", "attention_output")
        for w in explicit.get_layer(name).weights
    ]
    mha.set_weights([w.reshape(shape) for w, shape in zip(source, shapes, strict=True)])
    model.get_layer("head").set_weights(explicit.get_layer("head").get_weights())
    return model


@pytest.mark.parametrize("name", ["attnlrp", "attnlrp.cp", "clrp"])
def test_causal_attention_with_dropout(name: str) -> None:
    """Causal attention with dropout on the weights (identity at inference): written from
    plain layers, and as MultiHeadAttention(dropout=0.1, use_causal_mask=True), whose explicit
    path Keras' symbolic shapes kept from being walked (its causal mask was built from the
    projected query's open length). Both give the map of MultiHeadAttention(dropout=0.0)
    (the fused causal kernel, split by the canonizer) with the same weights."""
    explicit = _explicit_causal_attention()
    fused, dropped = _causal_mha(0.0, explicit), _causal_mha(0.1, explicit)
    x = RNG.normal(0, 1, (3, CAUSAL_T, CAUSAL_D)).astype("float32")
    for model in (explicit, dropped):
        np.testing.assert_allclose(model(x), fused(x), rtol=1e-5, atol=1e-6)
    expected = tf_clrp.create_analyzer(name, fused).analyze(x, neuron_selection=1)
    assert np.all(np.isfinite(expected)) and np.abs(expected).sum() > 0
    for model in (explicit, dropped):
        got = tf_clrp.create_analyzer(name, model).analyze(x, neuron_selection=1)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    # causality matters: the same head without the mask gives another map
    unmasked = _same_weights(fused, _attention_model_like(fused))
    other = tf_clrp.create_analyzer(name, unmasked).analyze(x, neuron_selection=1)
    assert not np.allclose(other, expected, atol=1e-3 * np.abs(expected).max())


def _attention_model_like(model: keras.Model) -> keras.Model:
    """``model`` (a _causal_mha model) without the causal mask."""
    x_in = keras.Input((CAUSAL_T, CAUSAL_D), name="x")
    h = layers.MultiHeadAttention(1, CAUSAL_DK, name="mha")(x_in, x_in)
    return keras.Model(x_in, layers.Dense(3, name="head")(layers.GlobalAveragePooling1D()(h)))


def test_rollout_of_causal_attention_with_dropout() -> None:
    """Attention rollout reads the dropout layer's own (causal) softmax output: the same
    rollout as the fused causal kernel's weights."""
    fused = _causal_mha(0.0, _explicit_causal_attention())
    dropped = _same_weights(fused, _causal_mha(0.1, _explicit_causal_attention()))
    x = RNG.normal(0, 1, (2, CAUSAL_T, CAUSAL_D)).astype("float32")
    expected = tf_clrp.create_analyzer("attention_rollout", fused).analyze(x)
    got = tf_clrp.create_analyzer("attention_rollout", dropped).analyze(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_causal_dropout_attention_needs_a_static_length() -> None:
    """MultiHeadAttention(dropout > 0, use_causal_mask=True) on an open sequence length is
    refused with an error naming the layer and the reason (dropout=0.0 is walked)."""
    x_in = keras.Input((None, 8), name="x")
    h = layers.MultiHeadAttention(2, 4, dropout=0.1, name="open_mha")(
        x_in, x_in, use_causal_mask=True
    )
    model = keras.Model(x_in, layers.Dense(3)(layers.GlobalAveragePooling1D()(h)))
    with pytest.raises(
        tf_clrp.errors.UnsupportedLayerError, match="open_mha.*static query and value lengths"
    ):
        tf_clrp.create_analyzer("attnlrp", model)
