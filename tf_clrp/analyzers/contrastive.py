"""Contrastive LRP (Gu, Yang & Tresp 2018) and the two-seed engine SGLRP shares.

The target and its *dual virtual class* are two seeds of one mirrored model: the forward
(with every rule's denominator) runs once, and two backward passes of one persistent tape
yield both maps. For
``contrast="negated"`` the dual is a virtual output neuron appended to the mirrored model by
a canonizer (``canonizers.append_negated_outputs``), never an edit of user weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp import attention, canonizers, composites, rules
from tf_clrp.analyzers.base import Analyzer, ReplicaStep, check_neuron_selection_unit
from tf_clrp.analyzers.propagation import one_hot_selection
from tf_clrp.composites import Composite
from tf_clrp.errors import InputError, SelectionError
from tf_clrp.graph import Graph, trace_model
from tf_clrp.inputs import feed_specs
from tf_clrp.layers import Group
from tf_clrp.mirror import MirroredModel, Step
from tf_clrp.rules import Rule
from tf_clrp.selection import ALL_NEURONS, CODES, MAX_ACTIVATION, Selection

#: Per precision: a rebuilt dual whose share of its seed is below this fraction of the
#: target's (absolute) share is within rounding of zero (≈ 32 × the products' unit
#: roundoff: bfloat16 2⁻⁸, float32 products 2⁻²³ with bfloat16 denominators).
_UNRESOLVED = {"mixed": 32 * 2.0**-23, "bfloat16": 32 * 2.0**-8}

#: Codes of the named contrasts (non-negative codes are rival unit indices); from the one
#: table of codes, ``selection.CODES``.
CONTRASTS = {name: CODES[name] for name in ("others", "others_uniform", "negated")}

#: Smallest target seed mass SGLRP accepts: below it, relevance spread over an image's
#: inputs underflows float32 (smallest normal 1.2e-38) and the map would be all zero.
_SMALLEST_SEED_MASS = 1e-30


@dataclass(frozen=True)
class ContrastiveExplanation:
    """All parts of a contrastive explanation, each with the input's shape.

    Attributes:
        target: Relevance of the target (LRP of the target seed).
        dual: Relevance of the dual virtual class.
        contrastive: The contrastive map (``max(0, difference)`` for CLRP).
        difference: The unclipped signed difference.
    """

    target: np.ndarray
    dual: np.ndarray
    contrastive: np.ndarray
    difference: np.ndarray


def _normalize(r: tf.Tensor) -> tf.Tensor:
    """R / ΣR per sample; a sample whose relevance sums to 0 maps to 0."""
    axes = list(range(1, len(r.shape)))
    total = tf.reduce_sum(r, axis=axes, keepdims=True)
    return tf.math.divide_no_nan(r, total)


#: Backward modes through activations that are linear in the signal (``guided`` and
#: ``deconvnet`` are not: they clip it).
_LINEAR_ACTIVATION_MODES = frozenset({"pass", "gradient"})


def _linear_in_relevance(mirror: MirroredModel) -> bool:
    """Whether the mirrored backward is linear in the seed (for its fixed forward pass).

    Only then can a dual be rebuilt from other seeds' maps (reduced-precision CLRP). Rules
    declare it (``Rule.linear_in_relevance``, read by ``rules.declares``); layers without a
    rule keep their gradient, and activations are linear in "pass" and "gradient" mode only.
    """
    for step in mirror.steps:
        if step.rule is not None:
            if not rules.declares(step.rule, "linear_in_relevance"):
                return False
        elif step.node.group is Group.ACTIVATION and (
            mirror.composite.activation_mode(step.node.fused) not in _LINEAR_ACTIVATION_MODES
        ):
            return False
    return True


def default_composite(graph: Graph) -> Composite:
    """The contrastive analyzers' default rules: AttnLRP (``composites.attnlrp``) on a model
    with attention or LayerNorm/RMSNorm, else the CLRP paper's (z^B first, z⁺ elsewhere).

    Args:
        graph: The walked model (``trace_model``).
    """
    return composites.attnlrp() if attention.is_transformer(graph) else composites.zbox_zplus()


def dual_by_code(
    code: tf.Tensor, others: tf.Tensor, others_uniform: tf.Tensor, rival: tf.Tensor
) -> tf.Tensor:
    """Per row, the dual seed its contrast ``code`` (B, 1) names: ``others``,
    ``others_uniform``, ``rival`` (a class index >= 0), or zeros (no contrast)."""
    return tf.where(
        code == CONTRASTS["others"],
        others,
        tf.where(
            code == CONTRASTS["others_uniform"],
            others_uniform,
            tf.where(code >= 0, rival, tf.zeros_like(others)),
        ),
    )


def _negated_head_step(mirror: MirroredModel) -> Step:
    """The step of the mirrored model's head (the layer extended by its negation): the
    last step but the reordering one (see ``canonizers.append_negated_outputs``)."""
    return mirror.steps[-2]


class _TwoSeedAnalyzer(Analyzer):
    """Target and dual seeds through one forward and two backward passes."""

    accepts_feeds = True

    def __init__(
        self,
        model: Any,
        *,
        composite: Composite | None = None,
        rule: Rule | None = None,
        input_layer_rule: Any = None,
        layer_rules: dict[str, Rule] | None = None,
        neuron_selection_unit: str = "unit",
        use_tf_function: bool = True,
        **kwargs: Any,
    ) -> None:
        # One walk serves the choice of default rules and the analyzer's graph.
        traced = trace_model(model, kwargs.get("output_index"), kwargs.get("input_name"))
        composite = composites.assemble(
            composite,
            rule=rule,
            input_layer_rule=input_layer_rule,
            layer_rules=layer_rules,
            default=lambda: default_composite(traced),
        )
        kwargs.setdefault("canonizers", composite.canonizers)
        super().__init__(model, traced_graph=traced, **kwargs)
        check_neuron_selection_unit(neuron_selection_unit)
        self.composite = composite
        self.channels = int(self.output_shape[-1]) if neuron_selection_unit == "channel" else None
        if self.channels is not None:
            self.n_outputs = self.channels
        if self.neuron_selection_mode == "all":
            raise SelectionError(
                f"{type(self).__name__} explains one target unit per sample against its dual; "
                "neuron_selection_mode='all' has no dual (the map would be plain LRP)"
            )
        explained = (
            canonizers.append_negated_outputs(self.graph) if self.channels is None else self.graph
        )
        self.has_virtual_head = explained.virtual_outputs == "negated"
        self.mirror = MirroredModel(explained, composite, self.precision)
        #: Reduced precision rebuilds the dual from the contrast pass only for a backward that
        #: is linear in the seed; otherwise both seeds get their own pass.
        self.dual_by_linearity = _linear_in_relevance(self.mirror)
        n_real = int(np.prod([d for d in self.graph.output_shape[1:]]))
        self.n_real = n_real
        spec = tf.TensorSpec((None, *self.graph.input_shape[1:]), tf.float32)
        index = tf.TensorSpec((None,), tf.int32)
        self._parts = (
            tf.function(
                self._backward,
                autograph=False,
                input_signature=[spec, index, index, *feed_specs(self.graph)],
            )
            if use_tf_function
            else self._backward
        )
        self._forward = self._compile_forward(
            self.mirror, self.channels, columns=n_real, use_tf_function=use_tf_function
        )

    # ------------------------------------------------------------------ seeds
    def _dual_seed(self, y: tf.Tensor, target: tf.Tensor, contrast: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _target_seed(self, y: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _log_target_mass(self, y: tf.Tensor, target: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """log of the target seed's mass per sample (SGLRP computes it in log space)."""
        return tf.math.log(tf.reduce_sum(seed, axis=1))

    def _target_mask(self, y: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        return one_hot_selection(y[:, : self.n_real], indices, self.channels)

    def _backward(
        self, x: tf.Tensor, target: tf.Tensor, contrast: tf.Tensor, *feeds: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Both seeds' relevance, stacked, and the log of the target seed's mass per sample.

        One forward, two backward passes sharing it.

        In float32 the passes are the target and dual seeds themselves. With bfloat16
        products ("mixed", "bfloat16") they run in a basis that keeps the contrast accurate:
        the *contrast seed* v = s_t/m_t − s_d/m_d (m: seed mass) and the target seed s_t.
        LRP is linear in the seed for a fixed forward pass, so R_d = (R_t/m_t − R_v)·m_d.
        Rounding in a pass is relative to that pass's own relevance; the contrast's own pass
        keeps it relative to the (small) contrast instead of to the two nearly equal maps
        whose difference it is (BENCHMARKS.md, "Accuracy of the reduced precisions", has
        the measured agreement with float32 in both bases). A backward that is not
        linear in the seed (guided/deconvnet activations, undeclared rules) runs the target
        and dual seeds themselves at every precision.
        """
        with tf.GradientTape(watch_accessed_variables=False, persistent=True) as tape:
            tape.watch(x)
            y = self.mirror(x, feeds)
            y = tf.reshape(y, (tf.shape(y)[0], -1))
        logits = tf.stop_gradient(y)
        pad = tf.zeros_like(logits[:, self.n_real :])
        target_seed = tf.concat([self._target_seed(logits, target), pad], axis=1)
        dual_seed = self._dual_seed(logits, target, contrast)
        log_mass = self._log_target_mass(logits, target, target_seed)
        if self.precision == "float32" or not self.dual_by_linearity:
            return tf.stack(
                [
                    tape.gradient(y, x, output_gradients=target_seed),
                    tape.gradient(y, x, output_gradients=dual_seed),
                ]
            ), log_mass
        return self._parts_in_contrast_basis(tape, y, x, target_seed, dual_seed), log_mass

    def _parts_in_contrast_basis(
        self,
        tape: tf.GradientTape,
        y: tf.Tensor,
        x: tf.Tensor,
        target_seed: tf.Tensor,
        dual_seed: tf.Tensor,
    ) -> tf.Tensor:
        """Target and dual maps from passes for v = s_t/m_t − s_d/m_d and s_t (stacked)."""
        target_mass = tf.reduce_sum(target_seed, axis=1, keepdims=True)
        dual_mass = tf.reduce_sum(dual_seed, axis=1, keepdims=True)
        contrast_seed = tf.math.divide_no_nan(target_seed, target_mass) - tf.math.divide_no_nan(
            dual_seed, dual_mass
        )
        contrast_map = tape.gradient(y, x, output_gradients=contrast_seed)
        target_map = tape.gradient(y, x, output_gradients=target_seed)
        axes = tf.range(1, tf.rank(x))
        shape = tf.concat([[-1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
        ratio = tf.reshape(tf.math.divide_no_nan(dual_mass, target_mass), shape)
        dual_map = target_map * ratio - contrast_map * tf.reshape(dual_mass, shape)
        # The rebuilt dual is a difference of two nearly equal terms when almost none of the
        # dual's seed reaches the input (z⁺ drops it): its sum is then below the rounding of
        # the products, and normalising it would amplify noise. Such samples get their own
        # dual pass (rare: the seed must be nearly lost on the way down).
        target_share = tf.math.divide_no_nan(tf.reduce_sum(target_map, axes), target_mass[:, 0])
        target_abs = tf.math.divide_no_nan(
            tf.reduce_sum(tf.abs(target_map), axes), target_mass[:, 0]
        )
        dual_share = target_share - tf.reduce_sum(contrast_map, axes)
        unresolved = (dual_mass[:, 0] > 0) & (
            tf.abs(dual_share) <= _UNRESOLVED[self.precision] * target_abs
        )

        def direct_dual() -> tf.Tensor:
            direct = tape.gradient(y, x, output_gradients=dual_seed)
            return tf.where(tf.reshape(unresolved, shape), direct, dual_map)

        dual_map = tf.cond(tf.reduce_any(unresolved), direct_dual, lambda: dual_map)
        return tf.stack([target_map, dual_map])

    # ------------------------------------------------------------------ public
    def analyze(
        self,
        x: Any,
        neuron_selection: Any = None,
        batch_size: int | None = None,
        contrast: Any = None,
        return_parts: bool = False,
    ) -> Any:
        """Explains a batch contrastively.

        Args:
            x: Input batch.
            neuron_selection: Target unit(s): "max_activation", an int, or one int per sample.
            batch_size: Chunk size.
            contrast: Override the analyzer's contrast for this call.
            return_parts: Return a ContrastiveExplanation instead of the contrastive map.

        Returns:
            The contrastive map (float32, x's shape), or all parts.
        """
        return super().analyze(
            x, neuron_selection, batch_size, contrast=contrast, return_parts=return_parts
        )

    def _contrast_codes(self, contrast: Any, batch: int) -> np.ndarray:
        raise NotImplementedError

    def chunk_options(
        self, kwargs: dict[str, Any], index: np.ndarray, total: int | None = None
    ) -> dict[str, Any]:
        """Indexes a per-sample ``contrast`` (one class index per sample) by ``index``."""
        contrast = kwargs.get("contrast")
        if contrast is None:
            contrast = getattr(self, "contrast", None)
        if contrast is None or isinstance(contrast, str) or np.ndim(contrast) != 1:
            return kwargs
        contrast = np.asarray(contrast)
        if total is not None and len(contrast) != total:
            raise SelectionError(
                f"contrast has {len(contrast)} entries for a batch of {total} samples"
            )
        if len(index) and int(index[-1]) >= len(contrast):
            raise SelectionError(
                f"contrast has {len(contrast)} entries but sample {int(index[-1])} needs one; "
                "give one contrast per sample"
            )
        return {**kwargs, "contrast": contrast[index]}

    def _combine(self, target: tf.Tensor, dual: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def replica_step(
        self,
        x: np.ndarray,
        selection: Selection,
        contrast: Any = None,
        return_parts: bool = False,
        feeds: tuple[np.ndarray, ...] = (),
    ) -> ReplicaStep:
        """Both seeds' backward and their combination (see ``Analyzer.replica_step``);
        ``feeds`` are the model's other inputs for these rows (see ``tf_clrp.inputs``)."""
        if selection.seeds is not None:
            raise SelectionError(
                f"{type(self).__name__} takes target indices, not seed arrays, as "
                "neuron_selection (the seeds are defined by the method)"
            )
        assert selection.indices is not None
        if np.any(selection.indices == ALL_NEURONS):
            raise SelectionError(
                f"{type(self).__name__} explains one target unit per sample against its dual; "
                "neuron_selection='all' has no dual (the map would be plain LRP): pass a "
                "target index, or use an lrp.* analyzer for all units"
            )
        codes = self._contrast_codes(contrast, len(x))
        selection = self._check_rivals(x, selection, codes, feeds)
        self._check_sample_bounds(np.asarray(x))

        def fn(
            xs: tf.Tensor, target: tf.Tensor, code: tf.Tensor, *fed: tf.Tensor
        ) -> tuple[tf.Tensor, ...]:
            parts, log_mass = self._parts(xs, target, code, *fed)
            difference, contrastive = self._combine(parts[0], parts[1])
            return parts[0], parts[1], contrastive, difference, log_mass

        def finish(out: tuple[np.ndarray, ...]) -> Any:
            self._check_seed_mass(out[4], selection)
            explanation = ContrastiveExplanation(*out[:4])
            return explanation if return_parts else explanation.contrastive

        return ReplicaStep((id(self), "parts"), fn, (x, selection.indices, codes, *feeds), finish)

    def _check_sample_bounds(self, x: np.ndarray) -> None:
        """Refuses samples whose own per-channel bounds collapse in every channel.

        The default first-layer z^B takes each sample's per-channel min/max as bounds. Where
        low == high in a channel (a constant image channel; every feature of a flat Dense
        input) that channel's z^B contributions are 0. If all of a sample's channels collapse
        its map is meaningless (error; an all-zero sample maps to exactly 0 and passes); if
        some do, they get no relevance (warning).
        """
        step = next(
            (
                s
                for s in self.mirror.steps
                if s.is_first and s.rule is not None and s.rule.needs_bounds
            ),
            None,
        )
        if step is None or getattr(step.rule, "low", None) is not None:
            return
        axes = tuple(range(1, x.ndim - 1))
        collapsed = (np.min(x, axis=axes) == np.max(x, axis=axes)).reshape(len(x), -1)
        fix = (
            f"pass input_layer_rule=(low, high) with the data's range (e.g. (0.0, 1.0)) "
            f"for the first layer {step.node.name!r}"
        )
        # an all-zero sample is exempt: a = low = high = 0 makes its map exactly 0
        nonzero = np.any(x.reshape(len(x), -1) != 0, axis=1)
        whole = np.flatnonzero(collapsed.all(axis=1) & nonzero)
        if whole.size:
            raise InputError(
                f"sample(s) {whole[:10].tolist()} of the batch have no spread in any input "
                f"channel (low == high; for a flat Dense input every feature is its own "
                f"channel), so the per-sample z^B bounds of the first layer "
                f"{step.node.name!r} make every contribution 0 and the map meaningless: {fix}"
            )
        partial = np.flatnonzero(collapsed.any(axis=1))
        if partial.size:
            channels = np.flatnonzero(collapsed[partial[0]]).tolist()
            warnings.warn(
                f"sample(s) {partial[:10].tolist()} of the batch have constant input channels "
                f"(sample {int(partial[0])}: channels {channels[:10]}); the per-sample z^B "
                f"bounds of the first layer {step.node.name!r} give those channels no "
                f"relevance. To attribute them, {fix}",
                stacklevel=4,
            )

    def _check_rivals(
        self,
        x: np.ndarray,
        selection: Selection,
        codes: np.ndarray,
        feeds: tuple[np.ndarray, ...] = (),
    ) -> Selection:
        """Refuses a rival class equal to the target (its dual is the target: a zero map).

        Returns:
            ``selection``, with "max_activation" resolved when a rival had to be compared.
        """
        rivals = codes >= 0
        if not np.any(rivals):
            return selection
        if np.any(selection.indices[rivals] == MAX_ACTIVATION):
            selection = self.resolve_max_activation(x, selection, feeds)
        same = np.flatnonzero(rivals & (selection.indices == codes))
        if same.size:
            i = int(same[0])
            raise SelectionError(
                f"contrast={int(codes[i])} is the target unit itself for sample {i}: the dual "
                "would equal the target and the contrastive map be 0; choose another rival "
                "class (or contrast='others')"
            )
        return selection

    def _check_seed_mass(self, log_mass: np.ndarray, selection: Selection) -> None:
        """Raises if a sample's target seed is too small for float32 (no check by default)."""

    def _empty(self, x: np.ndarray, contrast: Any = None, return_parts: bool = False) -> Any:
        zeros = np.zeros_like(x, dtype=np.float32)
        return ContrastiveExplanation(zeros, zeros, zeros, zeros) if return_parts else zeros

    @staticmethod
    def _concatenate(parts: list[Any]) -> Any:
        if isinstance(parts[0], ContrastiveExplanation):
            return ContrastiveExplanation(
                *(
                    np.concatenate([getattr(p, f) for p in parts], axis=0)
                    for f in ("target", "dual", "contrastive", "difference")
                )
            )
        return np.concatenate(parts, axis=0)


class CLRP(_TwoSeedAnalyzer):
    """Contrastive LRP: max(0, R_target/ΣR_target − R_dual/ΣR_dual) per sample.

    Args:
        model: The Keras model.
        contrast: The dual virtual class: "others" (every other class seeded with its own
            |z_k|, the authors' code "type1"), "others_uniform" (|z_j|/(C−1) on each other
            class, the paper's wording with the authors' abs), "negated" (the target's
            last-layer weights negated, "type2"), an int k (one rival class: "why j and not
            k"), or one int per sample. Contrasts whose dual cannot differ from the target
            are refused (docs/clrp.md, "Refused").
        **kwargs: ``Analyzer`` options (output_index, layer_name, batch_size, precision...)
            and the keyword arguments below. With ``precision`` "mixed" or "bfloat16" the
            backward passes run for the contrast seed and the target seed, and the dual is
            rebuilt by linearity (docs/clrp.md).

    Keyword Args:
        input_layer_rule (Any): First-layer rule; default z^B with each sample's own per-channel
            min/max as bounds (AttnLRP on transformers: ε). (low, high) gives fixed bounds
            (see ``tf_clrp.bounds``).
        composite (Composite): Any composite instead of the default rules: the paper's (z^B
            first, z⁺ elsewhere), or AttnLRP (``composites.attnlrp``) on a model with
            attention or LayerNorm (``default_composite``).
        rule (Rule): One rule for every linear layer instead of the paper's.
        layer_rules (dict): Per-layer (name or class) rule overrides.
        neuron_selection_unit (str): "unit" (flat index) or "channel" (hidden conv
            channels).
    """

    def __init__(self, model: Any, contrast: Any = "others", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.contrast = contrast
        per_sample = not isinstance(contrast, str) and np.ndim(contrast) == 1
        self._contrast_codes(contrast, len(contrast) if per_sample else 1)  # validate early

    def _contrast_codes(self, contrast: Any, batch: int) -> np.ndarray:
        contrast = self.contrast if contrast is None else contrast
        if isinstance(contrast, str):
            if contrast not in CONTRASTS:
                raise SelectionError(
                    f"contrast={contrast!r} is not one of {sorted(CONTRASTS)} or a class index"
                )
            if contrast == "negated":
                self._check_negated_dual()
            elif self.n_outputs < 2:
                raise SelectionError(
                    f"contrast={contrast!r} needs at least two output units, but the explained "
                    f"output has {self.n_outputs}: the dual would be empty (the map plain LRP); "
                    "use contrast='negated' for a single-logit model"
                )
            return np.full(batch, CONTRASTS[contrast], np.int32)
        codes = np.asarray(contrast)
        if codes.dtype.kind not in "iu":
            raise SelectionError(f"contrast must be a name or class index, got {contrast!r}")
        codes = np.full(batch, int(codes)) if codes.ndim == 0 else codes
        if codes.shape != (batch,):
            raise SelectionError(
                f"contrast has {codes.size} entries for a batch of {batch} samples"
            )
        if np.any((codes < 0) | (codes >= self.n_outputs)):
            raise SelectionError(
                f"contrast index {int(codes[(codes < 0) | (codes >= self.n_outputs)][0])} is "
                f"out of range: the explained output has {self.n_outputs} units"
            )
        return codes.astype(np.int32)

    def _check_negated_dual(self) -> None:
        """Refuses contrast="negated" where its dual cannot differ from the target."""
        last = self.graph.nodes[-1] if self.graph.nodes else None
        if not self.has_virtual_head:
            raise SelectionError(
                "contrast='negated' needs the explained output to come straight from a "
                "Dense/Conv layer (an EinsumDense whose kernel makes the output's last axis); "
                f"it comes from {last.name!r} ({last.kind})"
                if last
                else "contrast='negated' needs a Dense/Conv output layer"
            )
        assert last is not None
        rule = _negated_head_step(self.mirror).rule
        if rule is None or rules.declares(rule, "negation_invariant"):
            raise SelectionError(
                f"contrast='negated' with {rule or 'the plain gradient'!r} on the output "
                f"layer {last.name!r}: that rule's relevance only changes sign when the "
                "layer's weights are negated, so the negated dual normalises to the target "
                "itself and every map would be 0. Use a rule that is not symmetric under "
                f"weight negation there (layer_rules={{{last.name!r}: tf_clrp.rules.ZPlus()}}, "
                "as in the paper) or another contrast ('others')"
            )

    def _target_seed(self, y: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        real = y[:, : self.n_real]
        return self._target_mask(y, target) * tf.abs(real)

    def _dual_seed(self, y: tf.Tensor, target: tf.Tensor, contrast: tf.Tensor) -> tf.Tensor:
        real = tf.abs(y[:, : self.n_real])
        target_mask = self._target_mask(y, target)
        target_value = tf.reduce_sum(target_mask * real, axis=1, keepdims=True)
        n_units = tf.cast(self.n_outputs, tf.float32)
        others = (1.0 - target_mask) * real
        uniform = (1.0 - target_mask) * target_value / tf.maximum(n_units - 1.0, 1.0)
        rival_mask = one_hot_selection(y[:, : self.n_real], tf.maximum(contrast, 0), self.channels)
        rival = rival_mask * real
        code = contrast[:, None]
        seed = dual_by_code(code, others, uniform, rival)
        extra = y[:, self.n_real :]
        if self.has_virtual_head:
            negated = tf.where(code == CONTRASTS["negated"], target_mask * target_value, 0.0)
            return tf.concat([seed, negated], axis=1)
        return tf.concat([seed, tf.zeros_like(extra)], axis=1)

    def _combine(self, target: tf.Tensor, dual: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        difference = _normalize(target) - _normalize(dual)
        return difference, tf.maximum(difference, 0.0)


__all__ = ["CLRP", "ContrastiveExplanation", "MAX_ACTIVATION"]
