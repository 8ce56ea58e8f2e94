"""Shared test set-up: quiet TensorFlow, deterministic seeds, small model builders."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    keras.utils.set_random_seed(0)


def mlp(
    sizes: tuple[int, ...] = (6, 8, 7, 4), bias: bool = True, softmax: bool = False
) -> keras.Model:
    """A Dense-ReLU chain: Input(sizes[0]) → ... → Dense(sizes[-1])."""
    inp = keras.Input((sizes[0],))
    h = inp
    for n in sizes[1:-1]:
        h = keras.layers.Dense(n, activation="relu", use_bias=bias)(h)
    out = keras.layers.Dense(sizes[-1], use_bias=bias, activation="softmax" if softmax else None)(h)
    model = keras.Model(inp, out)
    randomize(model)
    return model


def small_cnn(bias: bool = True, batch_norm: bool = False, softmax: bool = False) -> keras.Model:
    """Conv-ReLU-MaxPool-Conv(-BN)-ReLU-AvgPool-Flatten-Dense-ReLU-Dense on 8×8×3."""
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=bias)(inp)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(6, 3, padding="same", use_bias=bias and not batch_norm)(h)
    if batch_norm:
        h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.AveragePooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(10, activation="relu", use_bias=bias)(h)
    out = keras.layers.Dense(5, use_bias=bias, activation="softmax" if softmax else None)(h)
    model = keras.Model(inp, out)
    randomize(model)
    return model


def randomize(model: keras.Model, seed: int = 0) -> None:
    """Gives every weight (biases, BN statistics included) non-trivial random values."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
        else:
            w.assign(rng.normal(0, 0.5, shape).astype("float32"))


def logits_of(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Pre-softmax outputs of a model whose last layer may carry a softmax activation."""
    last = model.layers[-1]
    if getattr(last, "activation", None) is keras.activations.softmax:
        sub = keras.Model(model.inputs, last.input)
        return sub(x).numpy() @ last.kernel.numpy() + (last.bias.numpy() if last.use_bias else 0.0)
    return model(x).numpy()
