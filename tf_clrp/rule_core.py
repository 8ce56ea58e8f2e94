"""The rule contract and the generic rule kernel (the named rules are in ``tf_clrp.rules``).

A rule sees one layer call as a ``Site`` (its inputs, pure forward function and
parameters). The mirrored model calls ``Rule.forward`` during the forward pass (the layer's
output and whatever the backward needs) and ``Rule.backward`` with the relevance at the
output, once per seed. Every rule of the LRP family has the form

    R_j = Σ_k  c_jk / stabilize(Σ_j' c_j'k + b'_k) · R_k,

with contributions c_jk = Σ_t m_t(a)_j · w_t,jk built from a few *terms* t (an input modifier
m_t, a kernel modifier and a bias modifier). ``BasicRule`` evaluates any such set of terms
with one vector-Jacobian product of the layer's own (modified) forward function, so a named
rule is nothing but its terms and stabilizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from tf_clrp.checks import finite_parameter

Tensor = tf.Tensor


@dataclass
class Site:
    """One layer call as seen by a rule.

    Attributes:
        inputs: The layer's inputs.
        forward: ``forward(inputs, kernel)`` -> the layer's output without bias.
        kernel: The (possibly BatchNorm-folded) kernel, or None for parameter-free layers.
        bias: The bias, or None.
        add_bias: Adds a bias to an output along the channel axis.
        nonnegative: Per input, True if it is known to be >= 0 (ReLU output, ...).
        low: Lowest possible input values (first layer only), shape of ``inputs[0]``.
        high: Highest possible input values (first layer only).
        name: The layer's name, for error messages.
        layer: The Keras layer or operation (read-only), for rules that read its
            configuration (an axis, an epsilon); None for nodes a canonizer made.
        denominator_dtype: dtype for denominators a rule computes in its forward
            (bfloat16 with ``precision`` "mixed"/"bfloat16" where that pays, else float32).
        product_dtype: dtype of a rule's transposed products (bfloat16 with "bfloat16").
    """

    inputs: list[Tensor]
    forward: Callable[[list[Tensor], Tensor | None], Tensor]
    kernel: Tensor | None = None
    bias: Tensor | None = None
    add_bias: Callable[[Tensor, Tensor | None], Tensor] = lambda z, b: z if b is None else z + b
    nonnegative: tuple[bool, ...] = ()
    low: Tensor | None = None
    high: Tensor | None = None
    name: str = ""
    layer: Any = None
    denominator_dtype: tf.DType = tf.float32
    product_dtype: tf.DType = tf.float32

    def output(self) -> Tensor:
        """The layer's own output f(inputs, kernel) + bias."""
        return self.add_bias(self.forward(self.inputs, self.kernel), self.bias)


class Rule:
    """Maps the relevance at a layer's output to relevance at each of its inputs.

    The mirrored model calls ``forward`` in the forward pass (the layer's output, and
    whatever the backward will need: denominators, probabilities) and ``backward`` with
    the relevance at the output (once per seed; several seeds share one forward). A rule
    that needs nothing from the forward only implements ``relevance``.
    """

    #: True if the rule needs the input bounds (``Site.low`` / ``Site.high``).
    needs_bounds: bool = False
    #: True if the relevance at the inputs is linear in the relevance at the output (for a
    #: fixed forward pass). Reduced-precision CLRP rebuilds its dual by linearity only then.
    #: Undeclared (custom) rules count as non-linear, and so does a subclass that overrides a
    #: backward method without re-declaring it (read it through ``declares``).
    linear_in_relevance: bool = False
    #: True if negating the layer's kernel and bias changes the relevance at its inputs at
    #: most by its sign (contributions all odd, or all even, in the weights: z, ε, γ, w²,
    #: flat, the gradient). CLRP's ``contrast="negated"`` dual normalises to its target then
    #: (a zero map), so CLRP refuses it. Inherited like ``linear_in_relevance`` (``declares``).
    negation_invariant: bool = False

    def forward(self, site: Site) -> tuple[Tensor, Any]:
        """The forward hook: the layer's output and what ``backward`` keeps from it.

        Args:
            site: The layer call (its inputs are the forward's values).

        Returns:
            (output, kept): the layer's output (the default: ``site.output()``) and any
            value ``backward`` receives as ``kept`` (the default: None).
        """
        return site.output(), None

    def backward(self, site: Site, kept: Any, relevance: Tensor) -> list[Tensor]:
        """Relevance in, relevance out (the default: ``relevance(site, relevance)``).

        Args:
            site: The layer call, as in ``forward``.
            kept: What ``forward`` returned besides the output.
            relevance: R at the layer's output.

        Returns:
            R at each input.
        """
        return self.relevance(site, relevance)

    def relevance(self, site: Site, relevance: Tensor) -> list[Tensor]:
        """Args: site: the layer call; relevance: R at its output. Returns: R per input."""
        raise NotImplementedError

    def __repr__(self) -> str:
        """The class and its numeric parameters, e.g. ``Epsilon(epsilon=1e-06, bias=True)``."""
        params = ", ".join(
            f"{k}={v!r}"
            for k, v in vars(self).items()
            if not k.startswith("_") and isinstance(v, (bool, int, float))
        )
        return f"{type(self).__name__}({params})"


#: The methods through which a rule computes its backward pass. A class that overrides one
#: of them is a new rule: properties declared by its ancestors no longer describe it.
BACKWARD_METHODS: tuple[str, ...] = (
    "forward",
    "backward",
    "relevance",
    "stabilize",
    "denominator",
    "fused_parameters",
    "_fused_relevance",
    "_modified_inputs",
    "_active_terms",
)


def declares(rule: Rule, prop: str) -> bool:
    """Whether ``rule`` truly has the boolean property ``prop`` (e.g. "linear_in_relevance").

    A declaration counts only for the class that makes it (or an instance attribute): if a
    subclass overrides a backward method (``BACKWARD_METHODS``) without re-declaring ``prop``,
    the inherited claim is dropped and the property counts as undeclared (False).

    Args:
        rule: The rule instance.
        prop: The property's name.

    Returns:
        The declared value, or False when the declaring class's backward was overridden.
    """
    if prop in vars(rule):
        return bool(vars(rule)[prop])
    for cls in type(rule).__mro__:
        if prop in vars(cls):
            return bool(getattr(rule, prop))
        if any(method in vars(cls) for method in BACKWARD_METHODS):
            return False
    return False


# ----------------------------------------------------------------------------- modifiers
@dataclass(frozen=True)
class Modifier:
    """A named elementwise map of a layer's inputs, kernel or bias (a term's part).

    Modifiers are equal by name, so fast paths recognise ``POSITIVE`` in any rule built
    from it (a rule written with a plain function of its own takes the general path).
    """

    name: str
    fn: Callable[[Tensor], Tensor | None] = field(compare=False, repr=False)

    def __call__(self, t: Tensor) -> Tensor | None:
        return self.fn(t)


IDENTITY = Modifier("identity", lambda t: t)
POSITIVE = Modifier("positive", lambda t: tf.maximum(t, 0.0))
NEGATIVE = Modifier("negative", lambda t: tf.minimum(t, 0.0))
ONES = Modifier("ones", tf.ones_like)
SQUARE = Modifier("square", tf.square)
#: Ignore the part (a bias left out of the denominator).
DROP = Modifier("drop", lambda t: None)


@dataclass(frozen=True)
class Term:
    """One contribution m(a) · w' (+ b') of a rule.

    Attributes:
        inputs: Modifier of the layer input (or "low" / "high" for the box bounds).
        kernel: Modifier of the kernel.
        bias: Modifier of the bias (``DROP`` ignores the bias).

    Any function of a tensor works as a modifier; the ``Modifier`` values (IDENTITY,
    POSITIVE, ...) also let ``BasicRule`` take its fast paths.
        needs_negative_input: The term vanishes when the input is known to be >= 0.
    """

    inputs: Callable[[Tensor], Tensor] | str = IDENTITY
    kernel: Callable[[Tensor], Tensor] = IDENTITY
    bias: Callable[[Tensor], Tensor | None] = IDENTITY
    needs_negative_input: bool = False


def _stabiliser(rule: str, epsilon: object) -> float:
    """ε as a float; refuses NaN, Inf, ε <= 0 and non-numbers, naming the rule."""
    return finite_parameter(f"{rule} epsilon", epsilon, minimum=0.0, strict=True)


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """z + ε·sign(z), with sign(0) = +1 (never divides by zero)."""
    return z + tf.where(z >= 0.0, epsilon, -epsilon)  # one pass fewer than ε·where(±1)


@dataclass(repr=False)
class BasicRule(Rule):
    """The generic rule kernel: any set of terms and an ε-stabilizer.

    Args:
        terms: The contributions whose sum is the (modified) pre-activation.
        epsilon: Stabilizer of the denominator.
    """

    terms: tuple[Term, ...] = (Term(),)
    epsilon: float = 1e-9
    linear_in_relevance = True

    def __post_init__(self) -> None:
        self.epsilon = _stabiliser(type(self).__name__, self.epsilon)

    @property
    def needs_bounds(self) -> bool:  # type: ignore[override]
        return any(isinstance(t.inputs, str) for t in self.terms)

    def _modified_inputs(self, term: Term, site: Site) -> list[Tensor]:
        if term.inputs == "low":
            return [site.low]
        if term.inputs == "high":
            return [site.high]
        known = site.nonnegative or (False,) * len(site.inputs)
        return [
            x if term.inputs == POSITIVE and nonneg else term.inputs(x)
            for x, nonneg in zip(site.inputs, known)
        ]

    def _active_terms(self, site: Site) -> list[Term]:
        nonnegative = bool(site.nonnegative) and all(site.nonnegative)
        return [t for t in self.terms if not (t.needs_negative_input and nonnegative)]

    def fused_parameters(
        self, kernel: Tensor, bias: Tensor | None, nonnegative: tuple[bool, ...]
    ) -> tuple[Tensor, Tensor | None] | None:
        """(K', b') when every term reads the plain input: then Σ_t f(m_t(a), w_t) equals
        f(a, K') with K' = Σ_t w_t, and the denominator can be computed in the forward pass.

        Args:
            kernel: The layer's kernel.
            bias: The layer's bias (or None).
            nonnegative: Per input, whether it is known to be >= 0.

        Returns:
            (K', b'), or None if some term modifies the input.
        """
        if len(nonnegative) != 1:
            return None
        site = Site(inputs=[], forward=lambda xs, k: xs[0], nonnegative=nonnegative)
        terms = self._active_terms(site)
        if not all(
            t.inputs == IDENTITY or (t.inputs == POSITIVE and nonnegative[0]) for t in terms
        ):
            return None
        kernels = [t.kernel(kernel) for t in terms]
        biases = [] if bias is None else [b for b in (t.bias(bias) for t in terms) if b is not None]
        fused_bias = None if not biases else biases[0] if len(biases) == 1 else tf.add_n(biases)
        return (kernels[0] if len(kernels) == 1 else tf.add_n(kernels)), fused_bias

    def denominator(self, site: Site) -> Tensor:
        """The unstabilized denominator Σ_t f(m_t(a), w_t) + Σ_t b_t of ``site``."""
        terms = self._active_terms(site)
        z = tf.add_n(
            [
                site.forward(
                    self._modified_inputs(t, site),
                    None if site.kernel is None else t.kernel(site.kernel),
                )
                for t in terms
            ]
        )
        for t in terms:
            z = site.add_bias(z, None if site.bias is None else t.bias(site.bias))
        return z

    def forward(self, site: Site) -> tuple[Tensor, _Kept]:
        """The output and the denominator (shared by every seed's backward); with one
        plain input, also the fused kernel K' (``fused_parameters``) the backward uses."""
        fused = None
        if site.kernel is not None and len(site.inputs) == 1:
            fused = self.fused_parameters(site.kernel, site.bias, site.nonnegative)
        output = site.output()
        if fused is None:
            return output, _Kept(self.denominator(site))
        kernel, bias = fused
        if kernel is site.kernel and bias is site.bias:  # the z and ε rules
            return output, _Kept(output, kernel)
        (x,) = site.inputs
        if site.denominator_dtype != tf.float32:
            low = site.forward(
                [tf.cast(x, site.denominator_dtype)], tf.cast(kernel, site.denominator_dtype)
            )
            return output, _Kept(site.add_bias(tf.cast(low, tf.float32), bias), kernel)
        # Two calls: one call with both kernels concatenated along the output channels was
        # measured slower on CPU (BENCHMARKS.md, "Profile").
        return output, _Kept(site.add_bias(site.forward([x], kernel), bias), kernel)

    def backward(self, site: Site, kept: _Kept | None, relevance: Tensor) -> list[Tensor]:
        """R_in from R_out, with the denominator (and fused kernel) kept by ``forward``."""
        if kept is not None and kept.fused_kernel is not None:
            return self._fused_relevance(site, kept, relevance)
        terms = self._active_terms(site)
        modified = [self._modified_inputs(t, site) for t in terms]
        kernels = [None if site.kernel is None else t.kernel(site.kernel) for t in terms]
        flat = [x for xs in modified for x in xs]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(flat)
            z = tf.add_n([site.forward(xs, k) for xs, k in zip(modified, kernels)])
        if kept is not None:
            denominator = kept.denominator
        else:
            denominator = z
            for t in terms:
                denominator = site.add_bias(
                    denominator, None if site.bias is None else t.bias(site.bias)
                )
        scaled = relevance / self.stabilize(denominator)
        # With a precomputed denominator z's value is unused: graph mode prunes the forward.
        grads = tape.gradient(z, flat, output_gradients=scaled)
        out: list[Tensor | None] = [None] * len(site.inputs)
        position = 0
        for term, xs in zip(terms, modified):
            for i, x in enumerate(xs):
                g = grads[position]
                position += 1
                if g is None:
                    continue
                target = 0 if isinstance(term.inputs, str) else i  # bounds: the single input
                out[target] = x * g if out[target] is None else out[target] + x * g
        return [tf.zeros_like(x) if r is None else r for x, r in zip(site.inputs, out)]

    def relevance(self, site: Site, relevance: Tensor) -> list[Tensor]:
        """R_in from R_out, computing the denominator itself."""
        return self.backward(site, None, relevance)

    def _fused_relevance(self, site: Site, kept: _Kept, relevance: Tensor) -> list[Tensor]:
        """R_in = a ⊙ f(·, K')ᵀ(R / stabilize(z')), z' taken from the forward pass."""
        (x,) = site.inputs
        scaled = relevance / self.stabilize(kept.denominator)
        dtype = site.product_dtype
        low_x = x if dtype == tf.float32 else tf.cast(x, dtype)
        kernel = kept.fused_kernel if dtype == tf.float32 else tf.cast(kept.fused_kernel, dtype)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(low_x)
            z = site.forward([low_x], kernel)  # only its backward runs in a tf.function
        grad = tape.gradient(z, low_x, output_gradients=tf.cast(scaled, dtype))
        return [x * tf.cast(grad, tf.float32)]

    def stabilize(self, z: Tensor) -> Tensor:
        """The stabilized denominator (ε·sign(z) added)."""
        return stabilize(z, self.epsilon)


@dataclass(frozen=True)
class _Kept:
    """What ``BasicRule.forward`` keeps for the backward passes."""

    #: The unstabilized denominator Σ_j c_jk + b'_k.
    denominator: Tensor
    #: K' = Σ_t w_t when every term reads the plain input: the backward is then one
    #: transposed product with K'.
    fused_kernel: Tensor | None = None


@dataclass(repr=False)
class WeightedSum(Rule):
    """Σ_p weight_p · R_p over several rules (AlphaBeta is α·R⁺ − β·R⁻)."""

    parts: tuple[tuple[float, Rule], ...] = ()

    @property
    def needs_bounds(self) -> bool:  # type: ignore[override]
        return any(rule.needs_bounds for _, rule in self.parts)

    @property
    def linear_in_relevance(self) -> bool:  # type: ignore[override]
        return all(declares(rule, "linear_in_relevance") for _, rule in self.parts)

    @property
    def negation_invariant(self) -> bool:  # type: ignore[override]
        return bool(self.parts) and all(
            declares(rule, "negation_invariant") for _, rule in self.parts
        )

    def relevance(self, site: Site, relevance: Tensor) -> list[Tensor]:
        total: list[Tensor] | None = None
        for weight, rule in self.parts:
            part = [weight * r for r in rule.relevance(site, relevance)]
            total = part if total is None else [a + b for a, b in zip(total, part)]
        return total or []
