"""``EinsumDense`` equations: the product as one matrix product where the equation allows
it, and which kernel axis makes the output channels.

TensorFlow's ``Einsum`` op (and its gradient, two more einsums with transposes) is several
times slower on CPU than ``MatMul`` for the same contraction. Most ``EinsumDense`` equations
(Keras' ``MultiHeadAttention`` projections, keras_hub's transformer layers) contract the
input's trailing axes with the kernel's leading axes and keep the rest in order:
``abc,cde->abde`` is ``reshape(x, (-1, c)) @ reshape(kernel, (c, d·e))``. ``einsum_forward``
returns that product for such equations and ``tf.einsum`` for every other one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

Product = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def trailing_contraction(equation: str) -> int | None:
    """How many trailing input axes ``equation`` contracts with the kernel's leading axes,
    if it is exactly ``x_free + contracted, contracted + k_free -> x_free + k_free``
    (``...`` allowed in front of the input and the output); else None."""
    spec = equation.replace(" ", "")
    if spec.count("->") != 1:
        return None
    operands, out = spec.split("->")
    if operands.count(",") != 1:
        return None
    x, kernel = operands.split(",")
    if x.startswith("...") != out.startswith("...") or "." in kernel:
        return None
    x, out = x.removeprefix("..."), out.removeprefix("...")
    if "." in x + out or not (x + kernel + out).isalpha():
        return None
    if len(set(x)) != len(x) or len(set(kernel)) != len(kernel):
        return None
    contracted = [c for c in x if c in kernel and c not in out]
    n = len(contracted)
    if n == 0 or list(x[len(x) - n :]) != contracted or list(kernel[:n]) != contracted:
        return None
    x_free, k_free = x[: len(x) - n], kernel[n:]
    if set(x_free) & set(k_free) or out != x_free + k_free:
        return None
    return n


def einsum_forward(equation: str) -> Product:
    """``(x, kernel) -> einsum(equation, x, kernel)``, as one ``MatMul`` where
    ``trailing_contraction`` allows it."""
    n = trailing_contraction(equation)
    if n is None:
        return lambda x, kernel: tf.einsum(equation, x, kernel)

    def product(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        contracted = math.prod(kernel.shape[:n])
        free = list(kernel.shape[n:])
        rank = len(x.shape)
        flat = tf.matmul(tf.reshape(x, (-1, contracted)), tf.reshape(kernel, (contracted, -1)))
        lead = tf.shape(x)[: rank - n]
        y = tf.reshape(flat, tf.concat([lead, tf.constant(free, tf.int32)], 0))
        y.set_shape(x.shape[: rank - n].concatenate(free))
        return y

    return product


def einsum_output_channel_axis(equation: str) -> int | None:
    """The kernel axis of an ``EinsumDense`` equation that makes the output's last axis
    (``abc,cde->abed``: 1, the ``d`` of the kernel), or None if the input's does."""
    operands, _, out = equation.replace(" ", "").partition("->")
    kernel = operands.split(",")[-1]
    last = out[-1:]
    if not last.isalpha() or "." in kernel or last not in kernel:
        return None
    return kernel.index(last) - len(kernel)
