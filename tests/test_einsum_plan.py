"""EinsumDense products as one MatMul: same values and gradients as ``tf.einsum``
(a float64 numpy einsum is the reference), MatMul only where the equation allows it."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tf_clrp.einsum_plan import einsum_forward, trailing_contraction

# (equation, input shape, kernel shape, contracted axes or None)
CASES = [
    ("abc,cde->abde", (2, 5, 6), (6, 3, 4), 1),  # MultiHeadAttention's query/key/value
    ("abcd,cde->abe", (2, 5, 3, 4), (3, 4, 6), 2),  # its output projection
    ("...b,bc->...c", (2, 3, 5, 6), (6, 7), 1),
    ("ab,bc->ac", (4, 6), (6, 3), 1),
    ("abc,cd->abd", (2, 5, 6), (6, 3), 1),
    ("abc,dc->abd", (2, 5, 6), (3, 6), None),  # kernel transposed
    ("abc,cde->abed", (2, 5, 6), (6, 3, 4), None),  # output axes reordered
    ("abcd,bde->ace", (2, 5, 3, 4), (5, 4, 6), None),  # contracts a middle axis
    ("abc,bcd->abd", (2, 5, 6), (5, 6, 3), None),  # an axis kept on both sides
]


@pytest.mark.parametrize(("equation", "x_shape", "k_shape", "contracted"), CASES)
def test_values_and_gradient_match_a_float64_einsum(equation, x_shape, k_shape, contracted):
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=x_shape), rng.normal(size=k_shape)
    upstream_shape = np.einsum(equation, x, kernel).shape
    upstream = rng.normal(size=upstream_shape)
    assert trailing_contraction(equation) == contracted
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = einsum_forward(equation)(xt, tf.constant(kernel, tf.float32))
    grad = tape.gradient(y, xt, output_gradients=tf.constant(upstream, tf.float32))
    assert y.shape == upstream_shape
    np.testing.assert_allclose(y.numpy(), np.einsum(equation, x, kernel), rtol=1e-5, atol=1e-5)
    numeric = _float64_input_gradient(equation, x, kernel, upstream)
    np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-5, atol=1e-5)


def _float64_input_gradient(equation, x, kernel, upstream):
    """∂(Σ upstream ⊙ einsum(x, kernel))/∂x, by linearity: one einsum per input entry."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        unit = np.zeros_like(x)
        unit[index] = 1.0
        grad[index] = np.sum(upstream * np.einsum(equation, unit, kernel))
    return grad


@pytest.mark.parametrize(("equation", "x_shape", "k_shape", "contracted"), CASES)
def test_matmul_only_where_the_plan_applies(equation, x_shape, k_shape, contracted):
    forward = einsum_forward(equation)
    graph = (
        tf.function(forward)
        .get_concrete_function(
            tf.TensorSpec((None, *x_shape[1:]), tf.float32), tf.TensorSpec(k_shape, tf.float32)
        )
        .graph
    )
    ops = {op.type for op in graph.get_operations()}
    assert ("Einsum" in ops) == (contracted is None)
    assert ("MatMul" in ops) == (contracted is not None)


def test_unknown_batch_keeps_static_trailing_shape():
    forward = einsum_forward("abc,cde->abde")
    spec = tf.TensorSpec((None, 7, 6), tf.float32)
    out = tf.function(forward).get_concrete_function(spec, tf.TensorSpec((6, 3, 4), tf.float32))
    assert out.output_shapes.as_list() == [None, 7, 3, 4]


@pytest.mark.parametrize("equation", ["abc,cde", "abc,cd,de->abe", "a.c,cd->ad", "ab1,1c->abc"])
def test_malformed_or_unusual_equations_fall_back_to_einsum(equation):
    assert trailing_contraction(equation) is None
