"""Class-discriminativeness of explanations for inputs showing several classes.

All quantities are per sample and work on channel-summed maps R (N, H, W).

* correlation(R_a, R_b) = Pearson correlation of the flattened maps (NaN if one is constant).
* mass(R, M) = Σ_{p ∈ M} max(R_p, 0) / Σ_p max(R_p, 0): share of the positive relevance inside
  region M (NaN if the map has no positive relevance).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from tf_clrp.metrics._common import pearson, reduce_maps, regions_to_masks


def map_correlation(map_a: Any, map_b: Any) -> np.ndarray:
    """Pearson correlation between two batches of maps, per sample.

    Args:
        map_a: (N, H, W) or (N, H, W, C).
        map_b: same batch and spatial shape as ``map_a``.

    Returns:
        float64 array (N,) in [-1, 1]; NaN where a map is constant.
    """
    a, b = reduce_maps(map_a), reduce_maps(map_b)
    if a.shape != b.shape:
        raise ValueError(f"map shapes differ: {a.shape} vs {b.shape}")
    return np.array([pearson(a[i], b[i]) for i in range(len(a))])


def relevance_mass_in_region(maps: Any, regions: Any) -> np.ndarray:
    """Share of each map's positive relevance that falls inside its region.

    Args:
        maps: (N, H, W) or (N, H, W, C).
        regions: boolean masks (N, H, W), boxes (N, 4) ``(y0, x0, y1, x1)`` half-open, or a
            sequence of per-sample masks / boxes / lists of boxes.

    Returns:
        float64 array (N,) in [0, 1]; NaN where a map has no positive relevance.
    """
    m = reduce_maps(maps)
    masks = regions_to_masks(regions, len(m), m.shape[1:])
    pos = np.maximum(m, 0.0)
    total = pos.reshape(len(m), -1).sum(axis=1)
    inside = (pos * masks).reshape(len(m), -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


@dataclass
class DiscriminativenessReport:
    """Outcome of :func:`discriminativeness_report` (arrays are per sample, shape (N,)).

    Attributes:
        mass: ``mass[(c, d)]`` = share of class c's map inside class d's region.
        own_mass: ``own_mass[c]`` = ``mass[(c, c)]``.
        other_mass: ``other_mass[c]`` = share of class c's map inside the union of the
            other classes' regions.
        correlation: ``correlation[(c, d)]`` for every pair c < d (in the given order).
    """

    mass: dict[tuple[Any, Any], np.ndarray]
    own_mass: dict[Any, np.ndarray]
    other_mass: dict[Any, np.ndarray]
    correlation: dict[tuple[Any, Any], np.ndarray]

    def summary(self) -> dict[str, float]:
        """Means over samples (NaN-aware) of own mass, other mass and correlation."""

        def avg(d: Mapping) -> float:
            vals = np.concatenate([np.ravel(v) for v in d.values()]) if d else np.array([])
            return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")

        return {
            "own_mass": avg(self.own_mass),
            "other_mass": avg(self.other_mass),
            "correlation": avg(self.correlation),
        }


def discriminativeness_report(
    maps_by_class: Mapping[Any, Any], regions_by_class: Mapping[Any, Any]
) -> DiscriminativenessReport:
    """Compare the maps of two or more classes present in the same inputs.

    Args:
        maps_by_class: class → maps (N, H, W[, C]) explaining that class, same inputs.
        regions_by_class: class → that class's regions for the same N inputs (masks, boxes
            or lists of boxes; see :func:`relevance_mass_in_region`).

    Returns:
        :class:`DiscriminativenessReport`.
    """
    classes = list(maps_by_class)
    if len(classes) < 2:
        raise ValueError("need maps of at least two classes")
    if set(classes) != set(regions_by_class):
        raise ValueError("maps_by_class and regions_by_class must have the same classes")
    reduced = {c: reduce_maps(maps_by_class[c]) for c in classes}
    n, shape = reduced[classes[0]].shape[0], reduced[classes[0]].shape[1:]
    masks = {c: regions_to_masks(regions_by_class[c], n, shape) for c in classes}
    mass = {
        (c, d): relevance_mass_in_region(reduced[c], masks[d]) for c in classes for d in classes
    }
    other_mass = {}
    for c in classes:
        union = np.zeros((n, *shape), dtype=bool)
        for d in classes:
            if d != c:
                union |= masks[d]
        other_mass[c] = relevance_mass_in_region(reduced[c], union)
    correlation = {
        (c, d): map_correlation(reduced[c], reduced[d]) for c, d in combinations(classes, 2)
    }
    return DiscriminativenessReport(
        mass=mass,
        own_mass={c: mass[(c, c)] for c in classes},
        other_mass=other_mass,
        correlation=correlation,
    )
