"""Insertion and deletion curves and their AUC (Petsiuk, Das & Saenko 2018).

Pixels are ranked by the channel-summed map, most relevant first (ties in row-major order).
Step k changes the first min(k · ``pixels_per_step``, H·W) pixels of that order:

* deletion: x_k = x with those pixels set to the *substrate* (default 0: "zero");
* insertion: x_k = the substrate (default the image blurred, σ = ``blur_sigma`` = 5 px, as
  the authors' 11 × 11, σ = 5 kernel) with those pixels taken from x.

The curve is the target's score at k = 0..n_steps (n_steps = ⌈H·W / pixels_per_step⌉,
default ``pixels_per_step`` = W: one image row's worth of pixels per step, the authors' 224
for 224 × 224), against the changed fraction k/n_steps; AUC is its trapezoidal area over
[0, 1]: (Σ_k c_k − (c_0 + c_n)/2) / n_steps. The score is the model's output for the class
(a probability for a softmax model, as in the paper; ``logits=True`` strips the softmax).
A good map has a low deletion AUC and a high insertion AUC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tf_clrp._io import ProgressArg, progress_iter
from tf_clrp.metrics._common import (
    as_images,
    chunks,
    class_ids,
    reduce_maps,
)
from tf_clrp.metrics._keras import batched, score_function
from tf_clrp.metrics.perturbation import PerturbationArg, replacement_images


@dataclass
class InsertionDeletionResult:
    """Outcome of :func:`insertion_deletion`.

    Attributes:
        curves: (N, n_steps + 1) target score after k = 0..n_steps steps.
        fractions: (n_steps + 1,) k / n_steps, the x-axis of the AUC (the changed share of
            pixels, except at a partial last step).
        auc: (N,) area under each curve.
        mean_auc: mean of ``auc``.
        targets: (N,) explained class per image (-1 if the model returns one score).
        mode: "insertion" or "deletion".
    """

    curves: np.ndarray
    fractions: np.ndarray
    auc: np.ndarray
    mean_auc: float
    targets: np.ndarray
    mode: str


def pixel_steps(maps: Any, pixels_per_step: int) -> np.ndarray:
    """Per pixel, the (1-based) step at which it changes; (N, H, W).

    Args:
        maps: (N, H, W) or (N, H, W, C); ranked by the channel sum, largest first.
        pixels_per_step: Pixels changed per step.
    """
    m = reduce_maps(maps)
    n, h, w = m.shape
    order = np.argsort(-m.reshape(n, -1), axis=1, kind="stable")
    steps = np.empty((n, h * w), dtype=np.int64)
    steps[np.arange(n)[:, None], order] = np.arange(h * w)[None] // pixels_per_step + 1
    return steps.reshape(n, h, w)


def trapezoid_auc(curves: np.ndarray) -> np.ndarray:
    """Area under curves sampled at k/n, k = 0..n, over [0, 1] (trapezoidal rule)."""
    n_steps = curves.shape[1] - 1
    if n_steps < 1:
        raise ValueError("a curve needs at least two points")
    return (curves.sum(axis=1) - 0.5 * (curves[:, 0] + curves[:, -1])) / n_steps


def insertion_deletion(
    model_fn: Any,
    images: Any,
    maps: Any,
    mode: Literal["insertion", "deletion"] = "deletion",
    targets: Any = None,
    pixels_per_step: int | None = None,
    substrate: PerturbationArg | None = None,
    blur_sigma: float = 5.0,
    batch_size: int = 64,
    logits: bool = False,
    seed: int | None = 0,
    progress: ProgressArg = False,
) -> InsertionDeletionResult:
    """Insertion or deletion curve of each image and its AUC (see the module doc).

    Args:
        model_fn: Keras model or callable images → scores (N, K) or (N,).
        images: (N, H, W, C).
        maps: (N, H, W) or (N, H, W, C) maps of the images.
        mode: "deletion" or "insertion".
        targets: None/"max_activation" (predicted class on the image), an int or N ints.
        pixels_per_step: Pixels changed per step (default W).
        substrate: What deleted pixels become / insertion starts from: "zero", "mean",
            "blur", "noise" or a callable ``(images, rng) -> images`` (default "zero" for
            deletion, "blur" for insertion).
        blur_sigma: σ in pixels of "blur".
        batch_size: Images per model call.
        logits: Strip a final softmax/sigmoid of a Keras model.
        seed: Seed of "noise" / callable substrates.
        progress: False, True (tqdm bar if installed) or a callable ``(done, total)``.

    Returns:
        :class:`InsertionDeletionResult`.
    """
    if mode not in ("insertion", "deletion"):
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    x = as_images(images)
    n, h, w, _ = x.shape
    if reduce_maps(maps).shape != (n, h, w):
        raise ValueError(f"maps of shape {np.shape(maps)} do not fit images of shape {x.shape}")
    per_step = w if pixels_per_step is None else int(pixels_per_step)
    if per_step < 1:
        raise ValueError(f"pixels_per_step must be positive, got {pixels_per_step}")
    n_steps = -(-(h * w) // per_step)
    if substrate is None:
        substrate = "zero" if mode == "deletion" else "blur"
    other = replacement_images(x, substrate, np.random.default_rng(seed), blur_sigma)
    start, end = (x, other) if mode == "deletion" else (other, x)
    changed_at = pixel_steps(maps, per_step)[..., None]

    f = score_function(model_fn, logits=logits)
    clean = batched(f, x, batch_size)
    tgt = (
        np.full(n, -1)
        if clean.ndim == 1
        else class_ids("max_activation" if targets is None else targets, clean.reshape(n, -1))
    )

    def pick(out: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return out if out.ndim == 1 else out.reshape(len(out), -1)[np.arange(len(out)), tgt[idx]]

    curves = np.empty((n, n_steps + 1), dtype=np.float64)
    curves[:, 0] = pick(batched(f, start, batch_size), np.arange(n))
    pieces = list(chunks(n_steps * n, batch_size))
    for s in progress_iter(pieces, len(pieces), progress, mode):
        r = np.arange(s.start, s.stop)
        k, i = r // n + 1, r % n
        xk = np.where(changed_at[i] <= k[:, None, None, None], end[i], start[i])
        curves[i, k] = pick(f(xk), i)
    auc = trapezoid_auc(curves)
    return InsertionDeletionResult(
        curves=curves,
        fractions=np.arange(n_steps + 1) / n_steps,
        auc=auc,
        mean_auc=float(auc.mean()),
        targets=tgt,
        mode=mode,
    )
