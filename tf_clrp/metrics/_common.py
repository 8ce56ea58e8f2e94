"""Small shared helpers of the metrics package: map reduction, regions, targets, batching."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

Box = Sequence[float]
"""A box ``(y0, x0, y1, x1)``: 0-based, half-open (``mask[y0:y1, x0:x1]``), like numpy slicing."""

Region = np.ndarray | Box | Sequence[Box]
"""One sample's region: a boolean mask (H, W), one box, or a sequence of boxes (their union)."""


def reduce_maps(maps: Any) -> np.ndarray:
    """Bring a batch of maps to (N, H, W) float64 by summing the channel axis.

    Args:
        maps: array (N, H, W) or (N, H, W, C).

    Returns:
        float64 array (N, H, W).
    """
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim == 4:
        return arr.sum(axis=-1)
    if arr.ndim == 3:
        return arr
    raise ValueError(
        f"maps must be a batch of shape (N, H, W) or (N, H, W, C), got shape {arr.shape}; "
        "add a leading batch axis for a single map"
    )


def box_to_mask(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a half-open box ``(y0, x0, y1, x1)`` into a boolean mask, clipped to ``shape``.

    Args:
        box: ``(y0, x0, y1, x1)``, 0-based, ``y1``/``x1`` exclusive (numpy slicing convention).
        shape: ``(H, W)`` of the mask.

    Returns:
        Boolean mask of shape ``shape``.
    """
    if len(box) != 4:
        raise ValueError(f"a box is (y0, x0, y1, x1), got {box!r}")
    h, w = shape
    y0, x0, y1, x1 = (int(round(float(v))) for v in box)
    mask = np.zeros((h, w), dtype=bool)
    mask[max(y0, 0) : max(min(y1, h), 0), max(x0, 0) : max(min(x1, w), 0)] = True
    return mask


def region_to_mask(region: Region, shape: tuple[int, int]) -> np.ndarray:
    """Turn one sample's region (mask, box or list of boxes) into a boolean (H, W) mask.

    Args:
        region: boolean mask (H, W), a box ``(y0, x0, y1, x1)`` or a sequence of boxes.
        shape: ``(H, W)`` of the map the region refers to.

    Returns:
        Boolean mask of shape ``shape``.
    """
    arr = np.asarray(region)
    if arr.dtype == bool:
        if arr.shape != tuple(shape):
            raise ValueError(f"mask shape {arr.shape} does not match the map shape {tuple(shape)}")
        return arr
    if arr.ndim == 1 and arr.shape[0] == 4:
        return box_to_mask(arr, shape)
    if arr.ndim == 2 and arr.shape[1] == 4:
        mask = np.zeros(shape, dtype=bool)
        for box in arr:
            mask |= box_to_mask(box, shape)
        return mask
    if arr.ndim == 2 and arr.shape == tuple(shape):
        return arr != 0
    raise ValueError(
        "a region is a boolean mask (H, W), a box (y0, x0, y1, x1) or a list of boxes; "
        f"got an array of shape {arr.shape} and dtype {arr.dtype}"
    )


def regions_to_masks(regions: Any, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Turn a batch of regions into boolean masks (N, H, W).

    Args:
        regions: boolean array (N, H, W), box array (N, 4), or a length-N sequence of
            per-sample regions (see :func:`region_to_mask`).
        n: expected number of samples.
        shape: ``(H, W)``.

    Returns:
        Boolean array (N, H, W).
    """
    if isinstance(regions, np.ndarray) and regions.dtype == bool and regions.ndim == 3:
        out = regions
    elif isinstance(regions, np.ndarray) and regions.ndim == 2 and regions.shape[1] == 4:
        out = np.stack([box_to_mask(b, shape) for b in regions]) if len(regions) else None
    else:
        out = np.stack([region_to_mask(r, shape) for r in regions]) if len(regions) else None
    if out is None or out.shape != (n, *shape):
        got = None if out is None else out.shape
        raise ValueError(f"expected {n} regions of shape {shape}, got {got}")
    return out


def as_images(x: Any) -> np.ndarray:
    """Convert images to float32 (N, H, W, C), validating the rank."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C), got {arr.shape}")
    return arr


def target_weights(
    neuron_selection: Any, clean_scores: np.ndarray, allow_float: bool = True
) -> np.ndarray:
    """Turn a neuron selection into a weight matrix over the outputs.

    Args:
        neuron_selection: ``"max_activation"`` (arg-max of ``clean_scores``), an int (same
            class for all samples), a sequence of ints (one per sample), or a float array
            of the output's shape (weights of the outputs, the contract's "initial relevance").
        clean_scores: model outputs on the clean inputs, shape (N, K).
        allow_float: whether float weight arrays are accepted.

    Returns:
        float64 array (N, K); the explained score of sample n is ``sum_k W[n, k] * f_k(x_n)``.
    """
    n, k = clean_scores.shape
    if isinstance(neuron_selection, str):
        if neuron_selection != "max_activation":
            raise ValueError(f"unknown neuron_selection {neuron_selection!r}")
        idx = np.argmax(clean_scores, axis=1)
    else:
        arr = np.asarray(neuron_selection)
        if arr.dtype.kind == "f" and arr.shape == (n, k):
            if not allow_float:
                raise ValueError("a float neuron_selection is not supported here; pass class ids")
            return arr.astype(np.float64)
        integral = arr.dtype.kind in "iu" or (
            arr.dtype.kind == "f" and arr.ndim <= 1 and np.all(arr == np.round(arr))
        )
        if not integral or arr.ndim > 1:
            raise ValueError(
                "neuron_selection must be 'max_activation', a class id, one class id per "
                f"sample or a float array of shape {(n, k)}; got {arr.dtype} {arr.shape}"
            )
        if arr.ndim == 0:
            idx = np.full(n, int(arr), dtype=np.int64)
        elif arr.size == n:
            idx = arr.astype(np.int64)
        else:
            raise ValueError(f"neuron_selection has {arr.size} entries for {n} samples")
    if np.any(idx < 0) or np.any(idx >= k):
        raise ValueError(f"class ids must lie in [0, {k}), got {np.unique(idx)}")
    weights = np.zeros((n, k), dtype=np.float64)
    weights[np.arange(n), idx] = 1.0
    return weights


def class_ids(neuron_selection: Any, clean_scores: np.ndarray) -> np.ndarray:
    """Resolve a neuron selection that must name one class per sample into ids (N,)."""
    w = target_weights(neuron_selection, clean_scores, allow_float=False)
    return np.argmax(w, axis=1)


def chunks(n: int, size: int | None) -> Iterator[slice]:
    """Yield slices covering ``range(n)`` in pieces of at most ``size`` (all at once if None)."""
    if size is None or size <= 0:
        size = max(n, 1)
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays (average ranks for ties; NaN if constant)."""
    return pearson(average_ranks(a), average_ranks(b))


def average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of a 1-D array, ties receiving the mean of their ranks."""
    a = np.asarray(a, dtype=np.float64).ravel()
    order = np.argsort(a, kind="stable")
    sorted_a = a[order]
    ranks = np.empty(a.size, dtype=np.float64)
    start = 0
    while start < a.size:
        stop = start + 1
        while stop < a.size and sorted_a[stop] == sorted_a[start]:
            stop += 1
        ranks[order[start:stop]] = 0.5 * (start + stop - 1)
        start = stop
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays; NaN if either is constant."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    if denom == 0.0 or not np.isfinite(denom):
        return float("nan")
    return float(np.clip(np.dot(a, b) / denom, -1.0, 1.0))
