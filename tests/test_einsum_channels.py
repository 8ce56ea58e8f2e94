"""EinsumDense layers whose output channel axis is not the kernel's last axis.

BatchNorm folding scales, and CLRP's negated head doubles, the kernel axis that makes the
output's last axis (``abc,cde->abed``: the kernel's ``d``, not its last axis ``e``); a bias
that holds 1 along the output channels (``bias_axes`` without the last output letter) is
broadcast before it is negated. References: float64 numpy ε-LRP of the folded model, and the
LRP of the same model with the head's weights negated.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

import tf_clrp
from tf_clrp.einsum_plan import einsum_output_channel_axis

EPS = 1e-7


def _stab(z: np.ndarray) -> np.ndarray:
    return z + np.where(z >= 0, EPS, -EPS)


@pytest.mark.parametrize(
    ("equation", "axis"),
    [("abc,cd->abd", -1), ("abc,cde->abde", -1), ("abc,cde->abed", -2), ("...b,bc->...c", -1)],
)
def test_output_channel_axis(equation: str, axis: int) -> None:
    assert einsum_output_channel_axis(equation) == axis


def test_no_kernel_axis_when_the_last_output_axis_comes_from_the_input() -> None:
    assert einsum_output_channel_axis("abc,cd->adb") is None
    assert einsum_output_channel_axis("b...,bc->c...") is None


@pytest.mark.parametrize("bias_axes", ["d", "e", None])
def test_batch_norm_folded_along_the_output_channels(bias_axes: str | None) -> None:
    """EinsumDense('abc,cde->abed') -> BatchNorm(-1) -> Dense: ε-LRP equals float64 numpy
    ε-LRP of the folded layer (d = e, so a fold along the wrong axis runs silently)."""
    rng = np.random.default_rng(7)
    equation = "abc,cde->abed"
    x_in = keras.Input((3, 6))
    einsum = layers.EinsumDense(equation, (3, 3, 3), bias_axes=bias_axes)
    norm = layers.BatchNormalization(axis=-1)
    dense = layers.Dense(3)
    model = keras.Model(x_in, dense(layers.Flatten()(norm(einsum(x_in)))))
    for v in model.weights:
        v.assign((rng.uniform(0.5, 1.5, v.shape) * rng.choice([-1, 1], v.shape)).astype("float32"))
    norm.moving_variance.assign(np.abs(norm.moving_variance.numpy()))
    x = rng.normal(0, 1, (2, 3, 6)).astype("float32")

    x64, w = x.astype(np.float64), np.asarray(einsum.kernel, np.float64)
    b = np.asarray(einsum.bias, np.float64) if bias_axes else 0.0
    gamma, beta, mean, var = (
        np.asarray(v, np.float64)
        for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)
    )
    scale = gamma / np.sqrt(var + norm.epsilon)
    z1 = (np.einsum(equation, x64, w) + b - mean) * scale + beta
    w2, b2 = np.asarray(dense.kernel, np.float64), np.asarray(dense.bias, np.float64)
    z2 = z1.reshape(2, -1) @ w2 + b2
    r2 = np.zeros_like(z2)
    r2[:, 1] = z2[:, 1]
    r1 = z1 * ((r2 / _stab(z2)) @ w2.T).reshape(z1.shape)
    s1 = r1 / _stab(z1)
    # R_in = x ⊙ Jᵀ s1 with J the folded (scaled) einsum: one einsum per input entry
    expected = np.zeros_like(x64)
    for index in np.ndindex(x64.shape):
        unit = np.zeros_like(x64)
        unit[index] = 1.0
        expected[index] = x64[index] * np.sum(s1 * np.einsum(equation, unit, w) * scale)
    got = tf_clrp.create_analyzer("lrp.epsilon", model, epsilon=EPS).analyze(x, neuron_selection=1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def _head_model(equation: str, output_shape: tuple[int, ...], bias_axes: str | None) -> keras.Model:
    x_in = keras.Input((3, 6))
    hidden = layers.Dense(6, activation="relu")(x_in)
    head = layers.EinsumDense(equation, output_shape, bias_axes=bias_axes)
    return keras.Model(x_in, head(hidden))


@pytest.mark.parametrize(
    ("equation", "output_shape", "bias_axes"),
    [
        ("abc,cd->abd", (3, 4), "d"),
        ("abc,cde->abde", (3, 4, 2), "de"),
        ("abc,cde->abde", (3, 4, 2), "d"),
        ("abc,cde->abed", (3, 2, 4), "e"),
        ("abc,cde->abed", (3, 2, 4), None),
    ],
)
def test_negated_dual_is_the_lrp_of_the_negated_head(
    equation: str, output_shape: tuple[int, ...], bias_axes: str | None
) -> None:
    """CLRP's contrast='negated' dual for unit i is the LRP of unit i of the same model with
    the head's kernel and bias negated."""
    rng = np.random.default_rng(3)
    model = _head_model(equation, output_shape, bias_axes)
    for v in model.weights:
        v.assign(rng.normal(0, 0.7, v.shape).astype("float32"))
    negated = _head_model(equation, output_shape, bias_axes)
    negated.set_weights(model.get_weights())
    for v in negated.layers[-1].weights:
        v.assign(-v)
    x = rng.normal(0, 1, (2, 3, 6)).astype("float32")
    # units where the negated head's output is > 0 for both samples (the reference is not 0)
    positive = np.flatnonzero((negated(x).numpy().reshape(2, -1) > 0).all(0))
    assert len(positive) >= 2
    for unit in positive[:2].tolist():
        dual = (
            tf_clrp.create_analyzer("clrp", model, contrast="negated")
            .analyze(x, neuron_selection=unit, return_parts=True)
            .dual
        )
        reference = (
            tf_clrp.create_analyzer("clrp", negated, contrast="negated")
            .analyze(x, neuron_selection=unit, return_parts=True)
            .target
        )
        assert np.abs(reference).max() > 0
        np.testing.assert_allclose(dual, reference, rtol=1e-5, atol=1e-6 * np.abs(reference).max())


def test_negated_contrast_refused_when_no_kernel_axis_makes_the_output_channels() -> None:
    model = _head_model("abc,cd->adb", (4, 3), None)
    with pytest.raises(tf_clrp.errors.SelectionError, match="EinsumDense whose kernel"):
        tf_clrp.create_analyzer("clrp", model, contrast="negated").analyze(
            np.ones((1, 3, 6), np.float32), neuron_selection=0
        )
