"""iNNvestigate's analyzer class names, so ported code runs unchanged.

``tf_clrp.analyzer.LRPEpsilon(model, epsilon=0.1)`` is ``tf_clrp.create_analyzer(
"lrp.epsilon", model, epsilon=0.1)``: each name below is generated from the table
:data:`INNVESTIGATE_CLASSES` (iNNvestigate class name → registry name), not written by
hand. Calling one returns the registry's analyzer, with the same keyword checks;
``isinstance(analyzer, LRPEpsilon)`` holds for analyzers created under that name.
"""

from __future__ import annotations

from typing import Any

from tf_clrp.registry import create_analyzer

#: iNNvestigate 2.x class name → ``create_analyzer`` name.
INNVESTIGATE_CLASSES: dict[str, str] = {
    "Gradient": "gradient",
    "InputTimesGradient": "input_t_gradient",
    "Deconvnet": "deconvnet",
    "GuidedBackprop": "guided_backprop",
    "IntegratedGradients": "integrated_gradients",
    "SmoothGrad": "smoothgrad",
    "LRP": "lrp",
    "LRPZ": "lrp.z",
    "LRPEpsilon": "lrp.epsilon",
    "LRPWSquare": "lrp.w_square",
    "LRPFlat": "lrp.flat",
    "LRPAlphaBeta": "lrp.alpha_beta",
    "LRPAlpha2Beta1": "lrp.alpha_2_beta_1",
    "LRPAlpha2Beta1IgnoreBias": "lrp.alpha_2_beta_1_IB",
    "LRPAlpha1Beta0": "lrp.alpha_1_beta_0",
    "LRPAlpha1Beta0IgnoreBias": "lrp.alpha_1_beta_0_IB",
    "LRPZPlus": "lrp.z_plus",
    "LRPZPlusFast": "lrp.z_plus_fast",
    "LRPSequentialPresetA": "lrp.sequential_preset_a",
    "LRPSequentialPresetB": "lrp.sequential_preset_b",
    "LRPSequentialPresetAFlat": "lrp.sequential_preset_a_flat",
    "LRPSequentialPresetBFlat": "lrp.sequential_preset_b_flat",
    "DeepTaylor": "deep_taylor",
    "BoundedDeepTaylor": "deep_taylor.bounded",
}


class _RegistryName(type):
    """Metaclass: calling the class creates the registry analyzer; isinstance by name."""

    registry_name: str

    def __call__(cls, model: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError(
                f"{cls.__name__}(model, ...) takes its options as keyword arguments "
                f"(e.g. epsilon=0.1); got {len(args)} positional argument(s) after the model"
            )
        return create_analyzer(cls.registry_name, model, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return getattr(instance, "name", None) == cls.registry_name


def _make_class(class_name: str, registry_name: str) -> type:
    doc = (
        f"iNNvestigate's ``{class_name}``: ``{class_name}(model, **options)`` is "
        f"``tf_clrp.create_analyzer({registry_name!r}, model, **options)``."
    )
    return _RegistryName(
        class_name, (), {"registry_name": registry_name, "__doc__": doc, "__module__": __name__}
    )


globals().update({name: _make_class(name, key) for name, key in INNVESTIGATE_CLASSES.items()})

#: Registry name → class, like ``innvestigate.analyzer.analyzers``.
analyzers: dict[str, type] = {key: globals()[name] for name, key in INNVESTIGATE_CLASSES.items()}

__all__ = ["INNVESTIGATE_CLASSES", "analyzers", "create_analyzer", *INNVESTIGATE_CLASSES]
