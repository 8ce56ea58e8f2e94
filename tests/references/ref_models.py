"""Small deterministic reference models shared by tf.keras 2.14 and Keras 3.

Every builder only uses API names that exist in both ``tf.keras`` (Keras 2.14)
and Keras 3, and takes the Keras module as an argument, so the iNNvestigate
generator (old TF) and the parity tests (Keras 3) build identical graphs.
Layer names are fixed, so weights can be stored per layer name.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

MODEL_NAMES: tuple[str, ...] = ("dense", "conv", "avgpool", "cnn")

#: Fixed output neuron explained in ``neuron_selection_mode="index"`` per model.
#: Chosen to differ from the argmax for some samples (so "index" and "max_activation"
#: entries differ); for dense/avgpool the chosen logit has both signs over the batch
#: (Deep Taylor explains relu(logit), so negative ones give all-zero maps).
NEURON_INDEX: dict[str, int] = {"dense": 0, "conv": 3, "avgpool": 3, "cnn": 4}

INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "dense": (10,),
    "conv": (8, 8, 3),
    "avgpool": (8, 8, 3),
    "cnn": (12, 12, 3),
}

BATCH_SIZE = 3
WEIGHT_SEED = 1234
INPUT_SEED = 4321


def _dense(keras: ModuleType) -> Any:
    """Input(10) -> Dense(16, relu) -> Dense(8, relu) -> Dense(4)."""
    L = keras.layers
    x_in = keras.Input(shape=INPUT_SHAPES["dense"], name="input")
    h = L.Dense(16, activation="relu", name="dense_1")(x_in)
    h = L.Dense(8, activation="relu", name="dense_2")(h)
    out = L.Dense(4, name="dense_3")(h)
    return keras.Model(x_in, out, name="dense")


def _conv(keras: ModuleType) -> Any:
    """Conv2D(4, same, relu) -> MaxPool -> Conv2D(6, valid, relu) -> Flatten -> Dense(5)."""
    L = keras.layers
    x_in = keras.Input(shape=INPUT_SHAPES["conv"], name="input")
    h = L.Conv2D(4, 3, activation="relu", padding="same", name="conv_1")(x_in)
    h = L.MaxPooling2D(2, name="pool_1")(h)
    h = L.Conv2D(6, 3, activation="relu", padding="valid", name="conv_2")(h)
    h = L.Flatten(name="flatten")(h)
    out = L.Dense(5, name="dense_1")(h)
    return keras.Model(x_in, out, name="conv")


def _avgpool(keras: ModuleType) -> Any:
    """Conv2D(4, same, relu) -> AveragePooling2D -> Flatten -> Dense(5)."""
    L = keras.layers
    x_in = keras.Input(shape=INPUT_SHAPES["avgpool"], name="input")
    h = L.Conv2D(4, 3, activation="relu", padding="same", name="conv_1")(x_in)
    h = L.AveragePooling2D(2, name="avg_pool")(h)
    h = L.Flatten(name="flatten")(h)
    out = L.Dense(5, name="dense_1")(h)
    return keras.Model(x_in, out, name="avgpool")


def _cnn(keras: ModuleType) -> Any:
    """VGG-like: 2x(conv, conv, maxpool) -> Flatten -> Dense(24, relu) -> Dense(6)."""
    L = keras.layers
    x_in = keras.Input(shape=INPUT_SHAPES["cnn"], name="input")
    h = L.Conv2D(8, 3, activation="relu", padding="same", name="block1_conv1")(x_in)
    h = L.Conv2D(8, 3, activation="relu", padding="same", name="block1_conv2")(h)
    h = L.MaxPooling2D(2, name="block1_pool")(h)
    h = L.Conv2D(12, 3, activation="relu", padding="same", name="block2_conv1")(h)
    h = L.Conv2D(12, 3, activation="relu", padding="same", name="block2_conv2")(h)
    h = L.MaxPooling2D(2, name="block2_pool")(h)
    h = L.Flatten(name="flatten")(h)
    h = L.Dense(24, activation="relu", name="fc1")(h)
    out = L.Dense(6, name="predictions")(h)
    return keras.Model(x_in, out, name="cnn")


_BUILDERS: dict[str, Callable[[ModuleType], Any]] = {
    "dense": _dense,
    "conv": _conv,
    "avgpool": _avgpool,
    "cnn": _cnn,
}


def build(name: str, keras: ModuleType) -> Any:
    """Build model ``name`` with the given Keras module (``tf.keras`` or ``keras``)."""
    return _BUILDERS[name](keras)


def weighted_layer_names(model: Any) -> list[str]:
    """Names of the layers that carry weights, in model order."""
    return [layer.name for layer in model.layers if layer.get_weights()]


def make_weights(model: Any, seed: int = WEIGHT_SEED) -> dict[str, list[np.ndarray]]:
    """Seeded He-normal kernels and non-zero N(0, 0.1) biases, in Keras layout."""
    rng = np.random.default_rng(seed)
    weights: dict[str, list[np.ndarray]] = {}
    for layer in model.layers:
        current = layer.get_weights()
        if not current:
            continue
        kernel_shape, bias_shape = current[0].shape, current[1].shape
        fan_in = int(np.prod(kernel_shape[:-1]))
        kernel = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=kernel_shape)
        bias = rng.normal(0.0, 0.1, size=bias_shape)
        weights[layer.name] = [kernel.astype(np.float32), bias.astype(np.float32)]
    return weights


def set_weights(model: Any, weights: dict[str, list[np.ndarray]]) -> None:
    """Assign stored weights (layer name -> [kernel, bias]) to ``model``."""
    for name, arrays in weights.items():
        model.get_layer(name).set_weights([np.asarray(a, dtype=np.float32) for a in arrays])


def make_inputs(name: str, seed: int = INPUT_SEED) -> np.ndarray:
    """Seeded batch of 3 inputs, uniform in [-1, 1) (negative and positive values)."""
    rng = np.random.default_rng(seed + MODEL_NAMES.index(name))
    shape = (BATCH_SIZE, *INPUT_SHAPES[name])
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
