"""CLRP and SGLRP against an independent float64 numpy re-implementation (clrp_reference.py).

Dense heads, Conv heads (1×1 and 3×3, several positions) and a hidden Conv explained with
``layer_name=``; every contrast; the parts in scale, not only the maps' shapes.
"""

from __future__ import annotations

import clrp_reference as ref
import keras
import numpy as np
import pytest

import tf_clrp

RNG = np.random.default_rng(12)
#: float32 against float64: max |difference| per sample, relative to that sample's max |ref|.
TOLERANCE = 1e-5
CONTRASTS = ["others", "others_uniform", "negated", "rival"]


def _randomize(model: keras.Model, seed: int) -> keras.Model:
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0, 0.5, tuple(w.shape)).astype("float32"))
    return model


def _stem() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """Input (8, 8, 3) -> Conv2D(4, 3, relu) -> MaxPooling2D: (input, 4×4×4 features)."""
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    return inp, keras.layers.MaxPooling2D()(h)


def dense_head() -> keras.Model:
    inp, h = _stem()
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(keras.layers.MaxPooling2D()(h))
    h = keras.layers.Dense(8, activation="relu")(h)
    return _randomize(keras.Model(inp, keras.layers.Dense(5)(h)), 1)


def conv_head(kernel: int) -> keras.Model:
    """A Conv2D(3, kernel) output of shape (4, 4, 3): 48 units, channels last."""
    inp, h = _stem()
    h = keras.layers.Conv2D(5, 3, padding="same", activation="relu")(h)
    out = keras.layers.Conv2D(3, kernel, padding="same")(h)
    return _randomize(keras.Model(inp, out), 2 + kernel)


def dense_on_features() -> keras.Model:
    """A Dense(3) applied to every position of 4×4×5 features: output (4, 4, 3)."""
    inp, h = _stem()
    h = keras.layers.Conv2D(5, 3, padding="same", activation="relu")(h)
    return _randomize(keras.Model(inp, keras.layers.Dense(3)(h)), 14)


def hidden_conv() -> keras.Model:
    """A classifier whose hidden Conv "hidden" has no fused activation."""
    inp, h = _stem()
    h = keras.layers.Conv2D(3, 3, padding="same", name="hidden")(h)
    h = keras.layers.Flatten()(keras.layers.ReLU()(h))
    return _randomize(keras.Model(inp, keras.layers.Dense(4)(h)), 7)


def _truncated(model: keras.Model, name: str) -> keras.Model:
    return keras.Model(model.inputs, model.get_layer(name).output)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return RNG.uniform(0, 1, (4, 8, 8, 3)).astype("float32")


def _bounds(x: np.ndarray, fixed: bool) -> tuple[np.ndarray, np.ndarray]:
    if fixed:
        return np.zeros_like(x, np.float64), np.ones_like(x, np.float64)
    low = x.min(axis=(1, 2), keepdims=True).astype(np.float64)
    high = x.max(axis=(1, 2), keepdims=True).astype(np.float64)
    return np.broadcast_to(low, x.shape), np.broadcast_to(high, x.shape)


def _rivals(targets: list[int], n: int) -> list[int]:
    return [
        (t + 1 + 7 * i) % n if (t + 1 + 7 * i) % n != t else (t + 2) % n
        for i, t in enumerate(targets)
    ]


def assert_close(
    got: np.ndarray, want: np.ndarray, what: str, tolerance: float = TOLERANCE
) -> None:
    """Per sample: max |got − want| <= tolerance · max |want| (and the same shape)."""
    assert got.shape == want.shape, (what, got.shape, want.shape)
    for i, (g, w) in enumerate(zip(got, want)):
        scale = np.abs(w).max()
        assert scale > 0, f"{what}: reference sample {i} is all zero (degenerate test)"
        err = np.abs(g - w).max() / scale
        assert err <= tolerance, f"{what}, sample {i}: max|diff| = {err:.2e} of max|ref|"


def _check_clrp(
    model: keras.Model,
    x: np.ndarray,
    targets: list[int],
    contrast: str,
    fixed_bounds: bool = True,
    **options,
) -> None:
    layers = ref.layers_of(
        model if "layer_name" not in options else _truncated(model, options["layer_name"])
    )
    n = ref.logits(layers, x).shape[1]
    wanted = _rivals(targets, n) if contrast == "rival" else contrast
    low, high = _bounds(x, fixed_bounds)
    expected = ref.clrp(layers, x, targets, wanted, low, high)
    analyzer = tf_clrp.create_analyzer(
        "clrp",
        model,
        contrast=wanted,
        input_layer_rule=(0.0, 1.0) if fixed_bounds else None,
        **options,
    )
    parts = analyzer.analyze(x, neuron_selection=targets, return_parts=True)
    for part in ("target", "dual", "difference", "contrastive"):
        assert_close(getattr(parts, part), expected[part], f"{contrast}/{part}")


@pytest.mark.parametrize("contrast", CONTRASTS)
@pytest.mark.parametrize("fixed_bounds", [True, False])
def test_dense_head_matches_the_reference(x, contrast, fixed_bounds) -> None:
    _check_clrp(dense_head(), x, [1, 0, 3, 2], contrast, fixed_bounds)


@pytest.mark.parametrize("chunk", [1, 3])
def test_per_sample_rivals_in_chunks_match_the_reference(x, chunk) -> None:
    """One rival per sample, processed in chunks: each chunk gets its own samples' rivals."""
    _check_clrp(dense_head(), x, [1, 0, 3, 2], "rival", batch_size=chunk)


@pytest.mark.parametrize("contrast", CONTRASTS)
@pytest.mark.parametrize("kernel", [1, 3])
def test_conv_head_matches_the_reference(x, contrast, kernel) -> None:
    """Several positions × channels: real and virtual (negated) units must not interleave."""
    _check_clrp(conv_head(kernel), x, [5, 17, 34, 46], contrast)


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_dense_on_a_3d_input_matches_the_reference(x, contrast) -> None:
    _check_clrp(dense_on_features(), x, [5, 17, 34, 46], contrast)


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_hidden_conv_without_activation_matches_the_reference(x, contrast) -> None:
    _check_clrp(hidden_conv(), x, [2, 13, 40, 47], contrast, layer_name="hidden")


@pytest.mark.parametrize("kernel", [1, 3])
def test_max_activation_on_a_conv_head_selects_the_largest_output(x, kernel) -> None:
    model = conv_head(kernel)
    layers = ref.layers_of(model)
    winners = ref.logits(layers, x).argmax(axis=1)
    analyzer = tf_clrp.create_analyzer("clrp", model, input_layer_rule=(0.0, 1.0))
    prepared = analyzer.prepare(x)[1]
    np.testing.assert_array_equal(analyzer.resolve_max_activation(x, prepared).indices, winners)
    got = analyzer.analyze(x, return_parts=True)
    low, high = _bounds(x, True)
    expected = ref.clrp(layers, x, list(winners), "others", low, high)
    for part in ("target", "dual", "contrastive"):
        assert_close(getattr(got, part), expected[part], f"arg-max/{part}")


def test_sglrp_matches_the_reference(x) -> None:
    model = dense_head()
    layers = ref.layers_of(model)
    low, high = _bounds(x, True)
    targets = [1, 0, 4, 2]
    expected = ref.sglrp(layers, x, targets, low, high)
    parts = tf_clrp.create_analyzer("sglrp", model, input_layer_rule=(0.0, 1.0)).analyze(
        x, neuron_selection=targets, return_parts=True
    )
    for part in ("target", "dual", "difference", "contrastive"):
        assert_close(getattr(parts, part), expected[part], f"sglrp/{part}", 1e-4)


def _confident(scale: float) -> keras.Model:
    """dense_head with its logits multiplied by ``scale``."""
    model = dense_head()
    head = model.layers[-1]
    head.kernel.assign(head.kernel.numpy() * scale)
    head.bias.assign(head.bias.numpy() * scale)
    return model


def test_sglrp_is_exact_when_the_target_probability_rounds_to_one(x) -> None:
    """Logits × 20: p_t is 1.0 in float32 for three samples, 1 − p_t down to 5e-25."""
    model = _confident(20.0)
    layers = ref.layers_of(model)
    z = ref.logits(layers, x)
    targets = list(z.argmax(axis=1))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    rest = np.where(e == 1, 0, e).sum(axis=1) / e.sum(axis=1)  # 1 − p_t, no cancellation
    p_t32 = np.float32(1) / (np.float32(1) + rest.astype(np.float32))
    assert (p_t32 == 1).sum() >= 3 and rest.min() > 1e-30
    low, high = _bounds(x, True)
    expected = ref.sglrp(layers, x, targets, low, high)
    parts = tf_clrp.create_analyzer("sglrp", model, input_layer_rule=(0.0, 1.0)).analyze(
        x, neuron_selection=targets, return_parts=True
    )
    for part in ("target", "dual", "difference"):
        assert_close(getattr(parts, part), expected[part], f"sglrp×30/{part}", 1e-3)


def test_sglrp_refuses_an_underflowing_softmax_gradient(x) -> None:
    model = _confident(3000.0)
    analyzer = tf_clrp.create_analyzer("sglrp", model, input_layer_rule=(0.0, 1.0))
    with pytest.raises(tf_clrp.InputError, match=r"sample 0's softmax gradient .* below 1e-30"):
        analyzer.analyze(x)
