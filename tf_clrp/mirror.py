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
from dataclasses import dataclass, replace
from typing import Any

import tensorflow as tf

from tf_clrp import layers, rules
from tf_clrp.composites import Composite
from tf_clrp.errors import UnsupportedLayerError
from tf_clrp.graph import Graph, Node, collapse_layers, execute, opaque_refusal
from tf_clrp.layers import Group

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
    rule: rules.Rule | None  # None: keep the node's own gradient
    is_first: bool
    nonnegative: tuple[bool, ...]


def relevance_path(graph: Graph) -> set[int]:
    """``id``s of the nodes on some path from the explained input to the output.

    Only their rules can change the map: relevance never reaches a node that does not
    depend on the explained input (a side input's branch, a constant), and what reaches a
    node the output does not depend on goes nowhere.
    """
    downstream = {graph.input_id}
    for node in graph.nodes:  # execution order
        if downstream.intersection(node.inputs):
            downstream.update(node.outputs)
    upstream = {graph.output_id}
    on_path: set[int] = set()
    for node in reversed(graph.nodes):
        if upstream.intersection(node.outputs):
            upstream.update(node.inputs)
            if downstream.intersection(node.inputs):
                on_path.add(id(node))
    return on_path


def _pure_forward(node: Node) -> Callable[[list[tf.Tensor], tf.Tensor | None], tf.Tensor]:
    """The node's computation as ``forward(inputs, kernel)`` (the bias added apart)."""
    if node.linear is not None:
        spec = node.linear
        return lambda xs, kernel: spec.forward(xs[0], kernel)
    if node.group is Group.ADD and len(node.inputs) > 1:
        return lambda xs, kernel: tf.add_n(xs)
    return lambda xs, kernel: tf.cast(node.run(list(xs))[0], tf.float32)


def _output_nonnegative(node: Node, nonnegative: set[int]) -> bool:
    """Whether the node's output is known to be >= 0 (``nonnegative``: such tensors)."""
    if node.group is Group.ACTIVATION:
        return node.activation in layers.NONNEGATIVE_ACTIVATIONS
    return (
        node.group is not None
        and node.group.keeps_nonnegative
        and all(t in nonnegative for t in node.inputs)
    )


def _is_preprocessing(node: Node) -> bool:
    return node.group is not None and node.group.is_preprocessing


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
        self._step_of = {id(step.node): step for step in self.steps}
        self.first_rules = [s.rule for s in self.steps if s.is_first and s.rule is not None]
        self.needs_bounds = any(r.needs_bounds for r in self.first_rules)

    # ------------------------------------------------------------------ planning
    def _plan(self) -> list[Step]:
        raw = {self.graph.input_id}
        nonnegative: set[int] = set()
        on_path = relevance_path(self.graph)
        steps = []
        for node in self.graph.nodes:
            inputs_raw = all(t in raw for t in node.inputs)
            is_first = (
                node.linear is not None
                and node.group is not None
                and node.group.is_linear
                and inputs_raw
            )
            # off the path no relevance that reaches the input passes: its own gradient
            rule = self._rule(node, is_first) if id(node) in on_path else None
            steps.append(Step(node, rule, is_first, tuple(t in nonnegative for t in node.inputs)))
            if _is_preprocessing(node) and inputs_raw:
                raw.update(node.outputs)
            if _output_nonnegative(node, nonnegative):
                nonnegative.update(node.outputs)
        if self.composite.activation == "pass":
            _warn_non_rectifiers(
                [
                    s.node
                    for s in steps
                    if s.node.group is Group.ACTIVATION
                    and id(s.node) in on_path
                    and s.rule is None
                    and s.node.activation not in layers.RECTIFIERS
                ]
            )
        return steps

    def _rule(self, node: Node, is_first: bool) -> rules.Rule | None:
        if node.group is Group.OPAQUE_MODEL and not self.composite.is_plain_gradient:
            raise opaque_refusal(node)
        rule = self.composite.rule_for(node.name, node.kind, node.group, is_first)
        if (
            rule is not None
            or node.group is Group.ACTIVATION
            or (node.group is not None and node.group.moves_with_gradient)
        ):
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
        return (
            tf.broadcast_to(tf.cast(low, tf.float32), tf.shape(x)),
            tf.broadcast_to(tf.cast(high, tf.float32), tf.shape(x)),
        )

    def _bounds_by_tensor(self, x: tf.Tensor) -> dict[int, tuple[tf.Tensor, tf.Tensor]]:
        """The input bounds mapped through the preprocessing layers after the input."""
        bounds = self.input_bounds(x)
        if bounds is None:
            return {}
        low_high = {self.graph.input_id: bounds}
        for step in self.steps:
            node = step.node
            if _is_preprocessing(node) and all(t in low_high for t in node.inputs):
                lo = node.run([low_high[t][0] for t in node.inputs])[0]
                hi = node.run([low_high[t][1] for t in node.inputs])[0]
                low_high[node.outputs[0]] = (tf.minimum(lo, hi), tf.maximum(lo, hi))
        return low_high

    def __call__(self, x: tf.Tensor, feeds: Sequence[tf.Tensor] = ()) -> tf.Tensor:
        """Runs the mirrored forward.

        Args:
            x: Input batch (float32).
            feeds: The model's other inputs, one per ``graph.feeds`` (fed through unchanged).

        Returns:
            The explained output.
        """
        low_high = self._bounds_by_tensor(x)
        values: dict[int, tf.Tensor] = {self.graph.input_id: x}
        values.update((fed.id, value) for fed, value in zip(self.graph.feeds, feeds, strict=True))

        def call(node: Node, inputs: list[tf.Tensor]) -> list[tf.Tensor]:
            step = self._step_of[id(node)]
            if step.rule is not None:
                bounds = low_high.get(node.inputs[0]) if step.is_first else None
                return [self._ruled(step, inputs, bounds)]
            if node.group is Group.ACTIVATION:
                return [self._activation(node, inputs[0])]
            return node.run(inputs)

        return execute([s.node for s in self.steps], values, call)[self.graph.output_id]

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

    def _site(
        self, step: Step, inputs: list[tf.Tensor], bounds: tuple[tf.Tensor, tf.Tensor] | None
    ) -> rules.Site:
        """The layer call as the rule sees it. Parameters are read here, outside the custom
        gradient (Keras 3 variables must not be read inside it)."""
        node, rule = step.node, step.rule
        assert rule is not None
        if rule.needs_bounds and bounds is None:
            raise UnsupportedLayerError(
                f"rule {rule!r} needs input bounds but layer {node.name!r} is not a first "
                "layer fed by the input through reshapes/preprocessing only"
            )
        low, high = bounds if bounds is not None and rule.needs_bounds else (None, None)
        spec = node.linear
        reduced = _reduced_precision_pays(node)
        site = rules.Site(
            inputs=inputs,
            forward=_pure_forward(node),
            nonnegative=step.nonnegative,
            low=low,
            high=high,
            name=node.name,
            layer=node.op,
            denominator_dtype=self.denominator_dtype if reduced else tf.float32,
            product_dtype=self.compute_dtype if reduced else tf.float32,
        )
        if spec is not None:
            site = replace(
                site, kernel=spec.read_kernel(), bias=spec.read_bias(), add_bias=spec.add_bias
            )
        return site

    def _ruled(
        self, step: Step, inputs: list[tf.Tensor], bounds: tuple[tf.Tensor, tf.Tensor] | None
    ) -> tf.Tensor:
        """The node as one custom-gradient op: the rule's forward hook, then its backward."""
        rule = step.rule
        assert rule is not None
        site = self._site(step, [tf.cast(x, tf.float32) for x in inputs], bounds)

        @tf.custom_gradient
        def ruled_op(*xs: tf.Tensor) -> tf.Tensor:
            at = replace(site, inputs=list(xs))
            output, kept = rule.forward(at)

            def grad(relevance: tf.Tensor, variables: list | None = None) -> Any:
                # ``variables``: weights a layer reads inside its own call (LayerNorm, ...);
                # relevance does not flow into them.
                result = rule.backward(at, kept, tf.cast(relevance, tf.float32))
                return result if variables is None else (result, [None] * len(variables))

            return output, grad

        return ruled_op(*site.inputs)


def _reduced_precision_pays(node: Node) -> bool:
    """Whether bfloat16 speeds up this layer's rule convolutions: full convolutions only.
    Dense products are memory-bound (casting the kernel costs more than it saves) and
    depthwise convolutions have no fast bfloat16 kernel on CPU (measured slower on
    EfficientNet-Lite0)."""
    spec = node.linear
    return spec is not None and spec.depthwise_multiplier is None and node.group is not Group.DENSE
