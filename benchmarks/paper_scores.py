"""Scores of the paper-claims benchmarks: bootstrap intervals, Pointing Game,
class-discriminativeness and AOPC tables (``paper_common`` re-exports them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tf_clrp.metrics import (
    PointingGame,
    discriminativeness_report,
    random_baseline,
    random_hit_rates,
    region_perturbation,
)

if TYPE_CHECKING:  # pragma: no cover
    from paper_common import Rows


def fmt(v: float, digits: int = 3) -> str:
    """A table cell: NaN as an en dash."""
    return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def class_mean(values: np.ndarray, classes: np.ndarray) -> float:
    """Unweighted mean over classes of the per-class mean (the Pointing Game's average)."""
    per_class = [np.nanmean(values[classes == c]) for c in np.unique(classes)]
    return _nanmean(per_class)


def bootstrap_interval(
    values: np.ndarray,
    scenes: np.ndarray,
    classes: np.ndarray | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean, resampling scenes (the unit of independence).

    All rows of a drawn scene enter together. The statistic is the mean of ``values`` over
    rows, or with ``classes`` the unweighted mean over classes of the per-class mean.

    Args:
        values: one value per row (NaN rows are left out).
        scenes: scene id per row.
        classes: class per row, or None.
        resamples: bootstrap resamples.
        seed: seed of the resampling.
        level: coverage of the interval.

    Returns:
        (low, high); NaN if there are fewer than 2 scenes.
    """
    values = np.asarray(values, dtype=np.float64)
    ids, scene_of_row = np.unique(np.asarray(scenes), return_inverse=True)
    if len(ids) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=resamples)
    valid = np.isfinite(values)
    weights = counts[:, scene_of_row] * valid  # (B, R)
    v = np.where(valid, values, 0.0)
    if classes is None:
        stats = (weights * v).sum(axis=1) / np.maximum(weights.sum(axis=1), 1)
    else:
        _, class_of_row = np.unique(np.asarray(classes), return_inverse=True)
        onehot = np.eye(class_of_row.max() + 1)[class_of_row]  # (R, C)
        den = weights @ onehot
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(den > 0, ((weights * v) @ onehot) / den, np.nan)
        stats = np.nanmean(per_class, axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def _scored(
    values: np.ndarray, scenes: np.ndarray, classes: np.ndarray, point: float | None = None
) -> dict[str, Any]:
    """Class mean of per-row values and its bootstrap interval over scenes."""
    mean = class_mean(values, classes) if point is None else point
    return {"mean": mean, "ci": bootstrap_interval(values, scenes, classes)}


def pointing_table(
    maps: dict[str, np.ndarray], rows: Rows, mask: np.ndarray, tolerance: float = 15.0
) -> dict[str, dict[str, Any]]:
    """Pointing Game per method on the rows selected by ``mask``, plus baselines.

    Returns:
        method -> {"accuracy": {"mean", "ci"} at τ = tolerance (scaled), "strict": the same at
        τ = 0 (the point must lie inside a box), "n": rows, "scenes": scenes}; plus the
        baselines "(center)" (the image centre) and "(random point)" (exact expected accuracy
        of a uniformly random pixel, ``tf_clrp.metrics.random_hit_rate``). Intervals: 95 %
        percentile bootstrap over scenes.
    """
    idx = np.flatnonzero(mask)
    regions = [rows.regions[i] for i in idx]
    cls = rows.classes[idx]
    scenes = rows.scene[idx]
    shape = tuple(rows.x.shape[1:3])
    sizes = {"n": int(len(idx)), "scenes": int(len(np.unique(scenes)))}
    table: dict[str, dict[str, Any]] = {}
    for name, m in maps.items():
        hits = PointingGame(tolerance=tolerance).update(m[idx], regions, cls)
        inside = PointingGame(tolerance=0.0, scale_tolerance=False).update(m[idx], regions, cls)
        table[name] = {
            "accuracy": _scored(hits, scenes, cls),
            "strict": _scored(inside, scenes, cls),
            **sizes,
        }
    blank = np.zeros((len(idx), *shape), np.float32)
    center = PointingGame(tolerance=tolerance, baseline="center").update(blank, regions, cls)
    center0 = PointingGame(tolerance=0.0, scale_tolerance=False, baseline="center").update(
        blank, regions, cls
    )
    table["(center)"] = {
        "accuracy": _scored(center, scenes, cls),
        "strict": _scored(center0, scenes, cls),
        **sizes,
    }
    chance = random_hit_rates(regions, shape, tolerance)
    chance0 = random_hit_rates(regions, shape, 0.0, scale_tolerance=False)
    table["(random point)"] = {
        "accuracy": _scored(
            chance, scenes, cls, random_baseline(regions, cls, shape, tolerance).mean
        ),
        "strict": _scored(
            chance0,
            scenes,
            cls,
            random_baseline(regions, cls, shape, 0.0, scale_tolerance=False).mean,
        ),
        **sizes,
    }
    return table


def scored_cell(score: dict[str, Any], digits: int = 2) -> str:
    """``mean [low, high]`` (the interval omitted when there is none)."""
    low, high = score["ci"]
    if not np.isfinite(low):
        return fmt(score["mean"], digits)
    return f"{fmt(score['mean'], digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def row_hits(
    maps: dict[str, np.ndarray], rows: Rows, tolerance: float = 15.0
) -> dict[str, np.ndarray]:
    """Hit (1/0) of every row for every method (τ = tolerance, scaled)."""
    out = {}
    for name, m in maps.items():
        game = PointingGame(tolerance=tolerance)
        out[name] = game.update(m, rows.regions, rows.classes)
    return out


def discriminativeness(
    maps: dict[str, np.ndarray], rows: Rows, scenes: Iterable[int]
) -> dict[str, dict[str, float]]:
    """Per method: mean over scenes of the pairwise map correlation between the classes of
    a scene, the share of positive relevance in the own boxes and in the other classes' boxes.
    """
    result: dict[str, dict[str, float]] = {}
    scenes = list(scenes)
    for name, m in maps.items():
        corr, own, other = [], [], []
        for s in scenes:
            idx = np.flatnonzero(rows.scene == s)
            if len(idx) < 2:
                continue
            rep = discriminativeness_report(
                {int(rows.classes[i]): m[i : i + 1] for i in idx},
                {int(rows.classes[i]): [rows.regions[i]] for i in idx},
            )
            summary = rep.summary()
            corr.append(summary["correlation"])
            own.append(summary["own_mass"])
            other.append(summary["other_mass"])
        result[name] = {
            "correlation": _nanmean(corr),
            "own_mass": _nanmean(own),
            "other_mass": _nanmean(other),
            "scenes": float(len(corr)),
        }
    return result


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


@dataclass
class AopcResult:
    """AOPC per method and order, and the mean perturbation curves."""

    aopc: dict[str, dict[str, float]]
    curves: dict[str, dict[str, list[float]]]
    n: int
    ci: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)


def aopc_table(
    scorer: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    maps: dict[str, np.ndarray],
    targets: np.ndarray,
    orders: Sequence[str] = ("morf", "lerf"),
    patch_size: int = 16,
    steps: int = 20,
    perturbation: str = "mean",
    batch_size: int = 64,
    progress: bool = False,
    scenes: np.ndarray | None = None,
) -> AopcResult:
    """Region perturbation of all methods in one batched run per order, plus a random order.

    Args:
        scorer: images -> logits.
        x: images (N, H, W, C).
        maps: method -> reduced maps (N, H, W) for ``x``.
        targets: class per image.
        orders: orders evaluated per method ("random" is added once, method-independent).
        patch_size, steps, perturbation, batch_size: see ``region_perturbation``.
        progress: tqdm bars.
        scenes: scene id per image: 95 % bootstrap intervals resample scenes (default: each
            image its own scene).

    Returns:
        :class:`AopcResult`; ``curves[method][order]`` is the mean curve f(x_k) − f(x_0),
        ``ci[method][order]`` the interval of the mean AOPC.
    """
    names = list(maps)
    n = len(x)
    big_x = np.concatenate([x] * len(names))
    big_maps = np.concatenate([maps[m] for m in names])
    big_t = np.concatenate([targets] * len(names))
    groups = np.arange(n) if scenes is None else np.asarray(scenes)
    aopc: dict[str, dict[str, float]] = {m: {} for m in names}
    curves: dict[str, dict[str, list[float]]] = {m: {} for m in names}
    ci: dict[str, dict[str, tuple[float, float]]] = {m: {} for m in names}
    for order in orders:
        res = region_perturbation(
            scorer,
            big_x,
            big_maps,
            targets=big_t,
            order=order,
            patch_size=patch_size,
            steps=steps,
            perturbation=perturbation,
            batch_size=batch_size,
            progress=progress,
        )
        for k, m in enumerate(names):
            sl = slice(k * n, (k + 1) * n)
            aopc[m][order] = float(res.aopc[sl].mean())
            ci[m][order] = bootstrap_interval(res.aopc[sl], groups)
            curves[m][order] = (res.curves[sl] - res.curves[sl, :1]).mean(axis=0).tolist()
    res = region_perturbation(
        scorer,
        x,
        maps[names[0]],
        targets=targets,
        order="random",
        patch_size=patch_size,
        steps=steps,
        perturbation=perturbation,
        batch_size=batch_size,
        seed=0,
        progress=progress,
    )
    aopc["(random order)"] = {"random": float(res.aopc.mean())}
    ci["(random order)"] = {"random": bootstrap_interval(res.aopc, groups)}
    curves["(random order)"] = {"random": (res.curves - res.curves[:, :1]).mean(axis=0).tolist()}
    return AopcResult(aopc, curves, n, ci)


def clrp_parts_stats(
    parts: dict[str, np.ndarray], contrastive: np.ndarray, rows: Rows, mask: np.ndarray
) -> dict[str, float]:
    """How CLRP's dual relates to its target: correlation of the target and dual maps, the sum
    of the CLRP map (Σ max(0, t/Σt − d/Σd): 0 if the normalised maps are equal, 1 if they do
    not overlap) and the Pointing Game of the target part (= LRP with the paper's rules) and
    of the dual part alone."""
    idx = np.flatnonzero(mask)
    corr = []
    for i in idx:
        t, d = parts["target"][i].ravel(), parts["dual"][i].ravel()
        if t.std() > 0 and d.std() > 0:
            corr.append(float(np.corrcoef(t, d)[0, 1]))
    kept = [float(contrastive[i].sum()) for i in idx]
    game = PointingGame()
    game.update(parts["target"][idx], [rows.regions[i] for i in idx], rows.classes[idx])
    dual_game = PointingGame()
    dual_game.update(parts["dual"][idx], [rows.regions[i] for i in idx], rows.classes[idx])
    return {
        "corr_target_dual": _nanmean(corr),
        "contrastive_sum": _nanmean(kept),
        "pointing_target_part": game.result().mean,
        "pointing_dual_part": dual_game.result().mean,
    }


# ----------------------------------------------------------------------------- reporting
