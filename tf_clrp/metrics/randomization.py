"""Model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

The layers with trainable weights (nested models inlined) are re-initialised from the top
(output side) down, on a *clone* of the user's model (``keras.models.clone_model`` +
``set_weights``; the user's model is never touched):

* ``"cascading"``: step l re-initialises layers 1..l (top-down, cumulative);
* ``"independent"``: step l re-initialises only layer l.

Re-initialisation draws each trainable weight from its layer's own initializer
(``kernel_initializer``, ``bias_initializer``, ``gamma_initializer``, ...; seeded), or, where
a layer declares none, from a normal distribution with the weight's own standard deviation.
Non-trainable weights (BatchNorm statistics) are kept.

After each step the maps of the *same* classes (the original model's predictions unless
``targets`` are given) are compared with the original maps, per image, on the channel-summed
maps (absolute values when ``absolute=True``, the paper's main setting):

* Spearman rank correlation (average ranks for ties);
* SSIM (Wang et al. 2004) of the two maps, each min–max normalised to [0, 1]: 7 × 7 uniform
  windows, K1 = 0.01, K2 = 0.03, sample covariances, mean over the valid windows —
  scikit-image's ``structural_similarity`` defaults with ``data_range=1``.

A map that does not depend on the weights keeps both at 1; a sensitive method falls to ≈ 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tf_clrp.errors import ModelStructureError
from tf_clrp.graph import trace_model
from tf_clrp.metrics._common import as_images, class_ids, reduce_maps, spearman
from tf_clrp.metrics._keras import score_function

Explain = str | Callable[[keras.Model, np.ndarray, np.ndarray], Any]


@dataclass
class RandomizationResult:
    """Outcome of :func:`model_randomization`.

    Attributes:
        steps: Per step, the layer names re-initialised at that step (top-down).
        mode: "cascading" or "independent".
        spearman: (n_steps, N) rank correlation with the original map.
        ssim: (n_steps, N) SSIM with the original map.
        targets: (N,) explained class per image.
        original: (N, H, W) channel-summed original maps (abs if ``absolute``).
    """

    steps: list[list[str]]
    mode: str
    spearman: np.ndarray
    ssim: np.ndarray
    targets: np.ndarray
    original: np.ndarray

    @property
    def mean_spearman(self) -> np.ndarray:
        """(n_steps,) mean over images (NaN-free images only)."""
        return np.nanmean(self.spearman, axis=1)

    @property
    def mean_ssim(self) -> np.ndarray:
        """(n_steps,) mean over images."""
        return np.nanmean(self.ssim, axis=1)


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    window: int = 7,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean structural similarity of two 2-D arrays (scikit-image's default settings).

    Args:
        a: (H, W).
        b: (H, W).
        window: Side of the uniform window.
        data_range: Value range L of the data (C1 = (k1 L)², C2 = (k2 L)²).
        k1: Constant of the luminance term.
        k2: Constant of the contrast term.

    Returns:
        The mean SSIM over all window positions inside the image.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < window:
        raise ValueError(
            f"ssim needs two 2-D arrays of one shape, each side >= {window}; got "
            f"{a.shape} and {b.shape}"
        )
    wa, wb = sliding_window_view(a, (window, window)), sliding_window_view(b, (window, window))
    mean_a, mean_b = wa.mean(axis=(-2, -1)), wb.mean(axis=(-2, -1))
    unbiased = window * window / (window * window - 1.0)
    var_a = unbiased * ((wa * wa).mean(axis=(-2, -1)) - mean_a**2)
    var_b = unbiased * ((wb * wb).mean(axis=(-2, -1)) - mean_b**2)
    cov = unbiased * ((wa * wb).mean(axis=(-2, -1)) - mean_a * mean_b)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    value = (
        (2 * mean_a * mean_b + c1)
        * (2 * cov + c2)
        / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
    )
    return float(value.mean())


def unit_range(m: np.ndarray) -> np.ndarray:
    """Min–max normalisation to [0, 1]; a constant map becomes 0."""
    m = np.asarray(m, np.float64)
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def weighted_layers(model: keras.Model) -> list[str]:
    """Names (``outer/inner`` in nested models) of the layers with trainable weights,
    top (output side) first, each once."""
    names: list[str] = []
    seen: set[int] = set()
    for node in trace_model(model).nodes:
        op = node.op
        if op is None or id(op) in seen or not getattr(op, "trainable_weights", None):
            continue
        seen.add(id(op))
        names.append(node.name)
    return names[::-1]


def _child(layer: Any, name: str) -> Any:
    """The sublayer ``name`` of a model (``get_layer``) or of a layer walked inside (an
    attribute holding a layer, e.g. MultiHeadAttention's ``query`` projection)."""
    if hasattr(layer, "get_layer"):
        try:
            return layer.get_layer(name)
        except ValueError:
            pass
    for value in vars(layer).values():
        if isinstance(value, keras.layers.Layer) and value.name == name:
            return value
    raise ModelStructureError(f"layer {layer.name!r} has no sublayer named {name!r}")


def _layer_at(model: keras.Model, path: str) -> Any:
    layer: Any = model
    for part in path.split("/"):
        layer = _child(layer, part)
    return layer


def clone_with_weights(model: keras.Model, probe: np.ndarray | None = None) -> keras.Model:
    """A clone of ``model`` with copies of its weights and no variable shared with it.

    Raises:
        ModelStructureError: the clone shares variables or computes something else on
            ``probe``.
    """
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    shared = {id(v) for v in clone.weights} & {id(v) for v in model.weights}
    if shared:
        raise ModelStructureError(
            f"cloning model {model.name!r} shares {len(shared)} variable(s) with it; the "
            "randomisation test would change the user's weights"
        )
    if probe is not None:
        np.testing.assert_allclose(
            np.asarray(clone(probe, training=False)),
            np.asarray(model(probe, training=False)),
            rtol=1e-4,
            atol=1e-5,
            err_msg=f"clone of {model.name!r} differs",
        )
    return clone


def _initializer(layer: Any, weight: Any) -> Any:
    name = weight.name.split("/")[-1]
    candidates = [f"{name}_initializer", f"{name.replace('_kernel', '')}_initializer"]
    if name == "kernel" and hasattr(layer, "depthwise_initializer"):
        candidates.insert(0, "depthwise_initializer")
    for attribute in candidates:
        initializer = getattr(layer, attribute, None)
        if initializer is not None:
            return initializer
    return None


def reinitialize(layer: Any, seed: int) -> None:
    """Re-draws the trainable weights of ``layer`` (of a clone) from its initializers."""
    rng = np.random.default_rng(seed)
    for k, weight in enumerate(layer.trainable_weights):
        shape = tuple(weight.shape)
        initializer = _initializer(layer, weight)
        if initializer is None:
            std = float(np.std(np.asarray(weight)))
            weight.assign(rng.normal(0.0, std, shape).astype(weight.dtype))
            continue
        config = initializer.get_config()
        if "seed" in config:
            config["seed"] = seed * 1000 + k
        fresh = type(initializer).from_config(config)
        weight.assign(np.asarray(fresh(shape, dtype=weight.dtype)))


def _maps(
    explain: Explain,
    model: keras.Model,
    x: np.ndarray,
    targets: np.ndarray,
    absolute: bool,
    explain_kwargs: dict[str, Any],
) -> np.ndarray:
    if isinstance(explain, str):
        import tf_clrp

        analyzer = tf_clrp.create_analyzer(explain, model, **explain_kwargs)
        maps = analyzer.analyze(x, neuron_selection=targets)
    else:
        maps = explain(model, x, targets)
    reduced = reduce_maps(np.asarray(maps))
    return np.abs(reduced) if absolute else reduced


def model_randomization(
    model: keras.Model,
    images: Any,
    explain: Explain,
    targets: Any = None,
    mode: Literal["cascading", "independent"] = "cascading",
    layers: Sequence[str | Sequence[str]] | None = None,
    absolute: bool = True,
    seed: int = 0,
    explain_kwargs: dict[str, Any] | None = None,
) -> RandomizationResult:
    """The model-parameter randomisation test (see the module doc).

    Args:
        model: A Keras model (functional/Sequential, nested models fine); never modified.
        images: (N, H, W, C).
        explain: A ``create_analyzer`` name, or a callable ``(model, images, targets) ->
            maps`` (N, H, W[, C]).
        targets: Classes explained (default: the original model's predictions); the same
            classes are explained after every step.
        mode: "cascading" or "independent".
        layers: Steps, top-down: layer names (``outer/inner`` for nested models) or groups
            of names re-initialised together; default every layer with trainable weights.
        absolute: Compare absolute maps (the paper's main setting).
        seed: Seed of the re-initialisation.
        explain_kwargs: Options for ``create_analyzer`` when ``explain`` is a name.

    Returns:
        :class:`RandomizationResult`.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    x = as_images(images)
    kwargs = dict(explain_kwargs or {})
    steps = [
        [s] if isinstance(s, str) else list(s)
        for s in (weighted_layers(model) if layers is None else layers)
    ]
    if not steps:
        raise ModelStructureError(f"model {model.name!r} has no layer with trainable weights")
    clean = score_function(model)(x).reshape(len(x), -1)
    tgt = class_ids("max_activation" if targets is None else targets, clean)
    original = _maps(explain, model, x, tgt, absolute, kwargs)
    valid = weighted_layers(model)
    unknown = [name for group in steps for name in group if name not in valid]
    if unknown:
        raise ModelStructureError(
            f"model {model.name!r} has no layer named {unknown[0]!r} with trainable weights; "
            f"layers (top-down): {', '.join(valid)}"
        )
    clone = clone_with_weights(model, x[:1])
    rank = np.empty((len(steps), len(x)))
    similarity = np.empty((len(steps), len(x)))
    for step, group in enumerate(steps):
        if mode == "independent":
            clone = clone_with_weights(model)
        for j, name in enumerate(group):
            reinitialize(_layer_at(clone, name), seed + 7919 * step + j)
        maps = _maps(explain, clone, x, tgt, absolute, kwargs)
        for i in range(len(x)):
            rank[step, i] = spearman(original[i], maps[i])
            similarity[step, i] = ssim(unit_range(original[i]), unit_range(maps[i]))
    return RandomizationResult(
        steps=steps, mode=mode, spearman=rank, ssim=similarity, targets=tgt, original=original
    )
