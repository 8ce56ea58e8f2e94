"""LRP rules as small pure pieces: the named rules of the family.

A rule is one class: ``forward`` (what to compute and keep in the forward pass) and
``backward`` (relevance in, relevance out), or just ``relevance`` when it needs nothing from
the forward (see ``tf_clrp.rule_core``, whose names are re-exported here). Most rules are a
``BasicRule``: a few terms and a stabilizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tf_clrp.checks import finite_bounds, finite_parameter
from tf_clrp.rule_core import (
    BACKWARD_METHODS,
    DROP,
    IDENTITY,
    NEGATIVE,
    ONES,
    POSITIVE,
    SQUARE,
    BasicRule,
    Modifier,
    Rule,
    Site,
    Term,
    WeightedSum,
    _stabiliser,
    declares,
    stabilize,
)

Tensor = tf.Tensor

__all__ = [
    "BACKWARD_METHODS",
    "DROP",
    "IDENTITY",
    "NEGATIVE",
    "ONES",
    "POSITIVE",
    "SQUARE",
    "AlphaBeta",
    "BasicRule",
    "Epsilon",
    "Flat",
    "Gamma",
    "Gradient",
    "Modifier",
    "Norm",
    "Pass",
    "Rule",
    "Site",
    "Term",
    "WSquare",
    "WeightedSum",
    "Z",
    "ZBox",
    "ZPlus",
    "ZPlusFast",
    "declares",
    "stabilize",
    "ACTIVATION_BACKWARDS",
]


# ----------------------------------------------------------------------------- named rules
class Z(BasicRule):
    """LRP-0: c_jk = a_j w_jk, bias in the denominator.

    Args:
        epsilon: Tiny stabilizer that only guards against division by zero.
        bias: Include the bias in the denominator (relevance it absorbs is lost).
    """

    negation_invariant = True

    def __init__(self, epsilon: float = 1e-7, bias: bool = True) -> None:
        super().__init__((Term(bias=IDENTITY if bias else DROP),), epsilon)
        self.bias = bias


class Epsilon(BasicRule):
    """LRP-ε: the z rule with denominator z_k + ε·sign(z_k).

    Args:
        epsilon: The stabilizer ε (iNNvestigate's default 1e-7; presets use 0.1).
        bias: Include the bias in the denominator.
    """

    negation_invariant = True

    def __init__(self, epsilon: float = 1e-7, bias: bool = True) -> None:
        super().__init__((Term(bias=IDENTITY if bias else DROP),), epsilon)
        self.bias = bias


def _positive_part_terms(bias: bool | str) -> tuple[Term, ...]:
    """Terms of (a·w)⁺: a⁺w⁺ + a⁻w⁻, plus b⁺ (``bias=True``) or the full b (``"full"``)."""
    bias_fn = {True: POSITIVE, "full": IDENTITY}.get(bias, DROP)
    return (
        Term(POSITIVE, POSITIVE, bias_fn),
        Term(NEGATIVE, NEGATIVE, DROP, needs_negative_input=True),
    )


def _negative_part_terms(bias: bool | str) -> tuple[Term, ...]:
    """Terms of (a·w)⁻: a⁺w⁻ + a⁻w⁺, plus b⁻ (``bias=True``) or the full b (``"full"``)."""
    bias_fn = {True: NEGATIVE, "full": IDENTITY}.get(bias, DROP)
    return (
        Term(POSITIVE, NEGATIVE, bias_fn),
        Term(NEGATIVE, POSITIVE, DROP, needs_negative_input=True),
    )


class ZPlus(BasicRule):
    """z⁺ (= α1β0): only positive contributions (a·w)⁺ count.

    Args:
        epsilon: Stabilizer (the CLRP authors use 1e-9).
        bias: Add the bias's positive part to the denominator (Zennit's ZPlus); the default
            ignores the bias, as iNNvestigate's z⁺ and the CLRP authors' code do.
    """

    linear_in_relevance = True  # re-declared: ``stabilize`` is overridden (see ``declares``)

    def __init__(self, epsilon: float = 1e-9, bias: bool = False) -> None:
        super().__init__(_positive_part_terms(bias=bias), epsilon)
        self.bias = bias

    def stabilize(self, z: Tensor) -> Tensor:
        """z⁺ denominators are never negative: z + ε."""
        return z + self.epsilon


class ZPlusFast(BasicRule):
    """iNNvestigate's fast z⁺ for non-negative inputs: c_jk = a_j w⁺_jk, no bias."""

    def __init__(self, epsilon: float = 1e-9) -> None:
        super().__init__((Term(IDENTITY, POSITIVE, DROP),), epsilon)


class AlphaBeta(WeightedSum):
    """LRP-αβ: α·R⁺ − β·R⁻, positive and negative parts normalised separately.

    Args:
        alpha: Weight of the positive part.
        beta: Weight of the negative part (α − β = 1 conserves relevance).
        bias: True adds b⁺ to the positive and b⁻ to the negative denominator (Zennit);
            "full" adds the whole bias to both (iNNvestigate 2.1.2); False ignores it.
        epsilon: Stabilizer of both denominators.
    """

    def __init__(
        self, alpha: float = 2.0, beta: float = 1.0, bias: bool | str = True, epsilon: float = 1e-7
    ) -> None:
        if bias not in (True, False, "full"):
            raise ValueError(f"AlphaBeta bias must be True, False or 'full', got {bias!r}")
        alpha = finite_parameter("AlphaBeta alpha", alpha, minimum=0.0)
        beta = finite_parameter("AlphaBeta beta", beta, minimum=0.0)
        epsilon = _stabiliser("AlphaBeta", epsilon)
        if not np.isclose(alpha - beta, 1.0):
            raise ValueError(f"AlphaBeta needs alpha - beta = 1, got alpha={alpha}, beta={beta}")
        parts: list[tuple[float, Rule]] = [(alpha, BasicRule(_positive_part_terms(bias), epsilon))]
        if beta:
            parts.append((-beta, BasicRule(_negative_part_terms(bias), epsilon)))
        super().__init__(tuple(parts))
        self.alpha, self.beta, self.bias = alpha, beta, bias


class Gamma(Rule):
    """LRP-γ: contributions of the unit's own sign boosted by γ (Zennit's Gamma).

    For a unit with z_k > 0: c_jk = a⁺_j (w + γw⁺)_jk + a⁻_j (w + γw⁻)_jk, bias b + γb⁺;
    for z_k < 0 the boosts swap (a⁺ gets w + γw⁻, a⁻ gets w + γw⁺, bias b + γb⁻);
    a unit with z_k = 0 passes no relevance. For non-negative inputs and z_k > 0 this is
    c_jk = a_j (w_jk + γ w⁺_jk).

    Args:
        gamma: The boost γ ≥ 0.
        bias: Boost and include the bias likewise.
        epsilon: Stabilizer.
    """

    negation_invariant = True
    linear_in_relevance = True

    def __init__(self, gamma: float = 0.25, bias: bool = True, epsilon: float = 1e-6) -> None:
        gamma = finite_parameter("Gamma gamma", gamma, minimum=0.0)
        epsilon = _stabiliser("Gamma", epsilon)

        def boost(part: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
            return lambda w: w + gamma * part(w)

        def branch(
            same: Callable[[Tensor], Tensor], other: Callable[[Tensor], Tensor]
        ) -> BasicRule:
            return BasicRule(
                (
                    Term(POSITIVE, boost(same), boost(same) if bias else DROP),
                    Term(NEGATIVE, boost(other), DROP, needs_negative_input=True),
                ),
                epsilon,
            )

        self.gamma, self.bias, self.epsilon = gamma, bias, epsilon
        self._positive_units = branch(POSITIVE, NEGATIVE)
        self._negative_units = branch(NEGATIVE, POSITIVE)

    def forward(self, site: Site) -> tuple[Tensor, Tensor]:
        """The output, kept: its sign chooses each unit's branch."""
        output = site.output()
        return output, output

    def backward(self, site: Site, kept: Tensor | None, relevance: Tensor) -> list[Tensor]:
        """R_in from R_out, each unit through the branch of its output's sign."""
        if kept is not None and (self.bias or site.bias is None):
            z = kept
        else:
            z = site.add_bias(
                site.forward(site.inputs, site.kernel), site.bias if self.bias else None
            )
        up = relevance * tf.cast(z > 0, relevance.dtype)
        down = relevance * tf.cast(z < 0, relevance.dtype)
        positive = self._positive_units.relevance(site, up)
        negative = self._negative_units.relevance(site, down)
        return [p + n for p, n in zip(positive, negative)]

    def relevance(self, site: Site, relevance: Tensor) -> list[Tensor]:
        """R_in from R_out, computing the output itself."""
        return self.backward(site, None, relevance)


class WSquare(BasicRule):
    """w²-rule: c_jk = w_jk², independent of the input.

    Args:
        epsilon: Stabilizer.
        bias: Add b_k² to the denominator (Zennit); the default ignores the bias
            (iNNvestigate).
    """

    negation_invariant = True

    def __init__(self, epsilon: float = 1e-9, bias: bool = False) -> None:
        super().__init__((Term(ONES, SQUARE, SQUARE if bias else DROP),), epsilon)
        self.bias = bias


class Flat(BasicRule):
    """Flat rule: c_jk = 1 for every connection (bias ignored)."""

    negation_invariant = True

    def __init__(self, epsilon: float = 1e-9) -> None:
        super().__init__((Term(ONES, ONES, DROP),), epsilon)


class ZBox(BasicRule):
    """z^B (bounded input): c_jk = a_j w_jk − l_j w⁺_jk − h_j w⁻_jk.

    Args:
        low: Lowest possible input value: a scalar or one value per input channel, given in
            the model's input space (mapped through Rescaling/Normalization layers). None
            (with ``high`` None) uses each sample's own per-channel minimum.
        high: Highest possible input value, likewise.
        bias: Include the bias in the denominator.
        epsilon: Stabilizer.
    """

    def __init__(
        self,
        low: float | Sequence[float] | np.ndarray | None = None,
        high: float | Sequence[float] | np.ndarray | None = None,
        bias: bool = False,
        epsilon: float = 1e-9,
    ) -> None:
        if (low is None) != (high is None):
            raise ValueError("ZBox needs both low and high, or neither (per-sample bounds)")
        self.low = None if low is None else finite_bounds("ZBox low", low)
        self.high = None if high is None else finite_bounds("ZBox high", high)
        if self.low is not None and np.any(self.low > self.high):
            raise ValueError(f"ZBox needs low <= high, got low={low}, high={high}")
        super().__init__(
            (
                Term(IDENTITY, IDENTITY, IDENTITY if bias else DROP),
                Term("low", lambda w: -tf.maximum(w, 0.0), DROP),
                Term("high", lambda w: -tf.minimum(w, 0.0), DROP),
            ),
            epsilon,
        )
        self.bias = bias

    def __repr__(self) -> str:
        if self.low is None:
            return "ZBox(per-sample bounds)"
        return f"ZBox(low={self.low.tolist()}, high={self.high.tolist()})"


class Pass(Rule):
    """Hands relevance through unchanged (elementwise layers; the first input of a gate)."""

    linear_in_relevance = True
    negation_invariant = True

    def relevance(self, site: Site, relevance: Tensor) -> list[Tensor]:
        out = [relevance] + [tf.zeros_like(x) for x in site.inputs[1:]]
        return out


class Gradient(Rule):
    """The plain gradient (vector-Jacobian product) of the layer."""

    linear_in_relevance = True
    negation_invariant = True

    def relevance(self, site: Site, relevance: Tensor) -> list[Tensor]:
        inputs = list(site.inputs)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(inputs)
            z = site.add_bias(site.forward(inputs, site.kernel), site.bias)
        grads = tape.gradient(z, inputs, output_gradients=relevance)
        return [tf.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


@dataclass(repr=False)
class Norm(BasicRule):
    """Proportional split for parameter-free sums (Add, average pooling): the z rule."""

    terms: tuple[Term, ...] = field(default=(Term(),))
    epsilon: float = 1e-9


# ----------------------------------------------------------------------------- activations
#: How an elementwise non-linearity maps the backward signal. ``x`` is the layer's input,
#: ``g`` the signal at its output.
ACTIVATION_BACKWARDS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor] | None] = {
    "pass": lambda x, y, g: g,  # LRP: relevance unchanged
    "gradient": None,  # the true derivative
    "guided": lambda x, y, g: g * tf.cast((x > 0) & (g > 0), g.dtype) * _slope(x, y),
    "deconvnet": lambda x, y, g: tf.maximum(g, 0.0),
}


def _slope(x: Tensor, y: Tensor) -> Tensor:
    """1 where the rectifier passes its input (y == x), else 0 (handles ReLU6 caps)."""
    return tf.cast(tf.equal(x, y), x.dtype)
