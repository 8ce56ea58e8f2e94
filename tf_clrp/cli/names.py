"""The analyzer names ``tf-clrp list`` prints, grouped, as a declared table.

``tf-clrp list`` must not import TensorFlow, and ``tf_clrp.registry`` does; this table is
the registry's name list written out (``tests/test_cli_quick.py`` checks the two are equal).
"""

from __future__ import annotations

#: Group title -> analyzer names of ``tf_clrp.list_analyzers()``, in print order.
ANALYZER_GROUPS: dict[str, tuple[str, ...]] = {
    "contrastive": ("clrp", "sglrp"),
    "LRP rules (iNNvestigate names)": (
        "deep_taylor", "deep_taylor.bounded", "lrp", "lrp.alpha_1_beta_0",
        "lrp.alpha_1_beta_0_IB", "lrp.alpha_2_beta_1", "lrp.alpha_2_beta_1_IB",
        "lrp.alpha_beta", "lrp.epsilon", "lrp.flat", "lrp.gamma", "lrp.w_square", "lrp.z",
        "lrp.z_plus", "lrp.z_plus_fast"),
    "LRP presets (Zennit composites, sequential presets)": (
        "lrp.epsilon_alpha_2_beta_1", "lrp.epsilon_gamma_box", "lrp.epsilon_plus",
        "lrp.epsilon_plus_flat", "lrp.sequential_preset_a", "lrp.sequential_preset_a_flat",
        "lrp.sequential_preset_b", "lrp.sequential_preset_b_flat"),
    "gradient family": ("deconvnet", "gradient", "guided_backprop", "input_t_gradient",
                        "integrated_gradients", "smoothgrad"),
    "class activation maps (Grad-CAM family)": ("grad_cam", "grad_cam_plus_plus",
                                                "guided_grad_cam", "layer_cam"),
    "model-agnostic and other": ("occlusion", "prediction_difference", "rise"),
    "transformers": ("attention_rollout",),
}
#: Names that ``create_analyzer`` knows but the CLI cannot build (they need Python objects).
PYTHON_ONLY = {"lrp": "needs composite= or rule="}


def analyzer_names() -> list[str]:
    """Every analyzer name, sorted (equals ``tf_clrp.list_analyzers()``)."""
    return sorted(name for group in ANALYZER_GROUPS.values() for name in group)


def cli_methods() -> list[str]:
    """The names ``--methods`` accepts: every analyzer the CLI can build, sorted."""
    return [name for name in analyzer_names() if name not in PYTHON_ONLY]
