"""Pointing Game (Zhang et al. 2016, TorchRay convention) with centre and random baselines.

For every (map, class, ground truth) triple the point of maximal channel-summed relevance is
taken (ties: the first in row-major order, ``np.argmax``); it is a hit if some ground-truth pixel
lies within Euclidean distance ``tolerance`` of it (distance ≤ tolerance, inclusive). With
``scale_tolerance=True`` the tolerance is ``tolerance * max(H, W) / 224`` (15 px at 224², as
in TorchRay). Accuracy per class = hits / (hits + misses); the reported mean is the unweighted
mean over the classes seen.

Constant maps (all values equal, e.g. all zero) carry no location: by default they count as
misses (``constant_maps="miss"``). TorchRay takes the arg-max anyway (the top-left pixel);
``constant_maps="argmax"`` reproduces that and ``"skip"`` leaves such samples out. Maps with
NaN/inf raise ``ValueError``.

Baselines: the centre point ``(H // 2, W // 2)`` (:func:`center_baseline`) and a uniformly
random pixel, whose expected accuracy is computed exactly (:func:`random_hit_rate`,
:func:`random_baseline`): the share of pixels within the tolerance of the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tf_clrp.metrics._common import reduce_maps, region_to_mask

REFERENCE_SIZE = 224


def max_points(maps: Any) -> np.ndarray:
    """Arg-max point of each channel-summed map.

    Args:
        maps: (N, H, W) or (N, H, W, C).

    Returns:
        int array (N, 2) of ``(row, col)``; the first maximum in row-major order.
    """
    m = reduce_maps(maps)
    flat = np.argmax(m.reshape(len(m), -1), axis=1)
    return np.stack(np.unravel_index(flat, m.shape[1:]), axis=1)


def center_point(shape: tuple[int, int]) -> np.ndarray:
    """Centre point ``(H // 2, W // 2)`` used by the centre baseline."""
    return np.array([shape[0] // 2, shape[1] // 2])


def effective_tolerance(tolerance: float, shape: tuple[int, int], scale_tolerance: bool) -> float:
    """Tolerance in pixels: ``tolerance * max(H, W) / 224`` if ``scale_tolerance`` else as is."""
    return tolerance * max(shape) / REFERENCE_SIZE if scale_tolerance else float(tolerance)


def is_hit(point: Sequence[int], mask: np.ndarray, tolerance: float) -> bool:
    """True if a pixel of ``mask`` lies within Euclidean distance ``tolerance`` of ``point``."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return False
    d2 = (ys - point[0]) ** 2 + (xs - point[1]) ** 2
    return bool(d2.min() <= tolerance**2 + 1e-9)


def _regions(gts: Any, n: int) -> list:
    """Split a batch of ground truths (array or sequence) into a list of N per-map regions."""
    regions = list(gts)
    if len(regions) != n:
        raise ValueError(f"got {len(regions)} ground truths for {n} maps")
    return regions


@dataclass
class PointingGameResult:
    """Outcome of a Pointing Game.

    Attributes:
        per_class: accuracy hits / (hits + misses) per class id.
        mean: unweighted mean of ``per_class`` (NaN if empty).
        n: number of evaluated (map, class) pairs.
        hits: hits per class id.
        misses: misses per class id.
    """

    per_class: dict[int, float]
    mean: float
    n: int
    hits: dict[int, int] = field(default_factory=dict)
    misses: dict[int, int] = field(default_factory=dict)


class PointingGame:
    """Accumulator for the Pointing Game over many batches.

    Args:
        tolerance: hit radius in pixels at 224 px (or absolute if not scaled).
        scale_tolerance: scale the radius by ``max(H, W) / 224``.
        constant_maps: ``"miss"`` (default), ``"argmax"`` (TorchRay) or ``"skip"``.
        baseline: None (use the maps) or ``"center"`` (ignore the map values and point at
            the image centre; the maps then only give the image size).
    """

    def __init__(
        self,
        tolerance: float = 15.0,
        scale_tolerance: bool = True,
        constant_maps: Literal["miss", "argmax", "skip"] = "miss",
        baseline: Literal["center"] | None = None,
    ) -> None:
        if constant_maps not in ("miss", "argmax", "skip"):
            raise ValueError(
                f"constant_maps must be 'miss', 'argmax' or 'skip', got {constant_maps!r}"
            )
        if baseline not in (None, "center"):
            raise ValueError(f"baseline must be None or 'center', got {baseline!r}")
        self.tolerance = float(tolerance)
        self.scale_tolerance = scale_tolerance
        self.constant_maps = constant_maps
        self.baseline = baseline
        self.hits: dict[int, int] = {}
        self.misses: dict[int, int] = {}

    def update(self, maps: Any, gts: Any, class_ids: Any) -> np.ndarray:
        """Score one batch.

        Args:
            maps: (N, H, W) or (N, H, W, C); map i explains class ``class_ids[i]``.
            gts: per map the ground truth of that class: a boolean mask (H, W), a box
                ``(y0, x0, y1, x1)`` (half-open) or a list of boxes (any instance counts);
                or a boolean array (N, H, W) or a box array (N, 4).
            class_ids: int or sequence of N ints.

        Returns:
            float array (N,): 1 hit, 0 miss, NaN skipped.
        """
        m = reduce_maps(maps)
        n, shape = len(m), m.shape[1:]
        if not np.all(np.isfinite(m)):
            raise ValueError("maps contain NaN or inf")
        ids = np.broadcast_to(np.asarray(class_ids, dtype=np.int64), (n,))
        regions = _regions(gts, n)
        tol = effective_tolerance(self.tolerance, shape, self.scale_tolerance)
        if self.baseline == "center":
            points = np.repeat(center_point(shape)[None], n, axis=0)
            constant = np.zeros(n, dtype=bool)
        else:
            points = max_points(m)
            flat = m.reshape(n, -1)
            constant = flat.max(axis=1) == flat.min(axis=1)
        outcome = np.empty(n, dtype=np.float64)
        for i in range(n):
            mask = region_to_mask(regions[i], shape)
            if not mask.any():
                raise ValueError(f"ground truth {i} is empty (no pixel inside the image)")
            if constant[i] and self.constant_maps == "skip":
                outcome[i] = np.nan
                continue
            hit = is_hit(points[i], mask, tol)
            if constant[i] and self.constant_maps == "miss":
                hit = False
            outcome[i] = float(hit)
            c = int(ids[i])
            if hit:
                self.hits[c] = self.hits.get(c, 0) + 1
            else:
                self.misses[c] = self.misses.get(c, 0) + 1
        return outcome

    def result(self) -> PointingGameResult:
        """Per-class accuracy, their mean and the number of evaluated pairs."""
        classes = sorted(set(self.hits) | set(self.misses))
        per_class = {
            c: self.hits.get(c, 0) / (self.hits.get(c, 0) + self.misses.get(c, 0)) for c in classes
        }
        mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
        n = sum(self.hits.values()) + sum(self.misses.values())
        return PointingGameResult(per_class, mean, n, dict(self.hits), dict(self.misses))

    def reset(self) -> None:
        """Forget all accumulated hits and misses."""
        self.hits.clear()
        self.misses.clear()


def pointing_game(maps: Any, gts: Any, class_ids: Any, **kwargs: Any) -> PointingGameResult:
    """One-shot Pointing Game; keyword arguments go to :class:`PointingGame`.

    Args:
        maps: (N, H, W) or (N, H, W, C).
        gts: ground truths, see :meth:`PointingGame.update`.
        class_ids: int or sequence of N ints.
        **kwargs: tolerance, scale_tolerance, constant_maps, baseline.

    Returns:
        :class:`PointingGameResult`.
    """
    game = PointingGame(**kwargs)
    game.update(maps, gts, class_ids)
    return game.result()


def center_baseline(
    gts: Any, class_ids: Any, shape: tuple[int, int], **kwargs: Any
) -> PointingGameResult:
    """Pointing Game of the centre baseline: the point is always ``(H // 2, W // 2)``.

    Args:
        gts: ground truths, see :meth:`PointingGame.update`.
        class_ids: int or sequence of ints (one per ground truth).
        shape: ``(H, W)`` of the images.
        **kwargs: tolerance, scale_tolerance.

    Returns:
        :class:`PointingGameResult`.
    """
    n = len(gts)
    game = PointingGame(baseline="center", **kwargs)
    game.update(np.zeros((n, *shape)), gts, class_ids)
    return game.result()


def random_hit_rate(
    gt: Any, shape: tuple[int, int], tolerance: float = 15.0, scale_tolerance: bool = True
) -> float:
    """Probability that a uniformly random pixel is a hit for one ground truth (exact).

    A pixel ``p`` is a hit iff some ground-truth pixel ``q`` has ``‖p − q‖₂ ≤ τ`` (the rule of
    :func:`is_hit`). For each row offset ``dy`` with ``dy² ≤ τ²`` the ground truth is shifted by
    ``dy`` rows and dilated along the row by ``⌊√(τ² − dy²)⌋`` columns; the hit set is the union.

    Args:
        gt: a boolean mask (H, W), a box ``(y0, x0, y1, x1)`` or a list of boxes.
        shape: ``(H, W)`` of the image.
        tolerance: hit radius (at 224 px if ``scale_tolerance``).
        scale_tolerance: scale the radius by ``max(H, W) / 224``.

    Returns:
        The share of the ``H * W`` pixels that are hits.
    """
    mask = region_to_mask(gt, shape)
    if not mask.any():
        raise ValueError("the ground truth is empty (no pixel inside the image)")
    tol2 = effective_tolerance(tolerance, shape, scale_tolerance) ** 2 + 1e-9
    h, w = mask.shape
    reach = int(np.floor(np.sqrt(tol2)))
    # counts[y, x] = ground-truth pixels in row y, columns < x (prefix sums along the row)
    counts = np.zeros((h, w + 1), dtype=np.int64)
    counts[:, 1:] = np.cumsum(mask, axis=1)
    cols = np.arange(w)
    hits = np.zeros(shape, dtype=bool)
    for dy in range(-min(reach, h - 1), min(reach, h - 1) + 1):
        half = int(np.floor(np.sqrt(max(tol2 - dy * dy, 0.0))))
        lo = np.clip(cols - half, 0, w)
        hi = np.clip(cols + half + 1, 0, w)
        rows = np.arange(max(0, -dy), min(h, h - dy))  # p_y whose q_y = p_y + dy is inside
        near = counts[rows + dy]
        hits[rows] |= (near[:, hi] - near[:, lo]) > 0
    return float(hits.mean())


def random_hit_rates(
    gts: Any, shape: tuple[int, int], tolerance: float = 15.0, scale_tolerance: bool = True
) -> np.ndarray:
    """:func:`random_hit_rate` of each ground truth: the random pixel's expected hit per pair.

    The random baseline's counterpart of ``PointingGame(...).update``'s per-pair outcomes
    (for intervals over pairs); :func:`random_baseline` aggregates them per class.

    Args:
        gts: sequence of ground truths (masks, boxes or lists of boxes), one per (image, class).
        shape: ``(H, W)`` of the images.
        tolerance: hit radius (at 224 px if ``scale_tolerance``).
        scale_tolerance: scale the radius by ``max(H, W) / 224``.

    Returns:
        float64 array (number of ground truths,).
    """
    return np.array(
        [random_hit_rate(gt, shape, tolerance, scale_tolerance) for gt in gts], dtype=np.float64
    )


def random_baseline(
    gts: Any,
    class_ids: Any,
    shape: tuple[int, int],
    tolerance: float = 15.0,
    scale_tolerance: bool = True,
) -> PointingGameResult:
    """Expected Pointing Game accuracy of a uniformly random pixel (exact, no sampling).

    Per class the mean of :func:`random_hit_rate` over its ground truths; ``mean`` is the
    unweighted mean over classes, as for :class:`PointingGame`. ``hits`` and ``misses`` stay
    empty (the rates are expectations, not counts).

    Args:
        gts: sequence of ground truths (masks, boxes or lists of boxes), one per (image, class).
        class_ids: int or sequence of ints (one per ground truth).
        shape: ``(H, W)`` of the images.
        tolerance: hit radius (at 224 px if ``scale_tolerance``).
        scale_tolerance: scale the radius by ``max(H, W) / 224``.

    Returns:
        :class:`PointingGameResult` with expected accuracies.
    """
    regions = list(gts)
    ids = np.broadcast_to(np.asarray(class_ids, dtype=np.int64), (len(regions),))
    rates: dict[int, list[float]] = {}
    for rate, c in zip(random_hit_rates(regions, shape, tolerance, scale_tolerance), ids):
        rates.setdefault(int(c), []).append(float(rate))
    per_class = {c: float(np.mean(v)) for c, v in sorted(rates.items())}
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return PointingGameResult(per_class, mean, len(regions))
