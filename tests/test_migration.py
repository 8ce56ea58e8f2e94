"""Code written for iNNvestigate runs on tf_clrp with the import line changed.

The snippets below are iNNvestigate's README (github.com/albermax/innvestigate, commit
10e4fc4eb51938630601acaa2f546dba97db7bfd, README.md "Usage" and "Tutorials" code blocks),
stored verbatim. The test applies exactly the edits a user makes (``MIGRATION_EDITS``):
``import innvestigate`` becomes ``import tf_clrp as innvestigate``, and the line
``tf.compat.v1.disable_eager_execution()`` is deleted, because Keras 3 itself needs eager
execution (``model.predict`` fails in graph mode before tf_clrp is involved).
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_clrp
from tests.conftest import mlp, small_cnn
from tf_clrp.errors import ModelStructureError

README_USAGE = """\
import tensorflow as tf
import innvestigate
tf.compat.v1.disable_eager_execution()

model = create_keras_model()

analyzer = innvestigate.create_analyzer("gradient", model)
"""
README_ANALYZE = """\
analysis = analyzer.analyze(inputs)
"""
README_INDEX = """\
analyzer = innvestigate.create_analyzer("gradient",
                                        model,
					neuron_selection_mode="index")
analysis = analyzer.analyze(inputs, i)
"""
README_VGG16 = """\
import tensorflow as tf
import tensorflow.keras.applications.vgg16 as vgg16
tf.compat.v1.disable_eager_execution()

import innvestigate

# Get model
model, preprocess = vgg16.VGG16(), vgg16.preprocess_input
# Strip softmax layer
model = innvestigate.model_wo_softmax(model)

# Create analyzer
analyzer = innvestigate.create_analyzer("deep_taylor", model)

# Add batch axis and preprocess
x = preprocess(image[None])
# Apply analyzer w.r.t. maximum activated output-neuron
a = analyzer.analyze(x)

# Aggregate along color channels and normalize to [-1, 1]
a = a.sum(axis=np.argmax(np.asarray(a.shape) == 3))
a /= np.max(np.abs(a))
# Plot
plt.imshow(a[0], cmap="seismic", clim=(-1, 1))
"""

#: (old line, new line) pairs: everything a user changes when moving to tf_clrp.
MIGRATION_EDITS = (
    ("import innvestigate", "import tf_clrp as innvestigate"),
    ("tf.compat.v1.disable_eager_execution()", None),
)

#: iNNvestigate 2.x ``innvestigate.analyzer.analyzers`` (name → class name), copied from
#: src/innvestigate/analyzer/__init__.py at the commit above; the entries tf_clrp offers.
INNVESTIGATE_ANALYZERS = {
    "gradient": "Gradient",
    "input_t_gradient": "InputTimesGradient",
    "deconvnet": "Deconvnet",
    "guided_backprop": "GuidedBackprop",
    "integrated_gradients": "IntegratedGradients",
    "smoothgrad": "SmoothGrad",
    "lrp": "LRP",
    "lrp.z": "LRPZ",
    "lrp.epsilon": "LRPEpsilon",
    "lrp.w_square": "LRPWSquare",
    "lrp.flat": "LRPFlat",
    "lrp.alpha_beta": "LRPAlphaBeta",
    "lrp.alpha_2_beta_1": "LRPAlpha2Beta1",
    "lrp.alpha_2_beta_1_IB": "LRPAlpha2Beta1IgnoreBias",
    "lrp.alpha_1_beta_0": "LRPAlpha1Beta0",
    "lrp.alpha_1_beta_0_IB": "LRPAlpha1Beta0IgnoreBias",
    "lrp.z_plus": "LRPZPlus",
    "lrp.z_plus_fast": "LRPZPlusFast",
    "lrp.sequential_preset_a": "LRPSequentialPresetA",
    "lrp.sequential_preset_b": "LRPSequentialPresetB",
    "lrp.sequential_preset_a_flat": "LRPSequentialPresetAFlat",
    "lrp.sequential_preset_b_flat": "LRPSequentialPresetBFlat",
    "deep_taylor": "DeepTaylor",
    "deep_taylor.bounded": "BoundedDeepTaylor",
}


def migrate(snippet: str) -> str:
    """Applies ``MIGRATION_EDITS`` line by line (whole lines only) and nothing else."""
    lines = []
    for line in snippet.splitlines():
        for old, new in MIGRATION_EDITS:
            if line.strip() == old:
                line = None if new is None else line.replace(old, new)
                break
        if line is not None:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _dense_logits_float64(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """A float64 numpy forward of a Dense-ReLU chain, final activation left out."""
    h = x.astype(np.float64)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for k, layer in enumerate(dense):
        h = h @ layer.kernel.numpy().astype(np.float64) + layer.bias.numpy()
        if k < len(dense) - 1:
            h = np.maximum(h, 0.0)
    return h


# ----------------------------------------------------------------------------- model_wo_softmax
def test_model_wo_softmax_fused_gives_logits_and_keeps_the_model():
    model = mlp((6, 8, 7, 4), softmax=True)
    weights_before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(1).normal(size=(5, 6)).astype("float32")
    probabilities = model.predict(x, verbose=0)
    logits = tf_clrp.model_wo_softmax(model).predict(x, verbose=0)
    np.testing.assert_allclose(logits, _dense_logits_float64(model, x), rtol=1e-5, atol=1e-5)
    # the input model is untouched: same activation, weights and outputs
    assert model.layers[-1].activation is keras.activations.softmax
    for before, after in zip(weights_before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(model.predict(x, verbose=0), probabilities, rtol=0, atol=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_model_wo_softmax_cuts_a_separate_softmax_layer():
    inp = keras.Input((6,))
    h = keras.layers.Dense(5, activation="relu")(inp)
    z = keras.layers.Dense(3)(h)
    model = keras.Model(inp, keras.layers.Softmax()(z))
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    logits = tf_clrp.model_wo_softmax(model).predict(x, verbose=0)
    np.testing.assert_allclose(logits, _dense_logits_float64(model, x), rtol=1e-5, atol=1e-5)
    assert len(model.layers) == 4


def test_model_wo_softmax_sequential_and_errors():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    x = np.random.default_rng(3).normal(size=(2, 6)).astype("float32")
    logits = tf_clrp.model_wo_softmax(model).predict(x, verbose=0)
    np.testing.assert_allclose(logits, _dense_logits_float64(model, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ModelStructureError, match="dense_.*applies 'linear', not softmax"):
        tf_clrp.model_wo_softmax(mlp())
    sigmoid = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(ModelStructureError, match="'sigmoid', not softmax"):
        tf_clrp.model_wo_softmax(sigmoid)
    stripped = tf_clrp.model_wo_output_activation(sigmoid).predict(x, verbose=0)
    np.testing.assert_allclose(stripped, _dense_logits_float64(sigmoid, x), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- class names
def test_class_names_match_innvestigates_table():
    offered = {
        cls.registry_name: name
        for name, cls in vars(tf_clrp.analyzer).items()
        if isinstance(cls, type) and hasattr(cls, "registry_name")
    }
    assert offered == INNVESTIGATE_ANALYZERS
    assert set(offered) <= set(tf_clrp.list_analyzers())


def _epsilon_lrp_float64(model: keras.Model, x: np.ndarray, epsilon: float) -> np.ndarray:
    """ε-LRP of the top logit of a Dense-ReLU chain (iNNvestigate's ε: sign(0) = +1)."""
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    acts = [x.astype(np.float64)]
    for k, layer in enumerate(dense):
        z = acts[-1] @ layer.kernel.numpy().astype(np.float64) + layer.bias.numpy()
        acts.append(np.maximum(z, 0.0) if k < len(dense) - 1 else z)
    relevance = np.zeros_like(acts[-1])
    top = acts[-1].argmax(axis=1)
    relevance[np.arange(len(x)), top] = acts[-1][np.arange(len(x)), top]
    for k in range(len(dense) - 1, -1, -1):
        w = dense[k].kernel.numpy().astype(np.float64)
        z = acts[k] @ w + dense[k].bias.numpy()
        stabilised = z + epsilon * np.where(z >= 0, 1.0, -1.0)
        relevance = acts[k] * ((relevance / stabilised) @ w.T)
    return relevance


def test_lrp_epsilon_class_matches_a_float64_reference():
    model = mlp((6, 8, 7, 4), softmax=True)
    x = np.random.default_rng(4).normal(size=(3, 6)).astype("float32")
    analyzer = tf_clrp.analyzer.LRPEpsilon(model, epsilon=0.1)
    assert isinstance(analyzer, tf_clrp.analyzer.LRPEpsilon)
    assert not isinstance(analyzer, tf_clrp.analyzer.LRPZ)
    np.testing.assert_allclose(
        analyzer.analyze(x), _epsilon_lrp_float64(model, x, 0.1), rtol=1e-4, atol=1e-5
    )


def test_class_options_are_checked():
    model = mlp()
    with pytest.raises(TypeError, match="unknown option.*epsilonn"):
        tf_clrp.analyzer.LRPEpsilon(model, epsilonn=0.1)
    with pytest.raises(TypeError, match="keyword arguments"):
        tf_clrp.analyzer.LRPEpsilon(model, 0.1)
    with pytest.raises(TypeError, match="postprocess"):
        tf_clrp.analyzer.LRPZ(model, postprocess="abs")
    gradient = tf_clrp.analyzer.Gradient(model, postprocess="abs")
    assert np.all(gradient.analyze(np.ones((1, 6), "float32")) >= 0)


# ----------------------------------------------------------------------------- README snippets
def _top_logit_gradient(model: keras.Model, x: np.ndarray, index: int | None) -> np.ndarray:
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = model(x)
        k = tf.argmax(z, axis=1) if index is None else tf.fill([len(x)], index)
        selected = tf.gather(z, k, axis=1, batch_dims=1)
    return tape.gradient(selected, x).numpy()


def test_migrate_changes_only_the_declared_lines():
    migrated = migrate(README_VGG16)
    assert "import tf_clrp as innvestigate" in migrated
    assert "disable_eager_execution" not in migrated
    assert len(README_VGG16.splitlines()) - len(migrated.splitlines()) == 1


def test_readme_usage_snippets_run_unchanged():
    model = small_cnn()
    x = np.random.default_rng(5).normal(size=(2, 8, 8, 3)).astype("float32")
    namespace = {"create_keras_model": lambda: model, "inputs": x, "i": 3}
    exec(migrate(README_USAGE), namespace)  # noqa: S102 - the snippet under test
    exec(migrate(README_ANALYZE), namespace)  # noqa: S102
    np.testing.assert_allclose(
        namespace["analysis"], _top_logit_gradient(model, x, None), rtol=1e-5, atol=1e-6
    )
    exec(migrate(README_INDEX), namespace)  # noqa: S102
    np.testing.assert_allclose(
        namespace["analysis"], _top_logit_gradient(model, x, 3), rtol=1e-5, atol=1e-6
    )


def test_readme_vgg16_snippet_runs_unchanged(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow.keras.applications.vgg16 as vgg16_module

    # the test machine is offline: VGG16 with random weights instead of the ImageNet download
    monkeypatch.setattr(
        vgg16_module, "VGG16", functools.partial(keras.applications.VGG16, weights=None)
    )
    image = np.random.default_rng(6).uniform(0, 255, (224, 224, 3)).astype("float32")
    namespace = {"image": image, "np": np, "plt": plt}
    try:
        exec(migrate(README_VGG16), namespace)  # noqa: S102 - the snippet under test
    finally:
        plt.close("all")
    a = namespace["a"]
    assert a.shape == (1, 224, 224)
    assert np.isfinite(a).all() and np.max(np.abs(a)) == pytest.approx(1.0)
    # the stripped model outputs logits: they are not a probability vector
    logits = namespace["model"].predict(namespace["x"], verbose=0)
    assert not np.allclose(logits.sum(axis=1), 1.0, atol=1e-3)
    assert namespace["model"].layers[-1].activation is keras.activations.linear
