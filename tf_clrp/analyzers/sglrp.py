"""Softmax-gradient LRP (Iwana et al. 2019): CLRP's two-seed engine with softmax seeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp.analyzers.contrastive import (
    _SMALLEST_SEED_MASS,
    CONTRASTS,
    _TwoSeedAnalyzer,
)
from tf_clrp.errors import InputError, SelectionError
from tf_clrp.selection import MAX_ACTIVATION, Selection


class SGLRP(_TwoSeedAnalyzer):
    """Softmax-gradient LRP (Iwana, Kuroki & Uchida 2019).

    With p = softmax(z): the target is seeded with p_j(1 − p_j), the dual with p_j·p_k on
    every k ≠ j, and the map is R_t − R_d·(ΣR_t/ΣR_d) (``difference``); ``analyze`` returns
    its positive part. Rules as for CLRP (the paper's by default, AttnLRP on transformers: see
    ``default_composite``). The seeds are computed
    in log space (1 − p_j as Σ_{k≠j} p_k), so they stay exact when p_j rounds to 1; a sample
    whose p_j(1 − p_j) is below 1e-30 is refused (its relevance would underflow float32).
    """

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if self.n_outputs < 2:
            raise SelectionError(
                f"SGLRP needs at least two output units, but the explained output has "
                f"{self.n_outputs}: the softmax of one logit is constant (every map 0)"
            )

    def _contrast_codes(self, contrast: Any, batch: int) -> np.ndarray:
        if contrast is not None:
            raise SelectionError("SGLRP has no contrast option: its dual is fixed by softmax")
        return np.full(batch, CONTRASTS["others"], np.int32)

    def _log_probabilities(
        self, y: tf.Tensor, target: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """(log p, target mask, log p_j, log(1 − p_j)), each exact when p_j rounds to 1."""
        log_p = tf.nn.log_softmax(y[:, : self.n_real], axis=1)
        mask = self._target_mask(y, target)
        never = tf.fill(tf.shape(log_p), tf.constant(-np.inf, log_p.dtype))
        log_target = tf.reduce_logsumexp(tf.where(mask > 0, log_p, never), axis=1, keepdims=True)
        log_rest = tf.reduce_logsumexp(tf.where(mask > 0, never, log_p), axis=1, keepdims=True)
        return log_p, mask, log_target, log_rest

    def _target_seed(self, y: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        _, mask, log_target, log_rest = self._log_probabilities(y, target)
        return mask * tf.exp(log_target + log_rest)

    def _log_target_mass(self, y: tf.Tensor, target: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        _, mask, log_target, log_rest = self._log_probabilities(y, target)
        return (log_target + log_rest)[:, 0] + tf.math.log(tf.reduce_sum(mask, axis=1))

    def _dual_seed(self, y: tf.Tensor, target: tf.Tensor, contrast: tf.Tensor) -> tf.Tensor:
        log_p, mask, log_target, _ = self._log_probabilities(y, target)
        seed = (1.0 - mask) * tf.exp(log_p + log_target)
        return tf.concat([seed, tf.zeros_like(y[:, self.n_real :])], axis=1)

    def _check_seed_mass(self, log_mass: np.ndarray, selection: Selection) -> None:
        """Raises for a sample whose softmax gradient p_j(1 − p_j) underflows float32."""
        small = np.flatnonzero(~(log_mass >= np.log(_SMALLEST_SEED_MASS)))
        if small.size:
            i = int(small[0])
            target = int(selection.indices[i]) if selection.indices is not None else -1
            unit = "its arg-max unit" if target == MAX_ACTIVATION else f"target {target}"
            raise InputError(
                f"SGLRP: sample {i}'s softmax gradient p_j(1 - p_j) for {unit} is "
                f"exp({float(log_mass[i]):.1f}), below {_SMALLEST_SEED_MASS:g}: its relevance "
                "would underflow float32 and the map be all zero (the model is all but "
                "certain of that class). CLRP's normalised maps do not depend on this scale."
            )

    def _combine(self, target: tf.Tensor, dual: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        axes = list(range(1, len(target.shape)))
        ratio = tf.math.divide_no_nan(
            tf.reduce_sum(target, axis=axes, keepdims=True),
            tf.reduce_sum(dual, axis=axes, keepdims=True),
        )
        difference = target - dual * ratio
        return difference, tf.maximum(difference, 0.0)


__all__ = ["SGLRP"]
