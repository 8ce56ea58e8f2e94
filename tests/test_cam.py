"""Grad-CAM, Grad-CAM++, Layer-CAM and Guided Grad-CAM against direct tape references.

The references take the feature map and the logits from plain Keras calls (a sub-model, or
for nested models the base and the head called one after the other — the usual workaround
for "graph disconnected"), the gradient from a tf.GradientTape, and the CAM formulas in
float64 numpy, written out here from the papers.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import mlp, randomize
from skimage.transform import resize

import tf_clrp
from tf_clrp.analyzers.cam import token_grid
from tf_clrp.errors import ModelStructureError, SelectionError

METHODS = ("grad_cam", "grad_cam_plus_plus", "layer_cam")


# ----------------------------------------------------------------------------- references
def numpy_cam(method: str, features: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """(B, h, w, K) feature maps and gradients → (B, h, w) CAMs, float64."""
    a = features.astype(np.float64)
    g = grads.astype(np.float64)
    if method == "grad_cam":
        alpha = g.mean(axis=(1, 2))  # global-average-pooled gradients
        return np.maximum(np.einsum("bk,bhwk->bhw", alpha, a), 0.0)
    if method == "grad_cam_plus_plus":
        total = a.sum(axis=(1, 2))  # Σ_ab A_kab
        num = g**2
        den = 2.0 * g**2 + total[:, None, None, :] * g**3
        coef = np.where(den != 0.0, num / np.where(den != 0.0, den, 1.0), 0.0)
        weights = (coef * np.maximum(g, 0.0)).sum(axis=(1, 2))
        return np.maximum(np.einsum("bk,bhwk->bhw", weights, a), 0.0)
    return np.maximum((np.maximum(g, 0.0) * a).sum(axis=-1), 0.0)  # layer_cam


def tape_features_and_grads(
    forward, x: np.ndarray, seeds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``forward(x) -> (A, z)`` evaluated under a tape; returns A, ∂(Σ seeds·z)/∂A, z."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        features, logits = forward(x)
        tape.watch(features)
        score = tf.reduce_sum(logits * tf.constant(seeds, tf.float32))
    grads = tape.gradient(score, features)
    return features.numpy(), grads.numpy(), logits.numpy()


def one_hot(indices: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[indices]


def cnn() -> keras.Model:
    """Conv-ReLU ×2 (non-square maps), a last max pooling, GAP, logits, softmax."""
    inp = keras.Input((12, 10, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inp)
    h = keras.layers.Conv2D(6, 3, activation="relu", name="last_conv")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    z = keras.layers.Dense(5, name="logits")(h)
    model = keras.Model(inp, keras.layers.Activation("softmax")(z))
    randomize(model)
    return model


def cnn_forward(model: keras.Model, layer: str = "last_conv"):
    sub = keras.Model(
        model.input, [model.get_layer(layer).output, model.get_layer("logits").output]
    )
    return lambda x: sub(x, training=False)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(4, 12, 10, 3)).astype(np.float32)


# ----------------------------------------------------------------------------- small CNN
@pytest.mark.parametrize("method", METHODS)
def test_raw_cam_matches_tape_reference(method: str, images: np.ndarray) -> None:
    model = cnn()
    targets = np.array([0, 3, 1, 4])
    features, grads, _ = tape_features_and_grads(cnn_forward(model), images, one_hot(targets, 5))
    expected = numpy_cam(method, features, grads)
    analyzer = tf_clrp.create_analyzer(method, model, upsample=False)
    assert analyzer.layer_name == "last_conv"  # found automatically, pooling skipped
    got = analyzer.analyze(images, neuron_selection=targets)
    assert got.shape == (4, 10, 8) and expected.max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_max_activation_and_chunks_match_explicit_targets(images: np.ndarray) -> None:
    model = cnn()
    analyzer = tf_clrp.create_analyzer("grad_cam", model, upsample=False)
    _, _, logits = tape_features_and_grads(cnn_forward(model), images, one_hot([0] * 4, 5))
    explicit = analyzer.analyze(images, neuron_selection=logits.argmax(axis=1))
    np.testing.assert_allclose(analyzer.analyze(images, batch_size=3), explicit, rtol=1e-6)


def test_upsampling_is_bilinear_spread_over_channels(images: np.ndarray) -> None:
    model = cnn()
    raw = tf_clrp.create_analyzer("grad_cam", model, upsample=False).analyze(images, 2)
    maps = tf_clrp.create_analyzer("grad_cam", model).analyze(images, 2)
    assert maps.shape == images.shape
    expected = np.stack(
        [
            resize(r.astype(np.float64), (12, 10), order=1, mode="edge", anti_aliasing=False)
            for r in raw
        ]
    )
    np.testing.assert_allclose(maps.sum(axis=-1), expected, rtol=1e-5, atol=1e-6 * expected.max())
    np.testing.assert_array_equal(maps[..., 0], maps[..., 2])


def test_layer_name_picks_the_feature_map(images: np.ndarray) -> None:
    model = cnn()
    targets = np.array([2, 2, 0, 1])
    features, grads, _ = tape_features_and_grads(
        cnn_forward(model, "conv_a"), images, one_hot(targets, 5)
    )
    got = tf_clrp.create_analyzer("layer_cam", model, layer_name="conv_a", upsample=False).analyze(
        images, targets
    )
    expected = numpy_cam("layer_cam", features, grads)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * expected.max())


def test_float_seed_selection_is_the_output_gradient(images: np.ndarray) -> None:
    model = cnn()
    seeds = np.random.default_rng(3).normal(size=(4, 5)).astype(np.float32)
    features, grads, _ = tape_features_and_grads(cnn_forward(model), images, seeds)
    got = tf_clrp.create_analyzer("grad_cam", model, upsample=False).analyze(images, seeds)
    expected = numpy_cam("grad_cam", features, grads)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * expected.max())


@pytest.mark.parametrize("contrast", ["others", "others_uniform", 3])
def test_contrastive_grad_cam_subtracts_the_dual(contrast, images: np.ndarray) -> None:
    model = cnn()
    targets = np.array([0, 1, 2, 4])
    forward = cnn_forward(model)
    _, _, logits = tape_features_and_grads(forward, images, one_hot(targets, 5))
    target = one_hot(targets, 5)
    if contrast == "others":
        dual = np.abs(logits) * (1 - target)
    elif contrast == "others_uniform":
        dual = 1.0 - target
    else:
        dual = one_hot(np.full(4, contrast), 5)
    dual = dual / dual.sum(axis=1, keepdims=True)
    features, grads_t, _ = tape_features_and_grads(forward, images, target)
    _, grads_d, _ = tape_features_and_grads(forward, images, dual.astype(np.float32))
    # Grad-CAM is linear before its ReLU: relu(L_target - L_dual)
    alpha = grads_t.astype(np.float64).mean(axis=(1, 2)) - grads_d.mean(axis=(1, 2))
    expected = np.maximum(np.einsum("bk,bhwk->bhw", alpha, features.astype(np.float64)), 0)
    got = tf_clrp.create_analyzer("grad_cam", model, upsample=False, contrast=contrast).analyze(
        images, targets
    )
    assert expected.max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * expected.max())


def test_contrast_errors() -> None:
    model = cnn()
    with pytest.raises(SelectionError, match="negated"):
        tf_clrp.create_analyzer("grad_cam", model, contrast="negated")
    with pytest.raises(SelectionError, match="out of range"):
        tf_clrp.create_analyzer("grad_cam", model, contrast=9)


def guided_reference(model: keras.Model, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Guided Backprop by hand: the same weights, ReLUs with a guided backward."""

    @tf.custom_gradient
    def guided_relu(v):
        def grad(g):
            return g * tf.cast(v > 0, g.dtype) * tf.cast(g > 0, g.dtype)

        return tf.nn.relu(v), grad

    def conv(layer, v, padding):
        kernel, bias = layer.get_weights()
        return tf.nn.conv2d(v, kernel, 1, padding) + bias

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        h = guided_relu(conv(model.get_layer("conv_a"), xt, "SAME"))
        h = guided_relu(conv(model.get_layer("last_conv"), h, "VALID"))
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        kernel, bias = model.get_layer("logits").get_weights()
        z = tf.reduce_mean(h, axis=(1, 2)) @ kernel + bias
        score = tf.reduce_sum(z * one_hot(targets, 5))
    return tape.gradient(score, xt).numpy()


def test_guided_grad_cam_is_guided_backprop_times_upsampled_cam(images: np.ndarray) -> None:
    model = cnn()
    targets = np.array([1, 0, 3, 3])
    features, grads, _ = tape_features_and_grads(cnn_forward(model), images, one_hot(targets, 5))
    cam = numpy_cam("grad_cam", features, grads)
    upsampled = np.stack(
        [resize(c, (12, 10), order=1, mode="edge", anti_aliasing=False) for c in cam]
    )
    expected = guided_reference(model, images, targets) * upsampled[..., None]
    got = tf_clrp.create_analyzer("guided_grad_cam", model).analyze(images, targets)
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)


def test_hidden_units_with_explained_layer(images: np.ndarray) -> None:
    inp = keras.Input((12, 10, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="feat")(inp)
    h = keras.layers.Flatten()(h)
    hidden = keras.layers.Dense(7, activation="relu", name="hidden")(h)
    model = keras.Model(inp, keras.layers.Dense(3)(hidden))
    randomize(model)
    sub = keras.Model(inp, [model.get_layer("feat").output, hidden])
    features, grads, _ = tape_features_and_grads(
        lambda x: sub(x), images, one_hot(np.full(4, 5), 7)
    )
    got = tf_clrp.create_analyzer(
        "grad_cam", model, explained_layer="hidden", upsample=False
    ).analyze(images, 5)
    expected = numpy_cam("grad_cam", features, grads)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * expected.max())


# ----------------------------------------------------------------------------- nested models
def mobilenet_base() -> keras.Model:
    return keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), include_top=False, weights=None, alpha=0.35
    )


@pytest.mark.parametrize(
    "head, method", [("functional", m) for m in METHODS] + [("sequential", "grad_cam")]
)
def test_nested_transfer_learning_model(head: str, method: str) -> None:
    base = mobilenet_base()
    pool = keras.layers.GlobalAveragePooling2D()
    dense = keras.layers.Dense(4)
    if head == "functional":
        inp = keras.Input((64, 64, 3))
        model = keras.Model(inp, dense(pool(base(inp))))
    else:
        model = keras.Sequential([keras.Input((64, 64, 3)), base, pool, dense])
    x = np.random.default_rng(2).uniform(-1, 1, size=(3, 64, 64, 3)).astype(np.float32)
    targets = np.array([0, 2, 3])

    def forward(t):  # base, then head: no sub-model across the nesting
        features = base(t, training=False)
        return features, dense(pool(features))

    features, grads, _ = tape_features_and_grads(forward, x, one_hot(targets, 4))
    expected = numpy_cam(method, features, grads)
    analyzer = tf_clrp.create_analyzer(method, model, upsample=False)
    assert analyzer.layer_name == f"{base.name}/out_relu"
    got = analyzer.analyze(x, targets)
    assert expected.max() > 0
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5 * expected.max())


# ----------------------------------------------------------------------------- token grids
def test_token_grid_of_a_vit_like_model() -> None:
    inp = keras.Input((8, 12, 3))
    h = keras.layers.Conv2D(5, 2, strides=2, name="patchify")(inp)  # 4 × 6 patches
    h = keras.layers.Reshape((24, 5))(h)
    h = keras.layers.Dense(6, activation="relu", name="tokens")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(h))
    randomize(model)
    x = np.random.default_rng(4).normal(size=(2, 8, 12, 3)).astype(np.float32)
    sub = keras.Model(inp, [model.get_layer("tokens").output, model.get_layer("logits").output])
    features, grads, _ = tape_features_and_grads(lambda t: sub(t), x, one_hot([1, 2], 3))
    expected = numpy_cam("grad_cam", features.reshape(2, 4, 6, 6), grads.reshape(2, 4, 6, 6))
    analyzer = tf_clrp.create_analyzer("grad_cam", model, upsample=False)
    assert analyzer.layer_name == "tokens"
    np.testing.assert_allclose(
        analyzer.analyze(x, [1, 2]), expected, rtol=1e-4, atol=1e-5 * expected.max()
    )
    assert token_grid(197, (224, 224)) == (14, 14, 1)
    assert token_grid(196, (224, 224)) == (14, 14, 0)
    assert token_grid(7, (224, 224)) is None


def test_non_spatial_models_get_a_clear_error() -> None:
    with pytest.raises(ModelStructureError, match="no layer with a spatial output"):
        tf_clrp.create_analyzer("grad_cam", mlp())
    with pytest.raises(ModelStructureError, match="logits.*output shape"):
        tf_clrp.create_analyzer("grad_cam", cnn(), layer_name="logits")
    with pytest.raises(ModelStructureError, match="no layer named"):
        tf_clrp.create_analyzer("grad_cam", cnn(), layer_name="nope")


def test_registry_options_are_exact() -> None:
    with pytest.raises(TypeError, match="layer_rules"):
        tf_clrp.create_analyzer("grad_cam", cnn(), layer_rules={})
    with pytest.raises(ValueError, match="method"):
        tf_clrp.create_analyzer("layer_cam", cnn(), method="grad_cam")
    assert {"grad_cam", "grad_cam_plus_plus", "layer_cam", "guided_grad_cam", "rise"} <= set(
        tf_clrp.list_analyzers()
    )


def test_user_model_untouched(images: np.ndarray) -> None:
    model = cnn()
    before = [w.copy() for w in model.get_weights()]
    n_layers = len(model.layers)
    for method in (*METHODS, "guided_grad_cam"):
        tf_clrp.create_analyzer(method, model).analyze(images)
    assert len(model.layers) == n_layers
    for a, b in zip(before, model.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_heatmap_callback_explains_with_cams(tmp_path, images: np.ndarray) -> None:
    from tf_clrp.callbacks import HeatmapCallback

    model = cnn()
    callback = HeatmapCallback(
        images[:2],
        classes=[1, 3],
        methods=["grad_cam", ("rise", {"n_masks": 8})],
        log_dir=tmp_path,
        tensorboard=False,
    )
    callback.set_model(model)
    maps, targets = callback.explain()
    assert not callback.failed and list(targets) == [1, 3]
    features, grads, _ = tape_features_and_grads(
        cnn_forward(model), images[:2], one_hot(np.array([1, 3]), 5)
    )
    raw = numpy_cam("grad_cam", features, grads)
    expected = np.stack(
        [resize(r, (12, 10), order=1, mode="edge", anti_aliasing=False) for r in raw]
    )
    np.testing.assert_allclose(
        maps["grad_cam"].sum(axis=-1), expected, rtol=1e-4, atol=1e-5 * expected.max()
    )
    assert maps["rise(n_masks=8)"].shape == images[:2].shape


def test_per_sample_contrast_is_chunked_with_the_batch(images: np.ndarray) -> None:
    analyzer = tf_clrp.create_analyzer("grad_cam", cnn(), upsample=False)
    rivals = np.array([1, 2, 3, 0])
    whole = analyzer.analyze(images, [0, 1, 2, 3], contrast=rivals)
    chunked = analyzer.analyze(images, [0, 1, 2, 3], contrast=rivals, batch_size=3)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)
    single = analyzer.analyze(images[3:], [3], contrast=0)
    np.testing.assert_allclose(whole[3:], single, rtol=1e-5, atol=1e-7)


def test_a_feature_map_the_output_ignores_is_warned_about_not_drawn_silently() -> None:
    """An explained unit that is inactive (ReLU at 0) has a zero gradient on every feature,
    so its CAM is an all-zero map: the samples are named in a warning, not drawn silently."""
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, activation="relu", name="feat")(inp)
    dead = keras.layers.Dense(
        2, activation="relu", name="dead", bias_initializer=keras.initializers.Constant(-100.0)
    )
    model = keras.Model(inp, dead(keras.layers.Flatten()(h)))
    x = np.random.default_rng(0).uniform(size=(2, 6, 6, 2)).astype("float32")
    analyzer = tf_clrp.create_analyzer("grad_cam", model, layer_name="feat", upsample=False)
    with pytest.warns(
        RuntimeWarning,
        match=r"sample\(s\) \[0, 1\] .*does not depend on the "
        r"feature map of layer 'feat'",
    ):
        maps = analyzer.analyze(x, neuron_selection=1)
    assert not maps.any()


def test_per_sample_contrast_in_explain_dataset_is_indexed_by_sample(
    images: np.ndarray, tmp_path
) -> None:
    """``explain_dataset`` shards the batch; each sample keeps its own rival class."""
    from tf_clrp.datasets import explain_dataset

    analyzer = tf_clrp.create_analyzer("grad_cam", cnn())
    rivals = np.array([1, 2, 3, 0])
    result = explain_dataset(
        analyzer,
        images,
        tmp_path,
        shard_size=3,
        batch_size=2,
        neuron_selection=np.array([0, 1, 2, 3]),
        progress=False,
        analyze_kwargs={"contrast": rivals},
    )
    for i, rival in enumerate(rivals):
        alone = analyzer.analyze(images[i : i + 1], [i], contrast=int(rival))
        np.testing.assert_allclose(result.maps[i], alone[0], rtol=1e-5, atol=1e-7)
