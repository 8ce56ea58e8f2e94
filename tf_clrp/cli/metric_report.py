"""``tf-clrp evaluate`` results: summaries with bootstrap intervals, tables and JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tf_clrp.cli.metric_runs import Quantity
from tf_clrp.cli.metric_table import MetricSpec

#: Bootstrap resamples per interval.
RESAMPLES = 1000


@dataclass
class Summary:
    """One reported number: its value, 95 % percentile bootstrap interval and sample count."""

    value: float
    low: float
    high: float
    n: int
    values: np.ndarray


def _statistic(values: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Mean over the last axis, or the mean over groups of group means (rows = resamples)."""
    if groups is None:
        return values.mean(axis=-1)
    codes = np.unique(groups, return_inverse=True)[1].reshape(groups.shape)
    n_groups = int(codes.max()) + 1
    offset = codes + n_groups * np.arange(len(codes))[:, None]
    size = n_groups * len(codes)
    sums = np.bincount(offset.ravel(), values.ravel(), size).reshape(len(codes), n_groups)
    counts = np.bincount(offset.ravel(), None, size).reshape(len(codes), n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), axis=1)


def summarize(quantity: Quantity, seed: int, resamples: int = RESAMPLES) -> Summary:
    """Value over the finite samples and its 95 % percentile bootstrap interval.

    Samples (rows) are resampled with replacement ``resamples`` times; the interval is the
    2.5 and 97.5 percentiles of the statistic (the mean, or the mean of group means).
    """
    values = np.asarray(quantity.values, np.float64)
    finite = np.isfinite(values)
    kept = values[finite]
    groups = None if quantity.groups is None else np.asarray(quantity.groups)[finite]
    if kept.size == 0:
        return Summary(math.nan, math.nan, math.nan, 0, values)
    value = float(_statistic(kept[None], None if groups is None else groups[None])[0])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, kept.size, size=(resamples, kept.size))
    boot = _statistic(kept[picks], None if groups is None else groups[picks])
    low, high = np.percentile(boot, [2.5, 97.5])
    return Summary(value, float(low), float(high), int(kept.size), values)


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else value


def metric_json(
    spec: MetricSpec, options: dict[str, Any], rows: dict[str, list[tuple[str, Summary]]]
) -> dict[str, Any]:
    """One metric's results as JSON-ready data (NaN becomes null)."""
    return {
        "summary": spec.summary,
        "reading": spec.better,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "results": {
            label: {
                name: {
                    "value": _number(s.value),
                    "ci95": [_number(s.low), _number(s.high)],
                    "n": s.n,
                    "values": [_number(float(v)) for v in s.values],
                }
                for name, s in quantities
            }
            for label, quantities in rows.items()
        },
    }


def write_json(data: dict[str, Any]) -> str:
    """The JSON text of the results."""
    return json.dumps(data, indent=1, allow_nan=False)


def _format_options(options: dict[str, Any]) -> str:
    shown = [
        f"{k}={','.join(v) if isinstance(v, tuple) else 'default' if v is None else v}"
        for k, v in options.items()
    ]
    return f" [{'; '.join(shown)}]" if shown else ""


def table(
    spec: MetricSpec,
    options: dict[str, Any],
    rows: dict[str, list[tuple[str, Summary]]],
    quiet: bool,
) -> list[str]:
    """Lines of one metric's table: method, quantity, value, 95 % interval, n."""
    lines = [
        f"{spec.name}: {spec.summary}{_format_options(options)}",
        f"{'method':<22}{'quantity':<13}{'value':>9}   {'95% CI':<19}{'n':>6}",
    ]
    for label, quantities in rows.items():
        for name, s in quantities:
            interval = f"[{s.low:.3f}, {s.high:.3f}]" if s.n else "-"
            lines.append(f"{label:<22}{name:<13}{s.value:>9.3f}   {interval:<19}{s.n:>6d}")
    if not quiet:
        lines.append(
            f"({spec.better}; 95% CI = percentile bootstrap over samples, {RESAMPLES} resamples)"
        )
    return lines


def summarize_all(quantities: Sequence[Quantity], seed: int) -> list[tuple[str, Summary]]:
    """Each quantity's name and summary."""
    return [(q.name, summarize(q, seed)) for q in quantities]
