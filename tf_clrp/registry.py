"""``create_analyzer``: iNNvestigate's names and keyword arguments, Zennit's presets, CLRP.

Every name is one declared :class:`AnalyzerEntry` in :data:`ENTRIES`: what it builds, its
family, the options it takes with their defaults and how it takes input bounds.
``create_analyzer``, ``tf-clrp list``, the CLI and the error messages all read the entries,
so an option that is not declared is refused with the list of valid ones.

Adding a preset is one entry (``makes="rule"`` or ``"composite"``: the builder returns the
rule or composite); adding an algorithm is its module plus one entry (``makes="analyzer"``:
the builder is called with the model and the options). Builders are named as
``"module:attribute"`` and imported on first use, so reading the table (``tf-clrp list``)
does not import TensorFlow.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from tf_clrp.analyzers.base import Analyzer
    from tf_clrp.composites import Composite
    from tf_clrp.rules import Rule

#: Options (and defaults) of every analyzer built on ``tf_clrp.analyzers.base.Analyzer``.
ENGINE_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "output_index": None,
        "layer_name": None,
        "neuron_selection_mode": "max_activation",
        "batch_size": None,
        "fold_batch_norm": True,
        "use_tf_function": True,
        "neuron_selection_unit": "unit",
        "precision": "float32",
        "input_name": None,
    }
)
#: Options of ``Analyzer`` itself (analyzers that run no propagation, e.g. attention rollout).
_ANALYZER_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        k: v
        for k, v in ENGINE_OPTIONS.items()
        if k not in ("use_tf_function", "neuron_selection_unit")
    }
)
#: Options of every LRP rule and preset entry, on top of ``ENGINE_OPTIONS``.
LRP_OPTIONS: Mapping[str, Any] = MappingProxyType({"input_layer_rule": None, "layer_rules": None})
#: Group titles of the families, in ``tf-clrp list`` order.
FAMILIES: Mapping[str, str] = MappingProxyType(
    {
        "contrastive": "contrastive",
        "lrp": "LRP rules (iNNvestigate names)",
        "lrp_preset": "LRP presets (Zennit composites, sequential presets)",
        "gradient": "gradient family",
        "cam": "class activation maps (Grad-CAM family)",
        "model_agnostic": "model-agnostic and other",
        "attention": "attention (transformer models)",
    }
)
_NONE: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class AnalyzerEntry:
    """One analyzer name: what it builds and what it takes.

    Attributes:
        name: The name ``create_analyzer`` takes.
        family: Its group (a key of :data:`FAMILIES`).
        builds: ``"module:attribute"`` of the builder (or the builder itself).
        makes: What the builder returns: ``"analyzer"`` (called as ``builder(model, **fixed,
            **options)``), ``"rule"`` (called with its own options; the rule is applied to
            every layer) or ``"composite"`` (called with its own options).
        options: The name's own options and their defaults.
        shared: Options it shares with its kind (``ENGINE_OPTIONS`` and ``LRP_OPTIONS``).
        fixed: Builder arguments the name fixes (not options).
        input_bounds: How it takes the input's value range (z^B first-layer rule):
            ``"input_layer_rule"`` (``input_layer_rule=(low, high)``), ``"low_high"``
            (``low=``, ``high=``) or None.
        python_only: Why the CLI cannot build it (it needs Python objects), or None.
    """

    name: str
    family: str
    builds: str | Callable[..., Any]
    makes: Literal["analyzer", "rule", "composite"] = "analyzer"
    options: Mapping[str, Any] = field(default_factory=dict)
    shared: Mapping[str, Any] = field(default_factory=lambda: ENGINE_OPTIONS)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    input_bounds: Literal["input_layer_rule", "low_high"] | None = None
    python_only: str | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        """Every option this name takes, with its default."""
        return {**self.shared, **self.options}

    def takes(self, option: str) -> bool:
        """Whether ``create_analyzer(self.name, model, option=...)`` is accepted."""
        return option in self.shared or option in self.options

    def build(self, model: Any, **kwargs: Any) -> Analyzer:
        """Builds the analyzer (options already checked by ``create_analyzer``)."""
        builder = _resolve(self.builds)
        if self.makes == "analyzer":
            return builder(model, **self.fixed, **kwargs)
        own = {key: kwargs.pop(key) for key in self.options if key in kwargs}
        made = builder(**self.fixed, **own)
        if self.makes == "rule":
            from tf_clrp import composites

            made = composites.uniform(made, self.name.removeprefix("lrp."))
        return _lrp(model, made, **kwargs)


def _resolve(builds: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(builds):
        return builds
    module, _, attribute = builds.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _lrp(
    model: Any,
    composite: Composite,
    input_layer_rule: Any = None,
    layer_rules: dict[str, Rule] | None = None,
    **kwargs: Any,
) -> Analyzer:
    from tf_clrp import composites
    from tf_clrp.analyzers.propagation import Propagation

    composite = composites.assemble(
        composite, input_layer_rule=input_layer_rule, layer_rules=layer_rules
    )
    return Propagation(model, composite, seed="value", **kwargs)


def _gradient(
    model: Any,
    *,
    activation: str,
    multiply_by_input: bool = False,
    seed: str = "one",
    postprocess: str | None = None,
    layer_rules: dict[str, Rule] | None = None,
    **kwargs: Any,
) -> Analyzer:
    """Gradient-type analyzers. DeConvNet and Guided Backprop seed the selected logit's value,
    as iNNvestigate does (their maps scale with it)."""
    from tf_clrp import composites
    from tf_clrp.analyzers.propagation import Propagation

    composite = composites.assemble(
        composites.gradient_composite(activation), layer_rules=layer_rules
    )
    return Propagation(
        model,
        composite,
        seed=seed,
        multiply_by_input=multiply_by_input,
        postprocess=postprocess,
        **kwargs,
    )


def _generic_lrp(
    model: Any, composite: Composite | None = None, rule: Rule | None = None, **kwargs: Any
) -> Analyzer:
    from tf_clrp import composites

    if (composite is None) == (rule is None):
        raise TypeError("'lrp' needs exactly one of composite=<Composite> or rule=<Rule>")
    return _lrp(model, composite or composites.uniform(rule), **kwargs)  # type: ignore[arg-type]


def _sequential_preset(epsilon: float = 0.1, *, alpha: float, beta: float, flat: bool) -> Composite:
    """iNNvestigate's sequential presets: ε on Dense, αβ (full bias) on convolutions."""
    from tf_clrp import rules
    from tf_clrp.composites import Composite

    comp = Composite(
        {"dense": rules.Epsilon(epsilon), "convolution": rules.AlphaBeta(alpha, beta, bias="full")},
        name="sequential_preset",
    )
    return comp.with_first_layer(rules.Flat()) if flat else comp


def _alpha_beta(
    alpha: float | None = None, beta: float | None = None, *, bias: bool = True
) -> Rule:
    """iNNvestigate's αβ: one of alpha/beta suffices (α − β = 1; neither: α1β0); the full
    bias in both parts (``bias=False``: ignore it, the ``_IB`` names)."""
    from tf_clrp import rules

    if alpha is None and beta is None:
        alpha = 1.0
    alpha = beta + 1.0 if alpha is None else alpha
    beta = alpha - 1.0 if beta is None else beta
    return rules.AlphaBeta(alpha, beta, bias="full" if bias else False)


def _deep_taylor(
    model: Any,
    low: Any = None,
    high: Any = None,
    *,
    bounded: bool = False,
    layer_rules: dict[str, Rule] | None = None,
    **kwargs: Any,
) -> Analyzer:
    """iNNvestigate's Deep Taylor: z⁺ on Dense/Conv, true gradients elsewhere."""
    from tf_clrp import composites, rules
    from tf_clrp.analyzers.propagation import Propagation
    from tf_clrp.composites import Composite

    if bounded and (low is None or high is None):
        raise TypeError("'deep_taylor.bounded' needs low=<min input> and high=<max input>")
    composite = Composite(
        {
            "dense": rules.ZPlus(1e-7),
            "convolution": rules.ZPlus(1e-7),
            "avg_pool": rules.Gradient(),
            "add": rules.Gradient(),
        },
        first_layer=rules.ZBox(low, high) if bounded else None,
        activation="gradient",
        fused_activation="pass",
        name="deep_taylor",
    )
    composite = composites.assemble(composite, layer_rules=layer_rules)
    return Propagation(model, composite, seed="relu", **kwargs)


def _lrp_rule(
    name: str, builds: str | Callable[..., Any], options: Mapping[str, Any] = _NONE, **fixed: Any
) -> AnalyzerEntry:
    """An LRP name that applies one rule to every layer."""
    return AnalyzerEntry(
        name,
        "lrp",
        builds,
        "rule",
        options,
        {**ENGINE_OPTIONS, **LRP_OPTIONS},
        fixed,
        input_bounds="input_layer_rule",
    )


def _lrp_preset(
    name: str, builds: str | Callable[..., Any], options: Mapping[str, Any] = _NONE, **fixed: Any
) -> AnalyzerEntry:
    """An LRP name that builds a composite (a rule per layer type)."""
    return AnalyzerEntry(
        name,
        "lrp_preset",
        builds,
        "composite",
        options,
        {**ENGINE_OPTIONS, **LRP_OPTIONS},
        fixed,
        input_bounds="input_layer_rule",
    )


_EPS_BIAS = {"epsilon": 1e-7, "bias": True}
_GRADIENT = {"postprocess": None, "layer_rules": None}
_CONTRASTIVE = {"composite": None, "rule": None, "input_layer_rule": None, "layer_rules": None}
_CAM = {
    "layer_name": None,
    "method": None,
    "upsample": True,
    "contrast": None,
    "explained_layer": None,
    "fold_batch_norm": False,
}
_WINDOWS = {"window": 8, "stride": 4}
_SCORES = {"batch_size": 64, "logits": True, "progress": False}

#: Every analyzer name, one declared entry each (the order is ``tf-clrp list``'s).
ENTRIES: tuple[AnalyzerEntry, ...] = (
    # contrastive
    AnalyzerEntry(
        "clrp",
        "contrastive",
        "tf_clrp.analyzers.contrastive:CLRP",
        options={"contrast": "others", **_CONTRASTIVE},
        input_bounds="input_layer_rule",
    ),
    AnalyzerEntry(
        "sglrp",
        "contrastive",
        "tf_clrp.analyzers.sglrp:SGLRP",
        options=_CONTRASTIVE,
        input_bounds="input_layer_rule",
    ),
    # LRP rules, iNNvestigate names
    AnalyzerEntry("deep_taylor", "lrp", _deep_taylor, options={"layer_rules": None}),
    AnalyzerEntry(
        "deep_taylor.bounded",
        "lrp",
        _deep_taylor,
        fixed={"bounded": True},
        options={"low": None, "high": None, "layer_rules": None},
        input_bounds="low_high",
    ),
    AnalyzerEntry(
        "lrp",
        "lrp",
        _generic_lrp,
        options={"composite": None, "rule": None},
        shared={**ENGINE_OPTIONS, **LRP_OPTIONS},
        python_only="needs a composite or rule object",
    ),
    _lrp_rule("lrp.alpha_1_beta_0", _alpha_beta, alpha=1.0, beta=0.0),
    _lrp_rule("lrp.alpha_1_beta_0_IB", _alpha_beta, alpha=1.0, beta=0.0, bias=False),
    _lrp_rule("lrp.alpha_2_beta_1", _alpha_beta, alpha=2.0, beta=1.0),
    _lrp_rule("lrp.alpha_2_beta_1_IB", _alpha_beta, alpha=2.0, beta=1.0, bias=False),
    _lrp_rule("lrp.alpha_beta", _alpha_beta, {"alpha": None, "beta": None}),
    _lrp_rule("lrp.epsilon", "tf_clrp.rules:Epsilon", _EPS_BIAS),
    _lrp_rule("lrp.flat", "tf_clrp.rules:Flat", {"epsilon": 1e-9}),
    _lrp_rule("lrp.gamma", "tf_clrp.rules:Gamma", {"gamma": 0.25, "bias": True, "epsilon": 1e-6}),
    _lrp_rule("lrp.w_square", "tf_clrp.rules:WSquare", {"epsilon": 1e-9, "bias": False}),
    _lrp_rule("lrp.z", "tf_clrp.rules:Z", _EPS_BIAS),
    _lrp_rule("lrp.z_plus", "tf_clrp.rules:ZPlus", {"epsilon": 1e-9, "bias": False}),
    _lrp_rule("lrp.z_plus_fast", "tf_clrp.rules:ZPlusFast", {"epsilon": 1e-9}),
    # LRP presets: Zennit composites, iNNvestigate's sequential presets
    _lrp_preset(
        "lrp.epsilon_alpha_2_beta_1", "tf_clrp.composites:epsilon_alpha2_beta1", {"epsilon": 1e-6}
    ),
    _lrp_preset(
        "lrp.epsilon_gamma_box",
        "tf_clrp.composites:epsilon_gamma_box",
        {"low": -3.0, "high": 3.0, "epsilon": 1e-6, "gamma": 0.25},
    ),
    _lrp_preset("lrp.epsilon_plus", "tf_clrp.composites:epsilon_plus", {"epsilon": 1e-6}),
    _lrp_preset("lrp.epsilon_plus_flat", "tf_clrp.composites:epsilon_plus_flat", {"epsilon": 1e-6}),
    # transformers: AttnLRP (LXT's rules) and CP-LRP; the ε composite on other models
    _lrp_preset(
        "attnlrp", "tf_clrp.composites:attnlrp", {"epsilon": 1e-6, "product_epsilon": 1e-8}
    ),
    _lrp_preset("attnlrp.cp", "tf_clrp.composites:attnlrp", {"epsilon": 1e-6}, cp=True),
    _lrp_preset(
        "lrp.sequential_preset_a",
        _sequential_preset,
        {"epsilon": 0.1},
        alpha=1.0,
        beta=0.0,
        flat=False,
    ),
    _lrp_preset(
        "lrp.sequential_preset_a_flat",
        _sequential_preset,
        {"epsilon": 0.1},
        alpha=1.0,
        beta=0.0,
        flat=True,
    ),
    _lrp_preset(
        "lrp.sequential_preset_b",
        _sequential_preset,
        {"epsilon": 0.1},
        alpha=2.0,
        beta=1.0,
        flat=False,
    ),
    _lrp_preset(
        "lrp.sequential_preset_b_flat",
        _sequential_preset,
        {"epsilon": 0.1},
        alpha=2.0,
        beta=1.0,
        flat=True,
    ),
    # gradient family
    AnalyzerEntry(
        "deconvnet",
        "gradient",
        _gradient,
        options=_GRADIENT,
        fixed={"activation": "deconvnet", "seed": "value"},
    ),
    AnalyzerEntry(
        "gradient", "gradient", _gradient, options=_GRADIENT, fixed={"activation": "gradient"}
    ),
    AnalyzerEntry(
        "guided_backprop",
        "gradient",
        _gradient,
        options=_GRADIENT,
        fixed={"activation": "guided", "seed": "value"},
    ),
    AnalyzerEntry(
        "input_t_gradient",
        "gradient",
        _gradient,
        options=_GRADIENT,
        fixed={"activation": "gradient", "multiply_by_input": True},
    ),
    AnalyzerEntry(
        "integrated_gradients",
        "gradient",
        "tf_clrp.analyzers.gradient_methods:IntegratedGradients",
        options={"reference_inputs": 0.0, "steps": 64, "postprocess": None, "layer_rules": None},
    ),
    AnalyzerEntry(
        "smoothgrad",
        "gradient",
        "tf_clrp.analyzers.gradient_methods:SmoothGrad",
        options={
            "augment_by_n": 64,
            "noise_scale": 1.0,
            "noise_relative": False,
            "seed": 0,
            "postprocess": None,
            "layer_rules": None,
        },
    ),
    # class activation maps
    AnalyzerEntry("grad_cam", "cam", "tf_clrp.analyzers.cam:GradCAM", options=_CAM),
    AnalyzerEntry(
        "grad_cam_plus_plus", "cam", "tf_clrp.analyzers.cam:GradCAMPlusPlus", options=_CAM
    ),
    AnalyzerEntry(
        "guided_grad_cam",
        "cam",
        "tf_clrp.analyzers.cam:GuidedGradCAM",
        options={"layer_name": None, "explained_layer": None, "fold_batch_norm": False},
    ),
    AnalyzerEntry("layer_cam", "cam", "tf_clrp.analyzers.cam:LayerCAM", options=_CAM),
    # attention (transformer models)
    AnalyzerEntry(
        "attention_rollout",
        "attention",
        "tf_clrp.analyzers.rollout:AttentionRollout",
        shared=_ANALYZER_OPTIONS,
        options={"class_token": None, "use_tf_function": True},
    ),
    # model-agnostic (not built on the propagation engine: only their own options)
    AnalyzerEntry(
        "occlusion",
        "model_agnostic",
        "tf_clrp.analyzers.model_agnostic:Occlusion",
        shared=_NONE,
        options={**_WINDOWS, "baseline": 0.0, **_SCORES},
    ),
    AnalyzerEntry(
        "prediction_difference",
        "model_agnostic",
        "tf_clrp.analyzers.model_agnostic:PredictionDifference",
        shared=_NONE,
        options={
            **_WINDOWS,
            "sampling": "marginal",
            "n_samples": 10,
            "reference": None,
            "frame": 2,
            "evidence": "log_odds",
            "seed": 0,
            **_SCORES,
        },
    ),
    AnalyzerEntry(
        "rise",
        "model_agnostic",
        "tf_clrp.analyzers.rise:RISE",
        shared=_NONE,
        options={
            "n_masks": 2000,
            "grid_size": 7,
            "cell_size": None,
            "p1": 0.5,
            "seed": 0,
            "baseline": 0.0,
            **_SCORES,
            "logits": False,
            "use_tf_function": True,
        },
    ),
)

#: Name -> entry.
ANALYZERS: Mapping[str, AnalyzerEntry] = MappingProxyType({e.name: e for e in ENTRIES})


def list_analyzers() -> list[str]:
    """Names accepted by ``create_analyzer``, sorted."""
    return sorted(ANALYZERS)


def entry(name: str) -> AnalyzerEntry:
    """The declared entry of an analyzer name.

    Raises:
        ValueError: unknown name (the message lists close and valid names).
    """
    if name not in ANALYZERS:
        close = difflib.get_close_matches(name, ANALYZERS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown analyzer {name!r}.{hint} Valid names: {', '.join(list_analyzers())}"
        )
    return ANALYZERS[name]


def accepted_options(name: str) -> frozenset[str]:
    """The keyword arguments ``create_analyzer(name, model, ...)`` takes.

    Args:
        name: One of ``list_analyzers()``.

    Raises:
        ValueError: unknown name.
    """
    return frozenset(entry(name).defaults)


def create_analyzer(name: str, model: Any, **kwargs: Any) -> Analyzer:
    """Creates an analyzer by name, like ``innvestigate.create_analyzer``.

    Args:
        name: One of ``list_analyzers()`` (e.g. "lrp.z_plus", "clrp", "gradient").
        model: A Keras 3 functional or Sequential model (never modified).
        **kwargs: The analyzer's options (iNNvestigate's names: epsilon, alpha, beta,
            input_layer_rule, low, high, steps, augment_by_n, noise_scale, ...; each name's
            options and defaults are ``entry(name).defaults``).

    Returns:
        The analyzer; call ``.analyze(x, neuron_selection=...)``. Its ``name`` attribute is
        ``name`` and its ``options`` attribute a copy of ``kwargs`` (recorded, e.g., in
        ``explain_dataset``'s manifest).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError: an option this analyzer does not take (the message lists the valid ones).
    """
    declared = entry(name)
    unknown = sorted(key for key in kwargs if not declared.takes(key))
    if unknown:
        raise TypeError(
            f"analyzer {name!r} got unknown option(s) {unknown}; it accepts: "
            f"{', '.join(sorted(declared.defaults))}"
        )
    analyzer = declared.build(model, **kwargs)
    analyzer.name = name
    analyzer.options = dict(kwargs)
    return analyzer
