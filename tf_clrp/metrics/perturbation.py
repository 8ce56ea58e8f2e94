"""Region perturbation / pixel flipping (Samek et al. 2017) and AOPC.

The channel-summed map is cut into non-overlapping ``patch_size × patch_size`` patches (edge
patches may be smaller) and each patch is scored by its summed relevance. Step k replaces the
k-th patch of the chosen order ("morf": most relevant first, "lerf": least relevant first,
"random": a seeded random permutation per image; ties keep row-major patch order) by the same
pixels of a *replacement image* r, cumulatively: x_k = x_0 with patches 1..k taken from r.

Replacement images (computed once per image, so a patch's values never change across steps):
"zero" r = 0; "mean" r = per-image, per-channel mean of x_0; "blur" r = x_0 blurred by a
Gaussian (σ = ``blur_sigma``, default ``patch_size / 2``); "noise" r ~ U(lo, hi) i.i.d. per
value, (lo, hi) = ``noise_range`` or the batch's min and max; a callable
``perturbation(images, rng) -> replacement images`` of the same shape.

AOPC_n = 1/(L+1) · Σ_{k=0..L} [f(x_0) − f(x_k)], L = number of steps (the k = 0 term is 0).
"""

from __future__ import annotations

from collections.abc import Callable
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

PerturbationArg = (
    Literal["mean", "zero", "blur", "noise"]
    | Callable[[np.ndarray, np.random.Generator], np.ndarray]
)


@dataclass
class PerturbationResult:
    """Outcome of :func:`region_perturbation`.

    Attributes:
        curves: (N, steps + 1) target score after k = 0..steps removed patches.
        aopc: (N,) AOPC per image.
        mean_aopc: mean of ``aopc``.
        patch_order: (N, steps) flat patch index (row-major on the patch grid) removed at
            each step.
        targets: (N,) explained class per image (-1 if the model returns one score).
        order: the ordering used.
    """

    curves: np.ndarray
    aopc: np.ndarray
    mean_aopc: float
    patch_order: np.ndarray
    targets: np.ndarray
    order: str


def patch_scores(maps: Any, patch_size: int) -> np.ndarray:
    """Summed channel-summed relevance per patch.

    Args:
        maps: (N, H, W) or (N, H, W, C).
        patch_size: side of the square patches.

    Returns:
        (N, ceil(H/p) * ceil(W/p)) patch sums in row-major patch order.
    """
    m = reduce_maps(maps)
    n, h, w = m.shape
    gh, gw = -(-h // patch_size), -(-w // patch_size)
    padded = np.zeros((n, gh * patch_size, gw * patch_size))
    padded[:, :h, :w] = m
    return padded.reshape(n, gh, patch_size, gw, patch_size).sum(axis=(2, 4)).reshape(n, -1)


def rank_patches(
    scores: np.ndarray, order: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Order in which patches are removed.

    Args:
        scores: (N, P) patch relevances.
        order: "morf" (descending), "lerf" (ascending) or "random".
        rng: generator for "random".

    Returns:
        int array (N, P) of patch indices, first removed first.
    """
    if order == "morf":
        return np.argsort(-scores, axis=1, kind="stable")
    if order == "lerf":
        return np.argsort(scores, axis=1, kind="stable")
    if order == "random":
        rng = rng if rng is not None else np.random.default_rng()
        return np.stack([rng.permutation(scores.shape[1]) for _ in range(len(scores))])
    raise ValueError(f"order must be 'morf', 'lerf' or 'random', got {order!r}")


def replacement_images(
    images: np.ndarray,
    perturbation: PerturbationArg,
    rng: np.random.Generator,
    blur_sigma: float = 4.0,
    noise_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """The values a removed patch takes, for every pixel of every image.

    Args:
        images: (N, H, W, C) float32.
        perturbation: "zero", "mean", "blur", "noise" or a callable ``(images, rng) -> array``.
        rng: generator for "noise" and callables.
        blur_sigma: Gaussian σ in pixels for "blur".
        noise_range: (lo, hi) for "noise"; default the batch's min and max.

    Returns:
        float32 array of the images' shape.
    """
    if callable(perturbation):
        out = np.asarray(perturbation(images, rng), dtype=np.float32)
    elif perturbation == "zero":
        out = np.zeros_like(images)
    elif perturbation == "mean":
        out = np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape).copy()
    elif perturbation == "blur":
        import cv2

        out = np.empty_like(images)
        for i in range(len(images)):
            for c in range(images.shape[-1]):
                out[i, :, :, c] = cv2.GaussianBlur(
                    np.ascontiguousarray(images[i, :, :, c]),
                    (0, 0),
                    blur_sigma,
                    borderType=cv2.BORDER_REFLECT_101,
                )
    elif perturbation == "noise":
        lo, hi = noise_range if noise_range is not None else (images.min(), images.max())
        out = rng.uniform(lo, hi, size=images.shape).astype(np.float32)
    else:
        raise ValueError(f"unknown perturbation {perturbation!r}")
    if out.shape != images.shape:
        raise ValueError(f"replacement has shape {out.shape}, expected {images.shape}")
    return out.astype(np.float32, copy=False)


def _removal_step(order_idx: np.ndarray, shape: tuple[int, int], patch_size: int) -> np.ndarray:
    """Per pixel, the step (1-based) at which its patch is removed; (N, H, W)."""
    n, p = order_idx.shape
    h, w = shape
    gh, gw = -(-h // patch_size), -(-w // patch_size)
    step_of_patch = np.empty((n, p), dtype=np.int64)
    step_of_patch[np.arange(n)[:, None], order_idx] = np.arange(1, p + 1)[None]
    grid = step_of_patch.reshape(n, gh, gw)
    full = np.repeat(np.repeat(grid, patch_size, axis=1), patch_size, axis=2)
    return full[:, :h, :w]


def region_perturbation(
    model_fn: Any,
    images: Any,
    maps: Any,
    targets: Any = None,
    order: Literal["morf", "lerf", "random"] = "morf",
    patch_size: int = 8,
    steps: int | None = None,
    perturbation: PerturbationArg = "mean",
    batch_size: int = 64,
    seed: int | None = 0,
    blur_sigma: float | None = None,
    noise_range: tuple[float, float] | None = None,
    logits: bool = True,
    progress: ProgressArg = False,
) -> PerturbationResult:
    """Perturbation curves of the target score and their AOPC.

    Args:
        model_fn: Keras model (final softmax/sigmoid stripped when ``logits``) or any callable
            images → scores (N, K) or (N,).
        images: (N, H, W, C).
        maps: relevance maps (N, H, W) or (N, H, W, C).
        targets: None/"max_activation" (predicted class on x_0), an int or N ints.
        order: "morf", "lerf" or "random".
        patch_size: side of the square patches.
        steps: number of patches removed (default ``min(100, number of patches)``).
        perturbation: "mean", "zero", "blur", "noise" or a callable (see module doc).
        batch_size: rows per model call; rows are (step, image) pairs, step-major, so one
            step's images share a call.
        seed: seed of the "random" order and "noise"/callable replacements.
        blur_sigma: σ for "blur" (default ``patch_size / 2``).
        noise_range: (lo, hi) for "noise" (default batch min/max).
        logits: strip a final softmax/sigmoid when ``model_fn`` is a Keras model.
        progress: False, True (tqdm bar if installed) or a callable ``(done, total)``.

    Returns:
        :class:`PerturbationResult`.
    """
    x0 = as_images(images)
    n, h, w, _ = x0.shape
    scores_p = patch_scores(maps, patch_size)
    if scores_p.shape[0] != n or reduce_maps(maps).shape[1:] != (h, w):
        raise ValueError("maps must have the images' batch size and spatial shape")
    n_patches = scores_p.shape[1]
    steps = min(100, n_patches) if steps is None else int(steps)
    if not 0 <= steps <= n_patches:
        raise ValueError(f"steps must lie in [0, {n_patches}], got {steps}")
    rng = np.random.default_rng(seed)
    patch_order = rank_patches(scores_p, order, rng)
    sigma = patch_size / 2 if blur_sigma is None else blur_sigma
    replacement = replacement_images(x0, perturbation, rng, sigma, noise_range)
    removal = _removal_step(patch_order, (h, w), patch_size)[..., None]

    f = score_function(model_fn, logits=logits)
    clean = batched(f, x0, batch_size)
    if clean.ndim == 1:
        tgt = np.full(n, -1)
    else:
        tgt = class_ids("max_activation" if targets is None else targets, clean.reshape(n, -1))

    def pick(out: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return out if out.ndim == 1 else out.reshape(len(out), -1)[np.arange(len(out)), tgt[idx]]

    curves = np.empty((n, steps + 1), dtype=np.float64)
    curves[:, 0] = pick(clean, np.arange(n))
    rows = steps * n
    pieces = list(chunks(rows, batch_size)) if rows else []
    for s in progress_iter(pieces, len(pieces), progress, f"perturbation ({order})"):
        r = np.arange(s.start, s.stop)
        k, i = r // n + 1, r % n
        removed = removal[i] <= k[:, None, None, None]
        xk = np.where(removed, replacement[i], x0[i])
        curves[i, k] = pick(f(xk), i)
    aopc = (curves[:, :1] - curves).mean(axis=1)
    return PerturbationResult(
        curves=curves,
        aopc=aopc,
        mean_aopc=float(aopc.mean()),
        patch_order=patch_order[:, :steps],
        targets=tgt,
        order=order,
    )
