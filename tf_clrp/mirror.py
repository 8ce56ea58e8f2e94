"""The mirrored relevance model.

The same forward computation as the user's model, but every layer call that has a rule is
a ``tf.custom_gradient`` op whose backward applies the rule, and elementwise
non-linearities hand the signal back as the composite says. One ``tape.gradient`` of the
seeded output then yields relevance (LRP) or a (modified) gradient at the input.

Several seeds share one forward pass: rule denominators are computed in the forward, so
each further ``tape.gradient`` of a persistent tape (one per seed) costs only the rules'
transposed products.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp import layers, rules
from tf_clrp.composites import Composite
from tf_clrp.errors import UnsupportedLayerError
from tf_clrp.graph import OPAQUE_GROUP, Graph, Node, collapse_layers, opaque_refusal

#: Groups whose gradient moves relevance exactly (permutations, copies, routing), and
#: embeddings of fed (integer, never explained) inputs, which carry no relevance.
GRADIENT_GROUPS = frozenset({"reshape", "max_pool", "concatenate", "embedding"})

#: Layers already covered by a non-rectifier warning (weak: forgotten with their model), so
#: that the warning comes once per model and activation, not once per analyzer or process.
_WARNED_LAYERS: weakref.WeakSet[Any] = weakref.WeakSet()

#: Accepted ``precision`` values -> (dtype of the rules' denominators, dtype of their
#: transposed products). Denominators are shared by every seed of a call; transposed
#: products carry each seed's relevance.
PRECISIONS = {
    "float32": (tf.float32, tf.float32),
    "mixed": (tf.bfloat16, tf.float32),
    "bfloat16": (tf.bfloat16, tf.bfloat16),
}


def _warn_non_rectifiers(nodes: list[Node]) -> None:
    """One warning per activation name for the not yet warned layers among ``nodes``."""
    by_activation: dict[str, list[Node]] = {}
    for node in nodes:
        by_activation.setdefault(node.activation or "?", []).append(node)
    for name, group in by_activation.items():
        fresh = [n for n in group if n.op is None or n.op not in _WARNED_LAYERS]
        if not fresh:
            continue
        _WARNED_LAYERS.update(n.op for n in group if n.op is not None)
        others = f" (and {len(group) - 1} more)" if len(group) > 1 else ""
        warnings.warn(
            f"layer {group[0].name!r}{others} uses the non-rectifier activation {name!r}; LRP "
            "hands relevance through it unchanged, which is exact only for rectifiers (ReLU "
            "family): read the maps as an approximation.",
            stacklevel=4,
        )


@dataclass(frozen=True)
class Step:
    """A node of the graph together with how its backward behaves."""

    node: Node
    rule: rules.Rule | None       # None: keep the node's own gradient
    is_first: bool
    nonnegative: tuple[bool, ...]


def _site_forward(node: Node) -> Callable[[list[tf.Tensor], tf.Tensor | None], tf.Tensor]:
    if node.linear is not None:
        spec = node.linear
        return lambda xs, kernel: spec.forward(xs[0], kernel)
    if node.group == "add" and len(node.inputs) > 1:
        return lambda xs, kernel: tf.add_n(xs)
    return lambda xs, kernel: tf.cast(node.run(list(xs))[0], tf.float32)


def _gate_order(node: Node, graph: Graph) -> tuple[int, ...]:
    """Input positions of a Multiply, main path first (the largest input), gates after."""
    sizes = []
    for t in node.inputs:
        shape = graph.shapes.get(t, ())
        sizes.append(int(np.prod([d for d in shape[1:] if d is not None] or [1])))
    return tuple(sorted(range(len(node.inputs)), key=lambda i: -sizes[i]))


class MirroredModel:
    """Runs a canonical graph with rule-bearing custom-gradient ops.

    Args:
        graph: A canonical graph (see ``canonizers.canonize``).
        composite: Which rule each layer gets.
        precision: "float32" (default), "mixed" or "bfloat16": the dtype of the extra
            convolutions of rules whose terms read the plain input — "mixed" runs their
            denominators in bfloat16 and their transposed products in float32, "bfloat16"
            both; everything else, and every value handed between layers, stays float32.
    """

    def __init__(self, graph: Graph, composite: Composite, precision: str = "float32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}; use one of {sorted(PRECISIONS)}")
        self.graph = collapse_layers(graph, composite.layer_map)
        self.composite = composite
        self.denominator_dtype, self.compute_dtype = PRECISIONS[precision]
        self.steps = self._plan()
        self.first_rules = [s.rule for s in self.steps if s.is_first and s.rule is not None]
        self.needs_bounds = any(r.needs_bounds for r in self.first_rules)

    # ------------------------------------------------------------------ planning
    def _plan(self) -> list[Step]:
        raw = {self.graph.input_id}
        nonnegative: set[int] = set()
        steps = []
        for node in self.graph.nodes:
            inputs_raw = all(t in raw for t in node.inputs)
            is_first = node.linear is not None and node.group != "batch_norm" and inputs_raw
            rule = self._rule(node, is_first)
            steps.append(Step(node, rule, is_first, tuple(t in nonnegative for t in node.inputs)))
            if self._is_preprocessing(node) and inputs_raw:
                raw.update(node.outputs)
            if self._output_nonnegative(node, nonnegative):
                nonnegative.update(node.outputs)
        if self.composite.activation == "pass":
            _warn_non_rectifiers([s.node for s in steps if s.node.group == "activation"
                                  and s.node.activation not in layers.RECTIFIERS])
        return steps

    @staticmethod
    def _is_preprocessing(node: Node) -> bool:
        """Layers between the input and the first linear layer that keep it "the input":
        reshapes, Rescaling/Normalization and an input BatchNorm (elementwise affine)."""
        return node.group in ("reshape", "rescaling", "batch_norm")

    @staticmethod
    def _output_nonnegative(node: Node, nonnegative: set[int]) -> bool:
        if node.group == "activation":
            return node.activation in layers.NONNEGATIVE_ACTIVATIONS
        if node.group in ("max_pool", "avg_pool", "reshape", "concatenate", "add", "multiply"):
            return all(t in nonnegative for t in node.inputs)
        return False

    def _rule(self, node: Node, is_first: bool) -> rules.Rule | None:
        if node.group == OPAQUE_GROUP and not self.composite.is_plain_gradient:
            raise opaque_refusal(node)
        rule = self.composite.rule_for(node.name, node.kind, node.group, is_first)
        if rule is not None or node.group in GRADIENT_GROUPS or node.group == "activation":
            return rule
        if node.group is None and not self.composite.is_plain_gradient:
            raise UnsupportedLayerError(
                f"layer {node.name!r} of type {node.kind} has no relevance rule. If relevance "
                "may pass through it unchanged, pass layer_rules={"
                f"{node.kind!r}: tf_clrp.rules.Pass()}} (or rules.Gradient(), rules.Norm(), "
                "any Rule) to create_analyzer"
                + (f". It was not walked inside: {node.untraced}" if node.untraced else "")
                + node.whole_layer_hint
            )
        if self.composite.defaults:  # an LRP composite without a rule for this group
            raise UnsupportedLayerError(
                f"composite {self.composite.name!r} has no rule for layer {node.name!r} "
                f"({node.kind}, group {node.group!r}); add one with layer_rules="
                f"{{{node.group!r}: <Rule>}}{node.whole_layer_hint}"
            )
        return None

    # ------------------------------------------------------------------ running
    def input_bounds(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor] | None:
        """Lowest/highest input values for the first-layer rule, shaped like ``x``."""
        if not self.needs_bounds:
            return None
        rule = next(r for r in self.first_rules if r.needs_bounds)
        low = getattr(rule, "low", None)
        high = getattr(rule, "high", None)
        if low is None:
            axes = list(range(1, len(x.shape) - 1))
            low = tf.reduce_min(x, axis=axes, keepdims=True)
            high = tf.reduce_max(x, axis=axes, keepdims=True)
        return (tf.broadcast_to(tf.cast(low, tf.float32), tf.shape(x)),
                tf.broadcast_to(tf.cast(high, tf.float32), tf.shape(x)))

    def __call__(self, x: tf.Tensor, feeds: Sequence[tf.Tensor] = ()) -> tf.Tensor:
        """Runs the mirrored forward.

        Args:
            x: Input batch (float32).
            feeds: The model's other inputs, one per ``graph.feeds`` (fed through unchanged).

        Returns:
            The explained output.
        """
        bounds = self.input_bounds(x)
        values: dict[int, tf.Tensor] = {self.graph.input_id: x}
        values.update((fed.id, value) for fed, value in zip(self.graph.feeds, feeds,
                                                             strict=True))
        low_high: dict[int, tuple[tf.Tensor, tf.Tensor]] = {}
        if bounds is not None:
            low_high[self.graph.input_id] = bounds
        for step in self.steps:
            node = step.node
            inputs = [values[t] for t in node.inputs]
            if step.rule is not None:
                site_bounds = low_high.get(node.inputs[0]) if step.is_first else None
                outputs = [self._ruled(step, inputs, site_bounds)]
            elif node.group == "activation":
                outputs = [self._activation(node, inputs[0])]
            else:
                outputs = node.run(inputs)
            if bounds is not None and self._is_preprocessing(node) and all(
                    t in low_high for t in node.inputs):
                lo = node.run([low_high[t][0] for t in node.inputs])[0]
                hi = node.run([low_high[t][1] for t in node.inputs])[0]
                low_high[node.outputs[0]] = (tf.minimum(lo, hi), tf.maximum(lo, hi))
            for t, v in zip(node.outputs, outputs):
                values[t] = v
        return values[self.graph.output_id]

    def _activation(self, node: Node, x: tf.Tensor) -> tf.Tensor:
        mode = self.composite.activation_mode(node.fused)
        if mode in ("guided", "deconvnet") and node.activation not in layers.RECTIFIERS:
            mode = "gradient"  # guided/deconv ReLU rules are defined for rectifiers only
        backward = rules.ACTIVATION_BACKWARDS[mode]
        if backward is None:
            return node.run([x])[0]

        @tf.custom_gradient
        def activation(x: tf.Tensor) -> tf.Tensor:
            y = node.run([x])[0]

            def grad(g: tf.Tensor, variables: list | None = None) -> Any:
                out = backward(x, y, g)
                return out if variables is None else (out, [None] * len(variables))

            return y, grad

        return activation(x)

    def _ruled(self, step: Step, inputs: list[tf.Tensor],
               bounds: tuple[tf.Tensor, tf.Tensor] | None) -> tf.Tensor:
        node, rule = step.node, step.rule
        assert rule is not None
        inputs = [tf.cast(x, tf.float32) for x in inputs]
        order = None
        if node.group == "multiply":
            order = _gate_order(node, self.graph)
            inputs = [inputs[i] for i in order]
        # Read parameters here, outside the custom gradient (Keras 3 variables must not be
        # read inside it).
        kernel = node.linear.read_kernel() if node.linear is not None else None
        bias = node.linear.read_bias() if node.linear is not None else None
        add_bias = node.linear.add_bias if node.linear is not None else (
            lambda z, b: z if b is None else z + b)
        forward = _site_forward(node)
        if order is not None:
            inverse = np.argsort(order)
            base_forward = forward
            forward = lambda xs, k: base_forward([xs[i] for i in inverse], k)  # noqa: E731
        nonnegative = step.nonnegative if order is None else tuple(
            step.nonnegative[i] for i in order)
        if bounds is not None and rule.needs_bounds:
            low, high = bounds
        else:
            low = high = None
            if rule.needs_bounds:
                raise UnsupportedLayerError(
                    f"rule {rule!r} needs input bounds but layer {node.name!r} is not a first "
                    "layer fed by the input through reshapes/preprocessing only"
                )

        fused = None
        if isinstance(rule, rules.BasicRule) and kernel is not None and len(inputs) == 1:
            fused = rule.fused_parameters(kernel, bias, nonnegative)
        reduced = _reduced_precision_pays(node)
        denominator_dtype = self.denominator_dtype if reduced else tf.float32
        product_dtype = self.compute_dtype if reduced else tf.float32

        def site(xs: list[tf.Tensor], **extra: Any) -> rules.Site:
            return rules.Site(
                inputs=xs, forward=forward, kernel=kernel, bias=bias, add_bias=add_bias,
                nonnegative=nonnegative, low=low, high=high, name=node.name,
                compute_dtype=product_dtype, **extra)

        @tf.custom_gradient
        def ruled_op(*xs: tf.Tensor) -> tf.Tensor:
            if fused is not None:
                z, denominator = _forward_with_denominator(node, xs[0], kernel, bias, fused,
                                                           denominator_dtype)
            else:
                z = add_bias(forward(list(xs), kernel), bias)
                denominator = (rule.denominator(site(list(xs)))
                               if isinstance(rule, rules.BasicRule) else None)

            def grad(relevance: tf.Tensor, variables: list | None = None) -> Any:
                # ``variables``: weights a layer reads inside its own call (LayerNorm, ...);
                # relevance does not flow into them.
                result = rule.relevance(
                    site(list(xs), denominator=denominator, output=z,
                         fused_kernel=None if fused is None else fused[0]),
                    tf.cast(relevance, tf.float32))
                return result if variables is None else (result, [None] * len(variables))

            return z, grad

        return ruled_op(*inputs)


def _reduced_precision_pays(node: Node) -> bool:
    """Whether bfloat16 speeds up this layer's rule convolutions: full convolutions only.
    Dense products are memory-bound (casting the kernel costs more than it saves) and
    depthwise convolutions have no fast bfloat16 kernel on CPU (measured slower on
    EfficientNet-Lite0)."""
    spec = node.linear
    return (spec is not None and spec.depthwise_multiplier is None
            and node.group != "dense")


def _forward_with_denominator(node: Node, x: tf.Tensor, kernel: tf.Tensor,
                              bias: tf.Tensor | None,
                              fused: tuple[tf.Tensor, tf.Tensor | None],
                              dtype: tf.DType = tf.float32) -> tuple[tf.Tensor, tf.Tensor]:
    """The layer output and a rule's denominator f(x, K') + b', both from the forward pass.

    When K' is the kernel itself (z and ε rules) the output is the denominator. Otherwise the
    two kernels run as two calls: one call with both kernels concatenated along the output
    channels was measured slower on CPU (the doubled convolution costs 2.06× a single one,
    plus the split copies; BENCHMARKS.md, "Profile").
    """
    spec = node.linear
    assert spec is not None
    fused_kernel, fused_bias = fused
    z = spec.add_bias(spec.forward(x, kernel), bias)
    if fused_kernel is kernel and fused_bias is bias:
        return z, z
    if dtype != tf.float32:
        low = spec.forward(tf.cast(x, dtype), tf.cast(fused_kernel, dtype))
        return z, spec.add_bias(tf.cast(low, tf.float32), fused_bias)
    return z, spec.add_bias(spec.forward(x, fused_kernel), fused_bias)
