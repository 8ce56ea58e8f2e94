"""Architecture coverage: real keras.applications models and hand-built modern blocks.

The fast tests (< 60 s together) explain small models eagerly and check, for each one:

* the mirrored (rule-bearing) model computes the user's logits;
* ``gradient`` equals autodiff of the user's model;
* with biases set to 0, ``lrp.z`` conserves the logit, and so does ``lrp.z_plus`` where
  every linear layer is followed by a ReLU (an active unit then has z⁺ ≥ z > 0);
* maps are finite.

The full matrix of ``benchmarks/coverage_matrix.py`` runs as ``@pytest.mark.slow``
(``pytest -m slow tests/test_coverage.py``). Tests marked ``xfail(strict=True)`` document
engine bugs; they start passing (and then fail as XPASS) once the bug is fixed.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import logits_of, randomize

import tf_clrp

L = keras.layers
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers
def _input_gradient(model: keras.Model, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """∂ logit_target / ∂x by autodiff of the user's model (softmax head removed)."""
    last = model.layers[-1]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        if getattr(last, "activation", None) is keras.activations.softmax:
            features = keras.Model(model.inputs, last.input)(xt)
            z = tf.matmul(features, tf.convert_to_tensor(last.kernel)) + tf.convert_to_tensor(
                last.bias
            )
        else:
            z = model(xt, training=False)
        z = tf.reshape(z, (len(x), -1))
        chosen = tf.reduce_sum(z * tf.one_hot(target, z.shape[1]))
    return tape.gradient(chosen, xt).numpy()


def check_model(
    model: keras.Model,
    x: np.ndarray,
    *,
    conserve: bool = True,
    analyzers: tuple[str, ...] = ("gradient", "lrp.z_plus"),
    rtol: float = 1e-4,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Runs the analyzers eagerly and asserts forward, gradient and conservation.

    Returns:
        The maps by analyzer name.
    """
    logits = logits_of(model, x).reshape(len(x), -1)
    target = logits.argmax(axis=1)
    maps = {}
    for name in analyzers:
        analyzer = tf_clrp.create_analyzer(name, model, use_tf_function=False, **options)
        forward = analyzer.mirror(tf.constant(x)).numpy().reshape(len(x), -1)
        np.testing.assert_allclose(
            forward,
            logits,
            rtol=1e-5,
            atol=1e-5 * np.abs(logits).max(),
            err_msg=f"{name}: mirrored forward != model logits",
        )
        relevance = analyzer.analyze(x, neuron_selection=target)
        assert relevance.shape == x.shape and np.isfinite(relevance).all(), name
        if name == "gradient":
            expected = _input_gradient(model, x, target)
            np.testing.assert_allclose(
                relevance, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max(), err_msg=name
            )
        elif conserve:
            seed = logits[np.arange(len(x)), target]
            np.testing.assert_allclose(
                relevance.reshape(len(x), -1).sum(axis=1),
                seed,
                rtol=rtol,
                atol=1e-6,
                err_msg=f"{name}: conservation",
            )
        maps[name] = relevance
    return maps


def functional(
    build: Callable[[Any], Any], shape: tuple[int, ...], *, biases: bool = True
) -> keras.Model:
    """keras.Model(inp, build(inp)) with randomized weights (biases zeroed if not ``biases``).

    Without biases (BatchNorm's β and moving mean included) a unit is active only if some
    input contributes positively, so z⁺ conserves relevance exactly; with random biases a
    unit switched on by its bias alone swallows the relevance it receives.
    """
    inp = keras.Input(shape)
    model = keras.Model(inp, build(inp))
    randomize(model)
    if not biases:
        for weight in model.weights:
            if weight.path.endswith(("bias", "beta", "moving_mean")):
                weight.assign(np.zeros(weight.shape, "float32"))
    return model


def check_block(
    build: Callable[[Any], Any], shape: tuple[int, ...], *, zplus_conserves: bool = True
) -> keras.Model:
    """Forward and gradient with random biases, LRP-0 (and z⁺) conservation without biases.

    Args:
        build: The block, from input tensor to logits.
        shape: Input shape.
        zplus_conserves: False when some linear layer's output reaches the next linear
            layer without a ReLU (a negative unit can then receive relevance and have
            z⁺ = 0, so z⁺ loses it).

    Returns:
        The model with random biases.
    """
    model = functional(build, shape)
    x = batch(model)
    check_model(model, x, conserve=False)
    bias_free = functional(build, shape, biases=False)
    check_model(bias_free, x, analyzers=("lrp.z",))
    if zplus_conserves:
        check_model(bias_free, x, analyzers=("lrp.z_plus",))
    return model


def batch(model: keras.Model, low: float = -1.0, high: float = 1.0, seed: int = 5) -> np.ndarray:
    """Two random inputs for the model (the same ones whatever the test order)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, (2, *model.input_shape[1:])).astype("float32")


# ----------------------------------------------------------------------------- real models
def test_resnet50_small() -> None:
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=4)
    check_model(model, batch(model))


def test_mobilenet_v2_small() -> None:
    model = keras.applications.MobileNetV2(
        weights=None, alpha=0.35, input_shape=(32, 32, 3), classes=4
    )
    check_model(model, batch(model))


def test_nested_sequential_transfer_model() -> None:
    base = keras.applications.VGG16(
        weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3)
    )
    model = keras.Sequential([keras.Input((32, 32, 3)), base, L.Dense(5)])
    x = batch(model)
    check_model(model, x)
    analyzer = tf_clrp.create_analyzer(
        "lrp.epsilon", model, input_layer_rule=(-1.0, 1.0), use_tf_function=False
    )
    first = [s.node.name for s in analyzer.mirror.steps if s.is_first]
    assert first == ["vgg16/block1_conv1"]
    parts = tf_clrp.create_analyzer("clrp", model, use_tf_function=False).analyze(
        x, neuron_selection=1, return_parts=True
    )
    assert parts.contrastive.min() >= 0.0 and np.isfinite(parts.difference).all()


# ----------------------------------------------------------------------------- blocks
def _dense_block(inp: Any) -> Any:
    h = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    for _ in range(2):
        y = L.BatchNormalization()(h)
        y = L.ReLU()(y)
        y = L.Conv2D(4, 3, padding="same", activation="relu")(y)
        h = L.Concatenate()([h, y])
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.Conv2D(8, 1, activation="relu")(h)
    h = L.AveragePooling2D(2)(h)
    return L.Dense(3)(L.GlobalAveragePooling2D()(h))


def test_densenet_style_concat_block() -> None:
    check_block(_dense_block, (8, 8, 3))


def _se_block(inp: Any, gate_first: bool = False) -> Any:
    h = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    g = L.GlobalAveragePooling2D()(h)
    g = L.Dense(4, activation="relu")(g)
    g = L.Dense(8, activation="sigmoid")(g)
    g = L.Reshape((1, 1, 8))(g)
    h = L.Multiply()([g, h] if gate_first else [h, g])
    h = L.Conv2D(8, 1, activation="relu")(h)
    return L.Dense(3)(L.GlobalAveragePooling2D()(h))


def test_se_block_gate_gets_no_relevance() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = check_block(_se_block, (8, 8, 3))
    # once per model: check_block builds the model and a bias-free twin
    assert sum("'sigmoid'" in str(w.message) for w in caught) == 2
    # The same model with the Multiply's inputs swapped: the gate is still found by shape,
    # and the relevance of the gate path is exactly zero in both.
    swapped = functional(lambda inp: _se_block(inp, gate_first=True), (8, 8, 3))
    swapped.set_weights(model.get_weights())
    x = batch(model)
    target = logits_of(model, x).argmax(axis=1)
    maps = [
        tf_clrp.create_analyzer("lrp.epsilon", m, use_tf_function=False).analyze(
            x, neuron_selection=target
        )
        for m in (model, swapped)
    ]
    np.testing.assert_allclose(maps[0], maps[1], rtol=1e-5, atol=1e-8)


def test_batch_norm_without_a_preceding_linear_layer() -> None:
    def build(inp: Any) -> Any:
        h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
        y = L.Conv2D(4, 3, padding="same", activation="relu")(h)
        h = L.Add()([h, y])
        h = L.BatchNormalization()(h)  # after Add: affine node
        h = L.ReLU()(h)
        h = L.Conv2D(4, 3, padding="same", activation="relu")(h)
        h = L.BatchNormalization()(h)  # after a fused ReLU: affine node
        return L.Dense(3)(L.Flatten()(L.ReLU()(h)))

    model = check_block(build, (6, 6, 3))
    graph = tf_clrp.analyzers.base.build_graph(model)
    assert sum(n.group == "batch_norm" for n in graph.nodes) == 2


def test_non_rectifier_activations_warn_once_and_conserve() -> None:

    def build(inp: Any) -> Any:
        h = L.Conv2D(4, 3, activation="swish")(inp)
        h = L.Conv2D(4, 3, activation="gelu")(h)
        h = keras.ops.hard_silu(L.Conv2D(4, 1)(h))
        h = L.Conv2D(4, 1, activation="swish")(h)
        return L.Dense(3)(L.GlobalAveragePooling2D()(h))

    model = functional(build, (8, 8, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_model(
            model, batch(model), analyzers=("lrp.z_plus", "lrp.epsilon_plus"), conserve=False
        )
    names = sorted(
        str(w.message).split("activation '")[1].split("'")[0]
        for w in caught
        if "non-rectifier" in str(w.message)
    )
    assert names == ["gelu", "hard_silu", "silu"]


def test_guided_backprop_through_swish_is_not_all_zero() -> None:
    def build(inp: Any) -> Any:
        h = L.Conv2D(8, 3, activation="swish")(inp)
        h = L.Conv2D(8, 3, activation="swish")(h)
        return L.Dense(3)(L.GlobalAveragePooling2D()(h))

    model = functional(build, (8, 8, 3))
    x = batch(model)
    guided = tf_clrp.create_analyzer("guided_backprop", model, use_tf_function=False).analyze(
        x, neuron_selection=0
    )
    assert np.isfinite(guided).all()
    assert np.abs(guided).reshape(len(x), -1).max(axis=1).min() > 0.0


# ----------------------------------------------------------------------------- layers
def _conv1d(inp: Any) -> Any:
    h = L.Conv1D(4, 3, activation="relu")(inp)
    h = L.Conv1D(4, 3, strides=2, activation="relu")(h)
    return L.Dense(3)(L.Flatten()(h))


def _conv1d_causal(inp: Any) -> Any:
    h = L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu")(inp)
    return L.Dense(3)(L.Flatten()(h))


def _conv3d(inp: Any) -> Any:
    h = L.Conv3D(3, 2, activation="relu")(inp)
    return L.Dense(3)(L.Flatten()(h))


def _conv2d_transpose(inp: Any) -> Any:
    h = L.Conv2D(4, 3, activation="relu")(inp)
    h = L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu")(h)
    return L.Dense(3)(L.Flatten()(h))


def _depthwise(inp: Any) -> Any:
    h = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, activation="relu")(inp)
    return L.Dense(3)(L.Flatten()(h))


def _separable(inp: Any) -> Any:
    h = L.SeparableConv2D(4, 3, depth_multiplier=2, activation="relu")(inp)
    return L.Dense(3)(L.Flatten()(h))


def _upsampling(inp: Any) -> Any:
    h = L.Conv2D(3, 3, activation="relu")(inp)
    h = L.UpSampling2D(2)(h)
    h = L.Conv2D(3, 3, activation="relu")(h)
    return L.Dense(3)(L.Flatten()(h))


def _padding_cropping(inp: Any) -> Any:
    h = L.ZeroPadding2D(((1, 2), (2, 1)))(inp)
    h = L.Conv2D(4, 3, activation="relu")(h)
    h = L.Cropping2D(((1, 0), (0, 2)))(h)
    return L.Dense(3)(L.Flatten()(h))


def _layer_norm(inp: Any) -> Any:
    h = L.Conv2D(4, 3, activation="relu")(inp)
    h = L.LayerNormalization()(h)
    return L.Dense(3)(L.Flatten()(L.ReLU()(h)))


def _prelu(inp: Any) -> Any:
    h = L.PReLU()(L.Conv2D(4, 3)(inp))
    return L.Dense(3)(L.Flatten()(L.ReLU()(h)))


LAYER_CASES = [
    pytest.param(_conv1d, (10, 3), id="Conv1D"),
    pytest.param(_conv1d_causal, (10, 3), id="Conv1D-causal"),
    pytest.param(_conv3d, (4, 4, 4, 2), id="Conv3D"),
    pytest.param(_conv2d_transpose, (6, 6, 2), id="Conv2DTranspose"),
    pytest.param(_depthwise, (7, 7, 3), id="DepthwiseConv2D"),
    pytest.param(_separable, (7, 7, 3), id="SeparableConv2D"),
    pytest.param(_upsampling, (6, 6, 2), id="UpSampling2D"),
    pytest.param(_padding_cropping, (6, 6, 2), id="ZeroPadding2D+Cropping2D"),
    pytest.param(_layer_norm, (6, 6, 2), id="LayerNormalization"),
    pytest.param(_prelu, (6, 6, 2), id="PReLU"),
]


@pytest.mark.parametrize("build,shape", LAYER_CASES)
def test_layer(build: Callable[[Any], Any], shape: tuple[int, ...]) -> None:
    # SeparableConv2D: the depthwise output reaches the pointwise kernel without a ReLU.
    check_block(build, shape, zplus_conserves=build is not _separable)


# ----------------------------------------------------------------------------- preprocessing
def _first_conv_model(
    preprocess: list[keras.layers.Layer], shared: list[keras.layers.Layer]
) -> keras.Model:
    inp = keras.Input((6, 6, 3))
    h = inp
    for layer in [*preprocess, *shared]:
        h = layer(h)
    return keras.Model(inp, h)


def _shared_layers(padding: int = 0) -> list[keras.layers.Layer]:
    pad = [L.ZeroPadding2D(padding)] if padding else []
    return [*pad, L.Conv2D(4, 3, activation="relu", name="first_conv"), L.Flatten(), L.Dense(3)]


def _bounds_case(
    preprocess: list[keras.layers.Layer],
    scale: np.ndarray,
    shift: np.ndarray,
    padding: int = 0,
    name: str = "lrp.epsilon",
) -> None:
    """input_layer_rule=(0, 255) through ``preprocess`` (x -> x·scale + shift) equals the
    same layers explained on preprocessed input with bounds (0·scale + shift, 255·scale +
    shift): the first conv gets z^B with the bounds mapped through the preprocessing.
    """
    shared = _shared_layers(padding)
    with_pre = _first_conv_model(preprocess, shared)
    without = _first_conv_model([], shared)
    randomize(without)
    x = np.random.default_rng(7).uniform(0, 255, (2, 6, 6, 3)).astype("float32")
    x_pre = (x * scale + shift).astype("float32")
    np.testing.assert_allclose(
        logits_of(with_pre, x), logits_of(without, x_pre), rtol=1e-5, atol=1e-5
    )
    low, high = 0.0 * scale + shift, 255.0 * scale + shift
    analyzer = tf_clrp.create_analyzer(
        name, with_pre, input_layer_rule=(0.0, 255.0), use_tf_function=False
    )
    assert [s.node.name for s in analyzer.mirror.steps if s.is_first] == ["first_conv"]
    ours = analyzer.analyze(x, neuron_selection=1)
    reference = tf_clrp.create_analyzer(
        name,
        without,
        input_layer_rule=(np.minimum(low, high), np.maximum(low, high)),
        use_tf_function=False,
    ).analyze(x_pre, neuron_selection=1)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())


def test_rescaling_maps_the_first_layer_bounds() -> None:
    _bounds_case([L.Rescaling(1.0 / 255.0)], np.full(3, 1 / 255.0), np.zeros(3))


def test_normalization_maps_per_channel_bounds() -> None:
    mean, var = np.array([120.0, 110.0, 100.0]), np.array([3600.0, 2500.0, 4900.0])
    norm = L.Normalization(mean=mean, variance=var)
    _bounds_case([norm], 1 / np.sqrt(var), -mean / np.sqrt(var))


def test_rescaling_offset_then_padding_maps_bounds() -> None:
    # EfficientNet/MobileNetV3-style stem: Rescaling(scale, offset) -> ZeroPadding2D -> conv
    _bounds_case(
        [L.Rescaling(1.0 / 127.5, offset=-1.0)], np.full(3, 1 / 127.5), np.full(3, -1.0), padding=1
    )


def test_clrp_per_sample_bounds_go_through_rescaling() -> None:
    shared = _shared_layers()
    with_pre = _first_conv_model([L.Rescaling(1.0 / 255.0)], shared)
    without = _first_conv_model([], shared)
    randomize(without)
    x = np.random.default_rng(7).uniform(0, 255, (2, 6, 6, 3)).astype("float32")
    ours = tf_clrp.create_analyzer("clrp", with_pre, use_tf_function=False).analyze(
        x, neuron_selection=0, return_parts=True
    )
    ref = tf_clrp.create_analyzer("clrp", without, use_tf_function=False).analyze(
        x / 255.0, neuron_selection=0, return_parts=True
    )
    np.testing.assert_allclose(ours.target, ref.target, rtol=1e-4, atol=1e-7)


def test_batch_norm_at_the_input_maps_bounds() -> None:
    bn = L.BatchNormalization(epsilon=1e-3)
    mean, var = np.array([100.0, 120.0, 130.0]), np.array([900.0, 1600.0, 2500.0])
    gamma, beta = np.array([1.0, -2.0, 3.0]), np.array([0.1, 0.2, 0.3])
    bn.build((None, 6, 6, 3))
    bn.set_weights([gamma, beta, mean, var])
    scale = gamma / np.sqrt(var + 1e-3)
    _bounds_case([bn], scale, beta - mean * scale)


# ----------------------------------------------------------------------------- non-Layer ops
def _ops_graph(inp: Any) -> Any:
    a = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.ops.relu(L.Conv2D(4, 1)(a + b))
    h = keras.ops.concatenate([h, a], axis=-1)
    gate = keras.ops.sigmoid(L.Dense(8)(L.GlobalAveragePooling2D(keepdims=True)(h)))
    h = h * gate
    h = keras.ops.transpose(keras.ops.reshape(h, (-1, 36, 8)), (0, 2, 1))
    return L.Dense(3)(L.Flatten()(h))


def test_keras_ops_are_followed() -> None:
    check_block(_ops_graph, (6, 6, 2))


def test_adding_a_constant_keeps_the_forward() -> None:
    def build(inp: Any) -> Any:
        h = L.Conv2D(4, 3, activation="relu")(inp)
        h = keras.ops.relu(L.Conv2D(4, 1)(h) + 3.0) * (1.0 / 6.0)  # MobileNetV3 hard_sigmoid
        return L.Dense(3)(L.Flatten()(h))

    model = functional(build, (6, 6, 2))
    check_model(model, batch(model), conserve=False)


@pytest.mark.parametrize(
    "op,kind", [(lambda a, b: a - b, "Subtract"), (lambda a, b: keras.ops.mean(a, axis=1), "Mean")]
)
def test_unsupported_ops_name_the_escape_hatch(op: Callable[[Any, Any], Any], kind: str) -> None:
    inp = keras.Input((4, 5))
    h = op(L.Dense(5)(inp), L.Dense(5)(inp))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(h)))
    with pytest.raises(tf_clrp.UnsupportedLayerError, match=f"{kind}.*layer_rules"):
        tf_clrp.create_analyzer("lrp.z_plus", model)


# ----------------------------------------------------------------------------- full matrix
def _load_matrix() -> Any:
    path = ROOT / "benchmarks" / "coverage_matrix.py"
    spec = importlib.util.spec_from_file_location("coverage_matrix", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["coverage_matrix"] = module
    spec.loader.exec_module(module)
    return module


_KNOWN: dict[str, str] = {}  # model -> reason for a known failure (none left)
_MATRIX_MODELS = (
    "VGG16",
    "VGG19",
    "ResNet50",
    "ResNet50V2",
    "InceptionV3",
    "Xception",
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Small",
    "DenseNet121",
    "EfficientNetB0",
    "ConvNeXtTiny",
    "NASNetMobile",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,variant",
    [
        pytest.param(
            name,
            variant,
            id=f"{name}-{variant}",
            marks=[pytest.mark.xfail(strict=True, reason=_KNOWN[name])] if name in _KNOWN else [],
        )
        for name in _MATRIX_MODELS
        for variant in ("plain", "nested")
    ],
)
def test_coverage_matrix(name: str, variant: str) -> None:
    matrix = _load_matrix()
    row = matrix.run_model(name, variant, list(matrix.ANALYZERS))
    assert "cells" in row, row.get("error")
    for cell in row["cells"]:
        label = cell["analyzer"]
        assert cell["ok"], f"{label}: {cell.get('error')}"
        assert cell["forward_rel"] < matrix.FORWARD_TOL, f"{label}: forward {cell['forward_rel']}"
        assert cell["finite"] and cell["nonzero"], label
        if cell.get("promised"):
            assert cell["conservation"] < matrix.CONSERVATION_TOL, (label, cell["conservation"])
        if "gradient_rel" in cell:
            assert cell["gradient_rel"] < matrix.GRADIENT_TOL, cell["gradient_rel"]


# ----------------------------------------------------------------------------- any model
_GRADIENT_FAMILY = {"gradient", "input_t_gradient", "integrated_gradients", "smoothgrad"}
_ANY_MODEL_FAST = (
    "Keras ViT (Conv2D + MultiHeadAttention)",
    "Keras text (Embedding + MultiHeadAttention)",
    "CNN with a subclassed block",
)
_ANY_MODEL_KERAS_HUB = (
    "keras_hub ViTImageClassifier",
    "keras_hub DeiTImageClassifier",
    "keras_hub BertTextClassifier",
)


def _check_any_model_row(name: str) -> dict[str, dict[str, Any]]:
    """Every analyzer works (forward, finite, non-zero, gradient == autodiff) or refuses
    with an error naming the layer or op by its path."""
    _load_matrix()
    import coverage_any_model as any_model

    row = any_model.run_model(name, list(any_model.ANALYZERS))
    assert "cells" in row, row.get("error")
    cells = {c["analyzer"]: c for c in row["cells"]}
    for label, cell in cells.items():
        if not cell["ok"]:
            assert cell["names_layer"], (label, cell["error"])
            continue
        assert cell["forward_rel"] <= any_model.FORWARD_TOL, (label, cell["forward_rel"])
        assert cell["finite"] and cell["nonzero"], label
        if "gradient_rel" in cell:
            assert cell["gradient_rel"] <= any_model.GRADIENT_TOL, cell["gradient_rel"]
    assert all(cells[n]["ok"] for n in _GRADIENT_FAMILY), cells
    return cells


@pytest.mark.parametrize("name", _ANY_MODEL_FAST)
def test_any_model_row(name: str) -> None:
    cells = _check_any_model_row(name)
    if name == "CNN with a subclassed block":  # walked inside: every analyzer applies
        assert all(c["ok"] for c in cells.values()), cells
    else:  # the attention product has no LRP rule yet: named, not skipped
        assert "dot_product_attention" in cells["lrp.epsilon(0.1)"]["error"]


@pytest.mark.slow
@pytest.mark.parametrize("name", _ANY_MODEL_KERAS_HUB)
def test_any_model_row_keras_hub(name: str) -> None:
    pytest.importorskip("keras_hub")
    _check_any_model_row(name)
