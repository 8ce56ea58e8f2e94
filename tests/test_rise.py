"""RISE against a slow one-mask-at-a-time numpy reference, and its determinism."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from conftest import randomize
from skimage.transform import resize

import tf_clrp
from tf_clrp.metrics import RISE, make_masks


def tiny_model() -> keras.Model:
    inp = keras.Input((9, 7, 2))
    h = keras.layers.Conv2D(3, 3, activation="relu")(inp)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(h))
    randomize(model)
    return model


def reference_rise(
    model: keras.Model,
    x: np.ndarray,
    target: np.ndarray,
    n_masks: int,
    grid: int,
    p1: float,
    seed: int,
) -> np.ndarray:
    """Petsiuk et al.'s procedure written out: masks from skimage's order-1 resize, then
    one masked image and one model call at a time, scores from the Keras model itself."""
    h, w = x.shape[1:3]
    ch, cw = math.ceil(h / grid), math.ceil(w / grid)
    gh, gw = math.ceil(h / ch), math.ceil(w / cw)
    rng = np.random.default_rng(seed)
    grids = rng.random((n_masks, gh, gw)) < p1
    rows = rng.integers(0, ch, n_masks)
    cols = rng.integers(0, cw, n_masks)
    saliency = np.zeros((len(x), h, w))
    for i in range(n_masks):
        up = resize(
            grids[i].astype(np.float64),
            ((gh + 1) * ch, (gw + 1) * cw),
            order=1,
            mode="edge",
            anti_aliasing=False,
        )
        mask = up[rows[i] : rows[i] + h, cols[i] : cols[i] + w]
        for n in range(len(x)):
            masked = (x[n] * mask[..., None])[None].astype(np.float32)
            prob = np.asarray(model(masked, training=False), dtype=np.float64)[0, target[n]]
            saliency[n] += prob * mask
    return saliency / (n_masks * p1)


def test_rise_matches_the_slow_reference() -> None:
    model = tiny_model()
    x = np.random.default_rng(0).normal(size=(2, 9, 7, 2)).astype(np.float32)
    target = np.array([1, 3])
    expected = reference_rise(model, x, target, n_masks=40, grid=3, p1=0.4, seed=5)
    got = RISE(model, n_masks=40, grid_size=3, p1=0.4, seed=5, batch_size=7).analyze(x, target)
    assert got.shape == x.shape
    np.testing.assert_allclose(got.sum(axis=-1), expected, rtol=1e-5, atol=1e-7)


def test_masks_match_skimage_and_p1() -> None:
    masks = make_masks((20, 30), 500, grid_size=4, p1=0.3, seed=1)
    assert masks.cell == (5, 8) and masks.grids.shape == (500, 4, 4)
    assert abs(masks.grids.mean() - 0.3) < 0.03
    m = masks.masks(slice(0, 3))
    for i in range(3):
        up = resize(
            masks.grids[i].astype(np.float64), (25, 40), order=1, mode="edge", anti_aliasing=False
        )
        y, xx = masks.shifts[i]
        np.testing.assert_allclose(m[i], up[y : y + 20, xx : xx + 30], atol=1e-6)


def test_rise_is_deterministic_under_a_seed() -> None:
    model = tiny_model()
    x = np.random.default_rng(1).normal(size=(3, 9, 7, 2)).astype(np.float32)
    a = RISE(model, n_masks=32, seed=7).analyze(x)
    b = RISE(model, n_masks=32, seed=7, batch_size=5).analyze(x)
    c = RISE(model, n_masks=32, seed=8).analyze(x)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    analyzer = tf_clrp.create_analyzer("rise", model, n_masks=16, cell_size=(3, 2))
    np.testing.assert_array_equal(analyzer.analyze(x), analyzer.analyze(x))


def test_rise_logits_and_weights() -> None:
    model = tiny_model()
    x = np.random.default_rng(2).normal(size=(2, 9, 7, 2)).astype(np.float32)
    weights = np.zeros((2, 4), np.float32)
    weights[:, 2] = 1.0
    by_index = RISE(model, n_masks=16, logits=True).analyze(x, 2)
    by_weights = RISE(model, n_masks=16, logits=True).analyze(x, weights)
    np.testing.assert_allclose(by_index, by_weights, rtol=1e-6)
    assert not np.allclose(by_index, RISE(model, n_masks=16).analyze(x, 2))


def test_rise_argument_errors() -> None:
    with pytest.raises(ValueError, match="p1"):
        RISE(tiny_model(), p1=0.0)
    with pytest.raises(ValueError, match="n_masks"):
        make_masks((8, 8), 0)
