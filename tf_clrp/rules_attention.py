"""The rules of AttnLRP (Achtibat et al. 2024) and CP-LRP (Ali et al. 2022) for transformers.

LXT's explicit rules (``lxt/explicit/functional.py``) are the reference semantics:

* ``SoftmaxRule``: R_in = x ⊙ (R − p · ΣR) over the softmax axis (x the scores, p the
  probabilities; masked scores count as 0);
* ``UniformProduct``: a product of n activations (Q·Kᵀ, A·V, a gate) by the ε rule with
  the output counted n times, so each factor gets 1/n of the relevance; a product with a
  constant (one activation) is the identity;
* ``LayerNormIdentity``: LayerNorm / RMSNorm with 1/σ held constant (the identity rule on
  it), the ε rule through the remaining affine map (β in the denominator);
* ``ConstantWeights``: CP-LRP's A·V, the attention weights a constant: ε rule, all relevance
  to the values;
* ``NoRelevance``: CP-LRP's softmax: nothing flows to queries and keys.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tf_clrp.errors import UnsupportedLayerError
from tf_clrp.layers import activation_of, as_float32
from tf_clrp.rule_core import Rule, Site, _stabiliser, stabilize

Tensor = tf.Tensor


def _zeros_for(inputs: list[Tensor]) -> list[Tensor]:
    return [tf.zeros_like(x) for x in inputs]


def _softmax_axis(op: Any) -> int | tuple[int, ...]:
    axis = getattr(op, "axis", -1)
    return tuple(axis) if isinstance(axis, (list, tuple)) else int(axis)


def _kept_scores(site: Site) -> Tensor | None:
    """Which scores take part in the softmax (None: all), from the op's mask and causality."""
    op = site.layer
    mask = site.inputs[1] if len(site.inputs) > 1 else None
    if hasattr(op, "keep"):  # tf_clrp.attention.AttentionSoftmax
        return op.keep(site.inputs[0], None if mask is None else mask > 0.5)
    if mask is None:
        return None
    return tf.broadcast_to(mask > 0.5, tf.shape(site.inputs[0]))


class SoftmaxRule(Rule):
    """AttnLRP's softmax rule: R_in = x ⊙ (R − p · ΣR) over the softmax axis.

    x are the scores, p the probabilities. Scores excluded by a mask (and −inf scores) count
    as 0, so a fully masked row passes no relevance. The rule does not conserve relevance:
    its Taylor expansion at x keeps the bias term −(Σ_j p_j x_j)·ΣR (the paper's Prop. 3.1).
    """

    linear_in_relevance = True

    def forward(self, site: Site) -> tuple[Tensor, Any]:
        """The probabilities, kept with the map of participating scores."""
        op = site.layer
        if op is not None and not hasattr(op, "keep") and activation_of(op) != "softmax":
            raise UnsupportedLayerError(
                f"SoftmaxRule on layer {site.name!r} ({type(op).__name__}), which is not a softmax"
            )
        p = site.output()
        return p, (p, _kept_scores(site))

    def backward(self, site: Site, kept: Any, relevance: Tensor) -> list[Tensor]:
        """x ⊙ (R − p · ΣR)."""
        p, keep = kept
        x = site.inputs[0]
        excluded = (
            tf.math.is_inf(x)
            if keep is None
            else tf.logical_or(tf.logical_not(keep), tf.math.is_inf(x))
        )
        x = tf.where(excluded, tf.zeros_like(x), x)
        total = tf.reduce_sum(relevance, axis=_softmax_axis(site.layer), keepdims=True)
        return [x * (relevance - p * total)] + _zeros_for(site.inputs[1:])


class UniformProduct(Rule):
    """A product of n activations: ε rule with the output counted n times (1/n each).

    R_i = x_i ⊙ ∂z/∂x_iᵀ (R / (n·z + ε)) for a product z multilinear in its n inputs
    (Q·Kᵀ, A·V, a gate x ⊙ g); for n = 2 this is LXT's ``matmul`` / ``mul2`` rule. With one
    activation input (scaling by a constant, the 1/√d on the query) relevance passes
    unchanged (the identity rule).

    Args:
        epsilon: Stabilizer (LXT's 1e-8).
    """

    linear_in_relevance = True

    def __init__(self, epsilon: float = 1e-8) -> None:
        self.epsilon = _stabiliser("UniformProduct", epsilon)

    def forward(self, site: Site) -> tuple[Tensor, Any]:
        """The product, kept as the denominator."""
        z = site.output()
        return z, z

    def backward(self, site: Site, kept: Any, relevance: Tensor) -> list[Tensor]:
        """Each factor's share, x_i ⊙ ∂z/∂x_iᵀ (R / (n·z + ε))."""
        factors = list(site.inputs)
        if len(factors) == 1:
            return [relevance]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(factors)
            z = site.forward(factors, None)
        scaled = relevance / stabilize(len(factors) * kept, self.epsilon)
        grads = tape.gradient(z, factors, output_gradients=scaled)
        return [tf.zeros_like(x) if g is None else x * g for x, g in zip(factors, grads)]


class ConstantWeights(Rule):
    """CP-LRP's A·V: the first input (the attention weights) is a constant.

    The ε rule on the map V -> A·V: R_V = V ⊙ Aᵀ(R / (z + ε)); the weights get none.

    Args:
        epsilon: Stabilizer (LXT's ``epsilon_lrp`` uses 1e-6).
    """

    linear_in_relevance = True

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = _stabiliser("ConstantWeights", epsilon)

    def forward(self, site: Site) -> tuple[Tensor, Any]:
        """The output, kept as the denominator."""
        z = site.output()
        return z, z

    def backward(self, site: Site, kept: Any, relevance: Tensor) -> list[Tensor]:
        """All relevance to the inputs after the first."""
        weights, *others = site.inputs
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(others)
            z = site.forward([tf.stop_gradient(weights), *others], None)
        grads = tape.gradient(z, others, output_gradients=relevance / stabilize(kept, self.epsilon))
        return [tf.zeros_like(weights)] + [
            tf.zeros_like(x) if g is None else x * g for x, g in zip(others, grads)
        ]


class NoRelevance(Rule):
    """Passes no relevance (CP-LRP's softmax: queries and keys get none)."""

    linear_in_relevance = True
    negation_invariant = True

    def relevance(self, site: Site, relevance: Tensor) -> list[Tensor]:
        return _zeros_for(site.inputs)


def _broadcast(param: Tensor, x: Tensor, axes: tuple[int, ...]) -> Tensor:
    """A normalisation parameter (shape of the normalised axes) shaped to broadcast on x."""
    if axes == (len(x.shape) - 1,):
        return param
    return tf.reshape(param, [int(x.shape[a]) if a in axes else 1 for a in range(len(x.shape))])


class LayerNormIdentity(Rule):
    """LayerNorm (or RMSNorm) with 1/σ held constant: LXT's ``layer_norm`` and
    ``rms_norm_identity``.

    With σ a constant the layer is affine in x, y = γ ⊙ (x − mean x)/σ + β (RMSNorm:
    y = γ ⊙ x/rms); the ε rule runs through that map, β in the denominator:
    R_in = x ⊙ Jᵀ (R / (y + ε)), J = γ/σ ⊙ (I − 1/n).

    Args:
        epsilon: Stabilizer of the denominator (LXT's 1e-6).
    """

    linear_in_relevance = True

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = _stabiliser("LayerNormIdentity", epsilon)

    def forward(self, site: Site) -> tuple[Tensor, Any]:
        """The output, kept with 1/σ, γ and the normalised axes."""
        layer = site.layer
        (x,) = site.inputs
        rank = len(x.shape)
        name = type(layer).__name__
        if getattr(layer, "rms_scaling", False):
            raise UnsupportedLayerError(
                f"LayerNormIdentity: layer {site.name!r} uses rms_scaling=True, which this "
                "rule does not implement; give it a rule with layer_rules"
            )
        axis = getattr(layer, "axis", -1)
        axes = tuple(
            sorted(int(a) % rank for a in (axis if isinstance(axis, (list, tuple)) else [axis]))
        )
        is_rms = "RMSNorm" in name
        centred = x if is_rms else x - tf.reduce_mean(x, axis=axes, keepdims=True)
        variance = tf.reduce_mean(tf.square(centred), axis=axes, keepdims=True)
        inverse = tf.math.rsqrt(variance + float(getattr(layer, "epsilon", 1e-3)))
        if is_rms:
            gamma = getattr(layer, "scale", None)
        else:
            gamma = getattr(layer, "gamma", None) if getattr(layer, "scale", True) else None
        gamma = None if not hasattr(gamma, "shape") else _broadcast(as_float32(gamma), x, axes)
        output = site.output()
        return output, (output, inverse, gamma, axes, is_rms)

    def backward(self, site: Site, kept: Any, relevance: Tensor) -> list[Tensor]:
        """x ⊙ Jᵀ (R / (y + ε)) with σ constant."""
        output, inverse, gamma, axes, is_rms = kept
        (x,) = site.inputs
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            centred = x if is_rms else x - tf.reduce_mean(x, axis=axes, keepdims=True)
            y = centred * inverse if gamma is None else centred * inverse * gamma
        scaled = relevance / stabilize(output, self.epsilon)
        return [x * tape.gradient(y, x, output_gradients=scaled)]
