"""``create_analyzer``: iNNvestigate's names and keyword arguments, Zennit's presets, CLRP.

Each entry is a small factory with an explicit signature; the table below *is* the list of
analyzers. Keyword arguments are checked against the factory and the analyzer base, so a
typo fails with the list of valid names instead of being ignored.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from tf_clrp import composites, rules
from tf_clrp.analyzers import CLRP, SGLRP, IntegratedGradients, Propagation, SmoothGrad
from tf_clrp.analyzers.base import Analyzer
from tf_clrp.analyzers.cam import GradCAM, GradCAMPlusPlus, GuidedGradCAM, LayerCAM
from tf_clrp.composites import Composite
from tf_clrp.metrics.model_agnostic import Occlusion, PredictionDifference
from tf_clrp.metrics.rise import RISE

#: Options every analyzer accepts (see ``Analyzer`` and ``Propagation``).
COMMON_OPTIONS = ("output_index", "layer_name", "neuron_selection_mode", "batch_size",
                  "fold_batch_norm", "use_tf_function", "neuron_selection_unit", "precision",
                  "input_name")
LRP_OPTIONS = ("input_layer_rule", "layer_rules")


def _lrp(model: Any, composite: Composite, input_layer_rule: Any = None,
         layer_rules: dict[str, rules.Rule] | None = None, **kwargs: Any) -> Propagation:
    composite = composites.assemble(composite, input_layer_rule=input_layer_rule,
                                    layer_rules=layer_rules)
    return Propagation(model, composite, seed="value", **kwargs)


def _gradient_family(activation: str, multiply_by_input: bool = False,
                     seed: str = "one") -> Callable[..., Analyzer]:
    """Gradient-type analyzers. DeConvNet and Guided Backprop seed the selected logit's value,
    as iNNvestigate does (their maps scale with it)."""
    def factory(model: Any, postprocess: str | None = None,
                layer_rules: dict[str, rules.Rule] | None = None, **kwargs: Any) -> Analyzer:
        composite = composites.assemble(composites.gradient_composite(activation),
                                        layer_rules=layer_rules)
        return Propagation(model, composite, seed=seed, multiply_by_input=multiply_by_input,
                           postprocess=postprocess, **kwargs)
    factory.lrp = False  # type: ignore[attr-defined]
    return factory


def _uniform(make_rule: Callable[..., rules.Rule], name: str) -> Callable[..., Analyzer]:
    params = [p for p in inspect.signature(make_rule).parameters.values()
              if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]

    def factory(model: Any, **kwargs: Any) -> Analyzer:
        rule_kwargs = {p.name: kwargs.pop(p.name) for p in params if p.name in kwargs}
        return _lrp(model, composites.uniform(make_rule(**rule_kwargs), name), **kwargs)

    factory.rule_parameters = tuple(p.name for p in params)  # type: ignore[attr-defined]
    return factory


def _preset(make_composite: Callable[..., Composite]) -> Callable[..., Analyzer]:
    params = [p for p in inspect.signature(make_composite).parameters.values()
              if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]

    def factory(model: Any, **kwargs: Any) -> Analyzer:
        comp_kwargs = {p.name: kwargs.pop(p.name) for p in params if p.name in kwargs}
        return _lrp(model, make_composite(**comp_kwargs), **kwargs)

    factory.rule_parameters = tuple(p.name for p in params)  # type: ignore[attr-defined]
    return factory


def _generic_lrp(model: Any, composite: Composite | None = None, rule: rules.Rule | None = None,
                 **kwargs: Any) -> Analyzer:
    if (composite is None) == (rule is None):
        raise TypeError("'lrp' needs exactly one of composite=<Composite> or rule=<Rule>")
    return _lrp(model, composite or composites.uniform(rule), **kwargs)  # type: ignore[arg-type]


def _sequential(conv: rules.Rule, flat: bool) -> Callable[[float], Composite]:
    def make(epsilon: float = 0.1) -> Composite:
        comp = Composite({"dense": rules.Epsilon(epsilon), "convolution": conv},
                         name="sequential_preset")
        return comp.with_first_layer(rules.Flat()) if flat else comp
    return make


def _alpha_beta(alpha: float | None = None, beta: float | None = None) -> rules.Rule:
    """iNNvestigate's αβ: one of alpha/beta suffices (α − β = 1; neither: α1β0); the full
    bias in both parts."""
    if alpha is None and beta is None:
        alpha = 1.0
    alpha = beta + 1.0 if alpha is None else alpha
    beta = alpha - 1.0 if beta is None else beta
    return rules.AlphaBeta(alpha, beta, bias="full")


def _innvestigate_alpha_beta(alpha: float, beta: float, bias: bool) -> Callable[[], rules.Rule]:
    return lambda: rules.AlphaBeta(alpha, beta, bias="full" if bias else False)


def _deep_taylor(first_layer: rules.Rule | None = None) -> Composite:
    """iNNvestigate's Deep Taylor: z⁺ on Dense/Conv, true gradients elsewhere."""
    return Composite({"dense": rules.ZPlus(1e-7), "convolution": rules.ZPlus(1e-7),
                      "avg_pool": rules.Gradient(), "add": rules.Gradient()},
                     first_layer=first_layer, activation="gradient", fused_activation="pass",
                     name="deep_taylor")


def _deep_taylor_factory(model: Any, low: Any = None, high: Any = None, *, bounded: bool = False,
                         **kwargs: Any) -> Analyzer:
    if bounded and (low is None or high is None):
        raise TypeError("'deep_taylor.bounded' needs low=<min input> and high=<max input>")
    first = rules.ZBox(low, high) if bounded else None
    composite = composites.assemble(_deep_taylor(first),
                                    layer_rules=kwargs.pop("layer_rules", None))
    return Propagation(model, composite, seed="relu", **kwargs)


def _bounded_deep_taylor_factory(model: Any, low: Any = None, high: Any = None,
                                 **kwargs: Any) -> Analyzer:
    return _deep_taylor_factory(model, low, high, bounded=True, **kwargs)


ANALYZERS: dict[str, Callable[..., Any]] = {
    # gradient family
    "gradient": _gradient_family("gradient"),
    "input_t_gradient": _gradient_family("gradient", multiply_by_input=True),
    "deconvnet": _gradient_family("deconvnet", seed="value"),
    "guided_backprop": _gradient_family("guided", seed="value"),
    "integrated_gradients": IntegratedGradients,
    "smoothgrad": SmoothGrad,
    # LRP, iNNvestigate names
    "lrp": _generic_lrp,
    "lrp.z": _uniform(rules.Z, "z"),
    "lrp.epsilon": _uniform(rules.Epsilon, "epsilon"),
    "lrp.w_square": _uniform(rules.WSquare, "w_square"),
    "lrp.flat": _uniform(rules.Flat, "flat"),
    "lrp.alpha_beta": _uniform(_alpha_beta, "alpha_beta"),
    "lrp.alpha_2_beta_1": _uniform(_innvestigate_alpha_beta(2.0, 1.0, True),
                                   "alpha_2_beta_1"),
    "lrp.alpha_2_beta_1_IB": _uniform(_innvestigate_alpha_beta(2.0, 1.0, False),
                                      "alpha_2_beta_1_IB"),
    "lrp.alpha_1_beta_0": _uniform(_innvestigate_alpha_beta(1.0, 0.0, True), "alpha_1_beta_0"),
    "lrp.alpha_1_beta_0_IB": _uniform(_innvestigate_alpha_beta(1.0, 0.0, False),
                                      "alpha_1_beta_0_IB"),
    "lrp.z_plus": _uniform(rules.ZPlus, "z_plus"),
    "lrp.z_plus_fast": _uniform(rules.ZPlusFast, "z_plus_fast"),
    "lrp.sequential_preset_a": _preset(_sequential(_innvestigate_alpha_beta(1.0, 0.0, True)(),
                                                   flat=False)),
    "lrp.sequential_preset_b": _preset(_sequential(_innvestigate_alpha_beta(2.0, 1.0, True)(),
                                                   flat=False)),
    "lrp.sequential_preset_a_flat": _preset(_sequential(
        _innvestigate_alpha_beta(1.0, 0.0, True)(), flat=True)),
    "lrp.sequential_preset_b_flat": _preset(_sequential(
        _innvestigate_alpha_beta(2.0, 1.0, True)(), flat=True)),
    "deep_taylor": _deep_taylor_factory,
    "deep_taylor.bounded": _bounded_deep_taylor_factory,
    # LRP, Zennit presets
    "lrp.epsilon_plus": _preset(composites.epsilon_plus),
    "lrp.epsilon_plus_flat": _preset(composites.epsilon_plus_flat),
    "lrp.epsilon_gamma_box": _preset(composites.epsilon_gamma_box),
    "lrp.epsilon_alpha_2_beta_1": _preset(composites.epsilon_alpha2_beta1),
    "lrp.gamma": _uniform(rules.Gamma, "gamma"),
    # contrastive
    "clrp": CLRP,
    "sglrp": SGLRP,
    # class activation maps
    "grad_cam": GradCAM,
    "grad_cam_plus_plus": GradCAMPlusPlus,
    "layer_cam": LayerCAM,
    "guided_grad_cam": GuidedGradCAM,
    # model-agnostic baselines (tf_clrp.metrics)
    "occlusion": Occlusion,
    "prediction_difference": PredictionDifference,
    "rise": RISE,
}


def list_analyzers() -> list[str]:
    """Names accepted by ``create_analyzer``, sorted."""
    return sorted(ANALYZERS)


def accepted_options(name: str) -> frozenset[str]:
    """The keyword arguments ``create_analyzer(name, model, ...)`` takes.

    Args:
        name: One of ``list_analyzers()``.

    Raises:
        ValueError: unknown name.
    """
    if name not in ANALYZERS:
        raise ValueError(f"unknown analyzer {name!r}")
    return frozenset(_accepted_options(ANALYZERS[name]) or ())


def _accepted_options(factory: Callable[..., Any]) -> set[str] | None:
    if inspect.isclass(factory) and not issubclass(factory, Analyzer):
        # not an engine analyzer (e.g. Occlusion): only its own constructor parameters
        params = inspect.signature(factory).parameters
        return {n for n, p in params.items()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - {"model", "self"}
    accepted: set[str] = set(COMMON_OPTIONS)
    for fn in (factory, getattr(factory, "__init__", None)):
        if fn is None:
            continue
        params = inspect.signature(fn).parameters
        accepted.update(n for n, p in params.items() if p.kind is not p.VAR_KEYWORD)
    accepted.update(getattr(factory, "rule_parameters", ()))
    if factory in (CLRP, SGLRP):
        accepted.update(("composite", "rule", "input_layer_rule", "layer_rules"))
    elif (factory is not IntegratedGradients and factory is not SmoothGrad
          and getattr(factory, "lrp", True)):
        accepted.update(LRP_OPTIONS)
    if factory in (IntegratedGradients, SmoothGrad) or not getattr(factory, "lrp", True):
        accepted.update(("postprocess", "layer_rules"))
    if getattr(factory, "cam", False):
        accepted.difference_update(LRP_OPTIONS + ("postprocess",))
    accepted.discard("model")
    accepted.discard("self")
    return accepted


def create_analyzer(name: str, model: Any, **kwargs: Any) -> Analyzer:
    """Creates an analyzer by name, like ``innvestigate.create_analyzer``.

    Args:
        name: One of ``list_analyzers()`` (e.g. "lrp.z_plus", "clrp", "gradient").
        model: A Keras 3 functional or Sequential model (never modified).
        **kwargs: The analyzer's options (iNNvestigate's names: epsilon, alpha, beta,
            input_layer_rule, low, high, steps, augment_by_n, noise_scale, ...).

    Returns:
        The analyzer; call ``.analyze(x, neuron_selection=...)``. Its ``name`` attribute is
        ``name`` and its ``options`` attribute a copy of ``kwargs`` (recorded, e.g., in
        ``explain_dataset``'s manifest).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError: an option this analyzer does not take (the message lists the valid ones).
    """
    if name not in ANALYZERS:
        close = difflib.get_close_matches(name, ANALYZERS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown analyzer {name!r}.{hint} Valid names: {', '.join(list_analyzers())}"
        )
    factory = ANALYZERS[name]
    accepted = _accepted_options(factory)
    unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
    if unknown:
        raise TypeError(
            f"analyzer {name!r} got unknown option(s) {unknown}; it accepts: "
            f"{', '.join(sorted(accepted))}"
        )
    analyzer = factory(model, **kwargs)
    analyzer.name = name
    analyzer.options = dict(kwargs)
    return analyzer
