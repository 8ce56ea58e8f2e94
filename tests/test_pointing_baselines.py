"""Random-pixel baseline of the Pointing Game (``random_hit_rate``, ``random_baseline``).

References: a brute-force enumeration of every pixel against every ground-truth pixel in
float64 (written here, not the library's ``is_hit``), hand-counted boxes, and a Monte-Carlo
run of ``PointingGame`` on maps whose single maximum is a uniformly random pixel.
"""

from __future__ import annotations

import numpy as np
import pytest

from tf_clrp.metrics import PointingGame, random_baseline, random_hit_rate, random_hit_rates


def _enumerated_rate(mask: np.ndarray, tolerance: float) -> float:
    """Share of pixels p with min_q ‖p − q‖² ≤ τ² over the mask pixels q (brute force)."""
    h, w = mask.shape
    py, px = np.mgrid[:h, :w]
    qy, qx = np.nonzero(mask)
    d2 = (py[..., None] - qy) ** 2 + (px[..., None] - qx) ** 2  # (H, W, |GT|)
    return float((d2.min(axis=-1) <= tolerance**2 + 1e-9).mean())


#: √13² rounds below 13 in float64: the inclusive boundary needs the 1e-9 slack.
@pytest.mark.parametrize(
    "tolerance", [0.0, 1.0, np.sqrt(2.0), np.sqrt(13.0), 1.5, 2.0, 3.75, 5.0, 15.0]
)
def test_random_hit_rate_equals_enumeration(tolerance: float) -> None:
    rng = np.random.default_rng(int(tolerance * 100))
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(1, 14, size=2))
        mask = rng.random((h, w)) < rng.uniform(0.0, 0.3)
        mask[rng.integers(h), rng.integers(w)] = True
        expected = _enumerated_rate(mask, tolerance)
        got = random_hit_rate(mask, (h, w), tolerance, scale_tolerance=False)
        assert got == pytest.approx(expected, abs=1e-12), (h, w, tolerance)


def test_random_hit_rate_scales_the_tolerance_like_the_game() -> None:
    mask = np.zeros((28, 56), bool)
    mask[3:20, 30:41] = True  # τ = 15 · 56 / 224 = 3.75 px
    assert random_hit_rate(mask, (28, 56)) == pytest.approx(_enumerated_rate(mask, 3.75))


def test_random_hit_rate_of_boxes_counted_by_hand() -> None:
    # 2x2 box in the corner of a 4x4 image: 4 pixels inside; with τ = 1 the 2 + 2 pixels
    # right of and below it join (the diagonal neighbour is √2 away).
    assert random_hit_rate((0, 0, 2, 2), (4, 4), 0.0, scale_tolerance=False) == 4 / 16
    assert random_hit_rate((0, 0, 2, 2), (4, 4), 1.0, scale_tolerance=False) == 8 / 16
    assert random_hit_rate((0, 0, 2, 2), (4, 4), np.sqrt(2.0), scale_tolerance=False) == 9 / 16
    # two boxes: the union counts once
    assert (
        random_hit_rate([(0, 0, 1, 4), (0, 0, 4, 1)], (4, 4), 0.0, scale_tolerance=False) == 7 / 16
    )


def test_random_baseline_is_the_unweighted_mean_over_classes() -> None:
    gts = [(0, 0, 2, 2), (0, 0, 4, 4), (0, 0, 1, 1)]
    result = random_baseline(gts, [7, 7, 3], (4, 4), 0.0, scale_tolerance=False)
    assert result.per_class == {3: 1 / 16, 7: (4 / 16 + 16 / 16) / 2}
    assert result.mean == pytest.approx((1 / 16 + 10 / 16) / 2)
    assert result.n == 3 and result.hits == {} and result.misses == {}


def test_random_baseline_matches_the_game_with_random_points() -> None:
    rng = np.random.default_rng(0)
    shape, draws = (12, 16), 6000
    gts = [(1, 2, 4, 6), [(7, 10, 9, 15), (0, 14, 2, 16)]]
    classes = [0, 1]
    game = PointingGame(tolerance=2.5, scale_tolerance=False)
    maps = rng.random((draws, *shape))  # continuous: the maximum is a uniform random pixel
    game.update(maps, [gts[i % 2] for i in range(draws)], [classes[i % 2] for i in range(draws)])
    expected = random_baseline(gts, classes, shape, 2.5, scale_tolerance=False)
    for c in classes:
        # binomial standard error at p ≈ 0.3, n = 3000: 0.008; allow 4 of them
        assert game.result().per_class[c] == pytest.approx(expected.per_class[c], abs=0.034)


def test_random_hit_rate_rejects_an_empty_ground_truth() -> None:
    with pytest.raises(ValueError, match="empty"):
        random_hit_rate(np.zeros((4, 4), bool), (4, 4))


def test_random_hit_rates_are_per_pair_and_aggregate_to_the_baseline() -> None:
    """One rate per ground truth (enumerated), and the baseline is their per-class mean."""
    rng = np.random.default_rng(7)
    masks = []
    for _ in range(6):
        mask = rng.random((12, 10)) < 0.05
        mask[rng.integers(12), rng.integers(10)] = True
        masks.append(mask)
    classes = [3, 1, 3, 3, 1, 0]
    rates = random_hit_rates(masks, (12, 10), 2.0, scale_tolerance=False)
    expected = [_enumerated_rate(m, 2.0) for m in masks]
    np.testing.assert_allclose(rates, expected, rtol=0, atol=1e-12)
    result = random_baseline(masks, classes, (12, 10), 2.0, scale_tolerance=False)
    by_class = {c: np.mean([e for e, k in zip(expected, classes) if k == c]) for c in (0, 1, 3)}
    assert result.per_class == pytest.approx(by_class, abs=1e-12)
    assert result.mean == pytest.approx(np.mean(list(by_class.values())), abs=1e-12)
