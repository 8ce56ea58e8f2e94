"""One analyzer class for the LRP family and the gradient family.

Both are a composite on the mirrored model plus a seed: LRP seeds the selected output with
its own value (relevance), gradient methods with 1. Input × gradient multiplies by x.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp import checks
from tf_clrp.analyzers.base import (
    Analyzer,
    ReplicaStep,
    check_neuron_selection_unit,
    selection_scores,
)
from tf_clrp.composites import Composite
from tf_clrp.inputs import feed_specs
from tf_clrp.selection import ALL_NEURONS, MAX_ACTIVATION, Selection

#: How the selected output unit is seeded: its value, its absolute value, its positive part
#: (iNNvestigate's Deep Taylor), or 1 (gradients).
SEED_MODES = ("value", "abs", "relu", "one")


def one_hot_selection(y: tf.Tensor, indices: tf.Tensor, channels: int | None = None) -> tf.Tensor:
    """Mask of the selected unit per row of ``y`` (B, n).

    Args:
        y: Flattened output values (B, n).
        indices: One index per row; -1 = arg-max, -2 = all units.
        channels: If set, indices select channels (the last axis of the unflattened output,
            n = positions × channels) and the mask covers every position of the channel.

    Returns:
        A (B, n) mask.
    """
    scores = selection_scores(y, channels)
    chosen = tf.where(
        indices == MAX_ACTIVATION, tf.cast(tf.argmax(scores, axis=1), tf.int32), indices
    )
    mask = tf.one_hot(tf.maximum(chosen, 0), tf.shape(scores)[1], dtype=y.dtype)
    if channels is not None:
        mask = tf.reshape(
            tf.broadcast_to(
                mask[:, None, :], tf.shape(tf.reshape(y, (tf.shape(y)[0], -1, channels)))
            ),
            tf.shape(y),
        )
    return tf.where((indices == ALL_NEURONS)[:, None], tf.ones_like(y), mask)


def seed_values(y: tf.Tensor, mode: str) -> tf.Tensor:
    """The seed value of each unit: y, |y| or 1."""
    if mode == "value":
        return y
    if mode == "abs":
        return tf.abs(y)
    if mode == "relu":
        return tf.nn.relu(y)
    return tf.ones_like(y)


class Propagation(Analyzer):
    """Relevance or (modified) gradient of one output unit, by one backward pass.

    Args:
        model: The Keras model.
        composite: Rules per layer and the backward through activations.
        seed: "value" (LRP: R = y_selected), "abs" (R = |y_selected|), "relu"
            (R = max(0, y_selected)) or "one" (gradient).
        multiply_by_input: Return x ⊙ result (input × gradient).
        neuron_selection_unit: "unit" (flat index into the output) or "channel" (indices
            select channels of a hidden layer; the seed covers every position).
        postprocess: None, "abs" or "square" (iNNvestigate's gradient postprocessing).
        use_tf_function: Compile the explain step (default); False runs eagerly.
        **kwargs: ``Analyzer`` options (output_index, layer_name, batch_size, ...).
    """

    accepts_feeds = True

    def __init__(
        self,
        model: Any,
        composite: Composite,
        *,
        seed: str = "value",
        multiply_by_input: bool = False,
        postprocess: str | None = None,
        use_tf_function: bool = True,
        neuron_selection_unit: str = "unit",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("canonizers", composite.canonizers)
        super().__init__(model, **kwargs)
        check_neuron_selection_unit(neuron_selection_unit)
        self.channels = int(self.output_shape[-1]) if neuron_selection_unit == "channel" else None
        n_units = self.n_outputs
        if self.channels is not None:
            self.n_outputs = self.channels
        if seed not in SEED_MODES:
            raise ValueError(f"seed={seed!r}; use one of {SEED_MODES}")
        if postprocess not in (None, "abs", "square"):
            raise ValueError(f"postprocess={postprocess!r}; use None, 'abs' or 'square'")
        self.composite = composite
        self.seed = seed
        self.multiply_by_input = multiply_by_input
        self.postprocess = postprocess
        self.mirror = self._mirror(composite)
        #: (layer, ε) of the output layer's rule: LRP seeds below ε are absorbed (warned).
        self._absorbing = None if seed == "one" else checks.output_stabiliser(self.mirror.steps)
        spec = tf.TensorSpec((None, *self.graph.input_shape[1:]), tf.float32)
        fed = feed_specs(self.graph)
        self._by_index = self._compile(
            self._backward_by_index, use_tf_function, [spec, tf.TensorSpec((None,), tf.int32), *fed]
        )
        self._by_seed = self._compile(
            self._backward_by_seed,
            use_tf_function,
            [spec, tf.TensorSpec((None, n_units), tf.float32), *fed],
        )
        self._forward = self._compile_forward(
            self.mirror, self.channels, use_tf_function=use_tf_function
        )

    @staticmethod
    def _compile(fn: Any, use_tf_function: bool, signature: list[tf.TensorSpec]) -> Any:
        return (
            tf.function(fn, input_signature=signature, autograph=False) if use_tf_function else fn
        )

    # ------------------------------------------------------------------ backward
    def _backward(
        self, x: tf.Tensor, make_seed: Any, feeds: tuple[tf.Tensor, ...] = ()
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(the map, each sample's total initial relevance Σ seed)."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            y = self.mirror(x, feeds)
            y = tf.reshape(y, (tf.shape(y)[0], -1))
        seed = make_seed(tf.stop_gradient(y))
        result = tape.gradient(y, x, output_gradients=seed)
        if result is None:
            result = tf.zeros_like(x)
        if self.multiply_by_input:
            result = result * x
        if self.postprocess == "abs":
            result = tf.abs(result)
        elif self.postprocess == "square":
            result = tf.square(result)
        return result, tf.reduce_sum(seed, axis=1)

    def _backward_by_index(
        self, x: tf.Tensor, indices: tf.Tensor, *feeds: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self._backward(
            x,
            lambda y: one_hot_selection(y, indices, self.channels) * seed_values(y, self.seed),
            feeds,
        )

    def _backward_by_seed(
        self, x: tf.Tensor, seeds: tf.Tensor, *feeds: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self._backward(x, lambda y: seeds, feeds)

    def replica_step(
        self,
        x: np.ndarray,
        selection: Selection,
        feeds: tuple[np.ndarray, ...] = (),
        **analyze_kwargs: Any,
    ) -> ReplicaStep:
        """One backward pass of the chunk (see ``Analyzer.replica_step``); ``feeds`` are the
        model's other inputs for these rows (see ``tf_clrp.inputs``)."""
        if analyze_kwargs:
            raise TypeError(f"unexpected analyze() arguments: {sorted(analyze_kwargs)}")
        finish = self._finish_maps
        if selection.seeds is not None:
            return ReplicaStep(
                (id(self), "by_seed"), self._by_seed, (x, selection.seeds, *feeds), finish
            )
        return ReplicaStep(
            (id(self), "by_index"), self._by_index, (x, selection.indices, *feeds), finish
        )

    def _finish_maps(self, out: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """The float32 maps; warns about seeds the output rule's stabiliser absorbed."""
        maps, seed_totals = out
        if self._absorbing is not None:
            layer, epsilon = self._absorbing
            checks.warn_absorbed_seeds(seed_totals, maps, epsilon, layer)
        return maps.astype(np.float32)
