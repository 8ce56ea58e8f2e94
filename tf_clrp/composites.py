"""Composites: which rule each layer gets, as data.

A ``Composite`` maps layer groups (``"dense"``, ``"convolution"``, ``"avg_pool"``, ``"add"``,
``"batch_norm"``, ...) — or a layer's class name, or a layer's own name — to a rule, with an
optional special rule for the first linear layer(s) after the input. It also says how the
backward signal crosses elementwise non-linearities (``"pass"`` for LRP, ``"gradient"``,
``"guided"``, ``"deconvnet"``), and which canonizers prepare the graph (``canonizers``, a
sequence of ``Graph -> Graph`` functions). Named presets are the functions at the end of
this module (``create_analyzer`` exposes them as ``lrp.*`` names); ``assemble`` is the one
place where a composite is built from an analyzer's ``composite`` / ``rule`` /
``input_layer_rule`` / ``layer_rules`` options.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tf_clrp import canonizers as canonizers_module
from tf_clrp import rules
from tf_clrp.canonizers import Canonizer
from tf_clrp.layers import Group
from tf_clrp.rules import Rule

#: Rules that every LRP composite uses unless it says otherwise.
LRP_DEFAULTS: dict[str, Rule] = {
    Group.AVG_POOL: rules.Norm(),
    Group.ADD: rules.Norm(),
    Group.BATCH_NORM: rules.Pass(),
    Group.LAYER_NORM: rules.Pass(),
    Group.RESCALING: rules.Pass(),
    Group.MULTIPLY: rules.Pass(),
}

ACTIVATION_MODES = ("pass", "gradient", "guided", "deconvnet")

#: Every layer group a composite can key.
_GROUP_NAMES = frozenset(Group)


@dataclass(frozen=True)
class Composite:
    """Assigns rules to layers.

    Args:
        layer_map: Group, layer class name or layer name -> rule. Layer names win over class
            names, class names over groups; a key that is a group name ("dense", "add")
            always means the group, even for a layer of that name (Keras names the first
            Dense "dense"). A group missing here falls back to ``defaults``.
        first_layer: Rule for the first linear layer(s) seen from the input, or None.
        activation: Backward through elementwise non-linearities (one of ACTIVATION_MODES).
        defaults: Rules for groups not in ``layer_map`` (LRP_DEFAULTS for LRP composites,
            empty for gradient methods: their layers keep the true gradient).
        name: A label for messages.
        first_layer_groups: Groups the first-layer rule applies to (None: any linear layer;
            Zennit's EpsilonGammaBox uses ("convolution",)).
        fused_activation: Backward through activations fused into Dense/Conv layers, if it
            differs from ``activation`` (iNNvestigate's Deep Taylor passes relevance through
            fused ReLUs but masks with standalone ReLU layers).
        canonizers: The ``Graph -> Graph`` rewrites applied before the rules, in order
            (``tf_clrp.canonizers.DEFAULT``).
    """

    layer_map: Mapping[str, Rule] = field(default_factory=dict)
    first_layer: Rule | None = None
    activation: str = "pass"
    defaults: Mapping[str, Rule] = field(default_factory=lambda: dict(LRP_DEFAULTS))
    name: str = "custom"
    first_layer_groups: tuple[str, ...] | None = None
    fused_activation: str | None = None
    canonizers: tuple[Canonizer, ...] = canonizers_module.DEFAULT

    def __post_init__(self) -> None:
        for mode in (self.activation, self.fused_activation or self.activation):
            if mode not in ACTIVATION_MODES:
                raise ValueError(f"activation mode {mode!r} is not one of {ACTIVATION_MODES}")
        for key, rule in self.layer_map.items():
            if not isinstance(rule, Rule):
                raise TypeError(f"layer_map[{key!r}] = {rule!r} is not a tf_clrp rule")
        if self.first_layer is not None and not isinstance(self.first_layer, Rule):
            raise TypeError(f"first_layer = {self.first_layer!r} is not a tf_clrp rule")

    def rule_for(
        self, name: str, class_name: str, group: str | None, is_first: bool
    ) -> Rule | None:
        """The rule of one layer call, or None for the true gradient.

        Args:
            name: The layer's name (``outer/inner`` for nested models).
            class_name: The layer's class name.
            group: The layer's group.
            is_first: True for a linear layer fed (only through reshapes) by the input.

        Returns:
            The rule, or None if the layer keeps its gradient.
        """
        short = name.rsplit("/", 1)[-1]
        for key in (name, short, class_name):
            # A layer named like a group ("dense", "add", ...: Keras' default names) is
            # matched as that group, so the first-layer rule still applies to it.
            if key in self.layer_map and key not in _GROUP_NAMES:
                return self.layer_map[key]
        if (
            is_first
            and self.first_layer is not None
            and (self.first_layer_groups is None or group in self.first_layer_groups)
        ):
            return self.first_layer
        if group in self.layer_map:
            return self.layer_map[group]
        return self.defaults.get(group) if group else None

    @property
    def is_plain_gradient(self) -> bool:
        """True for the plain gradient (no rules, true gradients through activations): a
        layer without a group then keeps its own autodiff gradient instead of being refused."""
        return (
            not self.defaults
            and self.first_layer is None
            and self.activation == "gradient"
            and (self.fused_activation or "gradient") == "gradient"
        )

    def activation_mode(self, fused: bool) -> str:
        """Backward mode through an activation (fused into a linear layer or standalone)."""
        return (self.fused_activation or self.activation) if fused else self.activation

    def with_first_layer(self, rule: Rule | None) -> Composite:
        """A copy with another first-layer rule (applying to any linear first layer)."""
        return replace(self, first_layer=rule, first_layer_groups=None)

    def with_layer_rules(self, overrides: Mapping[str, Rule]) -> Composite:
        """A copy with extra per-layer (name, class or group) rules, the escape hatch."""
        return replace(self, layer_map={**self.layer_map, **overrides})

    def with_canonizers(self, sequence: Sequence[Canonizer]) -> Composite:
        """A copy that prepares the graph with ``sequence`` instead."""
        return replace(self, canonizers=tuple(sequence))


def assemble(
    composite: Composite | None = None,
    *,
    rule: Rule | None = None,
    input_layer_rule: Any = None,
    layer_rules: Mapping[str, Rule] | None = None,
    default: Callable[[], Composite] | None = None,
) -> Composite:
    """The composite an analyzer's options describe: the one place they are combined.

    Args:
        composite: A whole composite.
        rule: One rule for every Dense and convolution layer instead (``uniform``).
        input_layer_rule: A first-layer rule for any linear first layer (see
            ``input_layer_rule``); None keeps the composite's.
        layer_rules: Per-layer (name, class or group) overrides.
        default: Makes the composite when neither ``composite`` nor ``rule`` is given.

    Returns:
        The composite.

    Raises:
        TypeError: both ``composite`` and ``rule``, or neither and no ``default``.
    """
    if composite is not None and rule is not None:
        raise TypeError("give composite=<Composite> or rule=<Rule>, not both")
    if composite is None:
        if rule is not None:
            composite = uniform(rule)
        elif default is not None:
            composite = default()
        else:
            raise TypeError("give composite=<Composite> or rule=<Rule>")
    if input_layer_rule is not None:
        composite = composite.with_first_layer(parse_input_layer_rule(input_layer_rule))
    if layer_rules:
        composite = composite.with_layer_rules(layer_rules)
    return composite


def uniform(rule: Rule, name: str = "uniform") -> Composite:
    """The same rule on every Dense and convolution layer."""
    return Composite({Group.DENSE: rule, Group.CONVOLUTION: rule}, name=name)


def gradient_composite(activation: str = "gradient") -> Composite:
    """True gradients everywhere; ``activation`` picks plain / guided / deconvnet ReLUs."""
    return Composite({}, None, activation, defaults={}, name=f"gradient[{activation}]")


def parse_input_layer_rule(spec: Any) -> Rule | None:
    """iNNvestigate's ``input_layer_rule``: None, "Flat", "WSquare", (low, high) or a Rule.

    Args:
        spec: The user's value.

    Returns:
        The rule for the first layer, or None.
    """
    if spec is None or isinstance(spec, Rule):
        return spec
    if isinstance(spec, str):
        named = {
            "flat": rules.Flat,
            "wsquare": rules.WSquare,
            "w_square": rules.WSquare,
            "zplus": rules.ZPlus,
            "z_plus": rules.ZPlus,
            "bounded": None,
        }
        key = spec.lower()
        if key in named and named[key] is not None:
            return named[key]()
        raise ValueError(
            f"input_layer_rule={spec!r} is not understood; use 'Flat', 'WSquare', "
            "(low, high) bounds or a tf_clrp.rules.Rule"
        )
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return rules.ZBox(spec[0], spec[1])
    raise ValueError(
        f"input_layer_rule={spec!r} is not understood; use 'Flat', 'WSquare', (low, high) "
        "bounds or a tf_clrp.rules.Rule"
    )


#: The former name of ``parse_input_layer_rule``.
input_layer_rule = parse_input_layer_rule


# ----------------------------------------------------------------------------- presets
def epsilon_plus(epsilon: float = 1e-6) -> Composite:
    """Zennit's EpsilonPlus: ε on Dense, z⁺ (with b⁺ in the denominator) on convolutions."""
    return Composite(
        {Group.DENSE: rules.Epsilon(epsilon), Group.CONVOLUTION: rules.ZPlus(epsilon, bias=True)},
        name="epsilon_plus",
    )


def epsilon_plus_flat(epsilon: float = 1e-6) -> Composite:
    """Zennit's EpsilonPlusFlat: EpsilonPlus with the flat rule on the first layer."""
    return epsilon_plus(epsilon).with_first_layer(rules.Flat())


def epsilon_gamma_box(
    low: Any = -3.0, high: Any = 3.0, epsilon: float = 1e-6, gamma: float = 0.25
) -> Composite:
    """Zennit's EpsilonGammaBox: z^B on a first convolution, γ on convolutions, ε on Dense."""
    return Composite(
        {Group.DENSE: rules.Epsilon(epsilon), Group.CONVOLUTION: rules.Gamma(gamma)},
        first_layer=rules.ZBox(low, high),
        first_layer_groups=(Group.CONVOLUTION,),
        name="epsilon_gamma_box",
    )


def epsilon_alpha2_beta1(epsilon: float = 1e-6) -> Composite:
    """Zennit's EpsilonAlpha2Beta1: ε on Dense, α2β1 on convolutions."""
    return Composite(
        {
            Group.DENSE: rules.Epsilon(epsilon),
            Group.CONVOLUTION: rules.AlphaBeta(2.0, 1.0, epsilon=epsilon),
        },
        name="epsilon_alpha2_beta1",
    )


def zbox_zplus(low: Any = None, high: Any = None) -> Composite:
    """The CLRP paper's rules: z^B on the first layer, z⁺ on every other conv and Dense layer.

    The paper's setting is these rules with the bounds of the preprocessed input range
    (e.g. ``tf_clrp.bounds.input_bounds("torch")``, the authors' −2.1179 and 2.64).

    Args:
        low: First-layer lower bounds; None uses each sample's own per-channel minimum.
        high: Upper bounds; None uses each sample's own per-channel maximum.
    """
    return Composite(
        {Group.DENSE: rules.ZPlus(), Group.CONVOLUTION: rules.ZPlus()},
        first_layer=rules.ZBox(low, high),
        name="zbox_zplus",
    )


def clrp_paper(low: Any = None, high: Any = None) -> Composite:
    """Deprecated alias of ``zbox_zplus``: without bounds it is not the paper's setting.

    Its default bounds are each sample's own per-channel min/max, whereas the paper bounds
    z^B by the preprocessed input range; pass those bounds to ``zbox_zplus``.

    Args:
        low: First-layer lower bounds; None uses each sample's own per-channel minimum.
        high: Upper bounds; None uses each sample's own per-channel maximum.
    """
    warnings.warn(
        "composites.clrp_paper() is deprecated: its default z^B bounds are each sample's own "
        "min/max, not the paper's input range; use composites.zbox_zplus(low, high) with "
        "tf_clrp.bounds.input_bounds(...) for the paper's setting",
        DeprecationWarning,
        stacklevel=2,
    )
    return zbox_zplus(low, high)


def attnlrp(epsilon: float = 1e-6, product_epsilon: float = 1e-8, cp: bool = False) -> Composite:
    """AttnLRP (Achtibat et al. 2024), LXT's rules; ``cp=True``: CP-LRP (Ali et al. 2022).

    ε (``epsilon``, bias in the denominator) on Dense, EinsumDense and convolutions; the
    softmax rule x ⊙ (R − p·ΣR); products of two activations (Q·Kᵀ, A·V, gates) by the
    uniform ε rule (each factor half, ``product_epsilon``); LayerNorm/RMSNorm with 1/σ held
    constant; the identity on elementwise non-linearities (GELU, SiLU, ...) and constant
    scalings; the ε rule on residual sums and means. Fused attention is split into its three
    steps (``tf_clrp.attention.split_attention``). CP-LRP holds the attention weights
    constant: no relevance through queries and keys, all of A·V's to the values.

    On a model without attention or normalisation layers (a CNN) this is the ε composite
    (ε on every linear layer, relevance passed through activations).

    Args:
        epsilon: ε of linear layers, LayerNorm and CP-LRP's A·V (LXT's 1e-6).
        product_epsilon: ε of the uniform product rule (LXT's 1e-8).
        cp: CP-LRP instead of AttnLRP.
    """
    from tf_clrp import attention, rules_attention

    linear = rules.Epsilon(epsilon)
    product = rules_attention.UniformProduct(product_epsilon)
    return Composite(
        {
            Group.DENSE: linear,
            Group.CONVOLUTION: linear,
            Group.LAYER_NORM: rules_attention.LayerNormIdentity(epsilon),
            Group.BILINEAR: product,
            Group.MULTIPLY: product,
            Group.ATTENTION_VALUES: (rules_attention.ConstantWeights(epsilon) if cp else product),
            Group.SOFTMAX: rules_attention.NoRelevance() if cp else rules_attention.SoftmaxRule(),
            Group.ACTIVATION: rules.Pass(),
        },
        name="attnlrp.cp" if cp else "attnlrp",
        canonizers=(*canonizers_module.DEFAULT, attention.split_attention),
    )
