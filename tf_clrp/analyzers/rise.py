"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko 2018).

Model-agnostic: the saliency of pixel λ is the expected score under random masks M,
conditioned on M(λ) = 1, estimated with N masks (the same set for every image):

    S(λ) = 1 / (N · p1) · Σ_i s(x ⊙ M_i + (1 − M_i) · baseline) · M_i(λ).

Masks as in the authors' code: a binary (gh, gw) grid with P(cell = 1) = ``p1``, upsampled
bilinearly (half-pixel centres, edge values repeated) to ((gh + 1)·ch, (gw + 1)·cw) with
cell size (ch, cw) = ⌈(H, W) / grid_size⌉ (or ``cell_size``), then cropped to H × W at a
random shift in [0, ch) × [0, cw). Random draws, in this order, from
``numpy.random.default_rng(seed)``: the grids ``rng.random((N, gh, gw)) < p1``, the row
shifts ``rng.integers(0, ch, N)``, the column shifts ``rng.integers(0, cw, N)`` — so a
seed fixes the maps exactly. s is the model's output for the selected class (the
probability for a softmax model, as in the paper; ``logits=True`` strips the softmax).
The map is spread evenly over the channels (the channel sum is S), like ``Occlusion``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp._io import ProgressArg, progress_iter
from tf_clrp.analyzers.model_agnostic import PerturbationAnalyzer
from tf_clrp.metrics._common import chunks, target_weights
from tf_clrp.metrics._keras import batched


@dataclass(frozen=True)
class MaskSet:
    """The random part of a RISE mask set.

    Attributes:
        grids: Boolean (N, gh, gw) grids.
        shifts: Int (N, 2) crop offsets (row, column).
        cell: Cell size (ch, cw) in pixels.
        image: Image size (H, W).
    """

    grids: np.ndarray
    shifts: np.ndarray
    cell: tuple[int, int]
    image: tuple[int, int]

    def masks(self, rows: slice) -> np.ndarray:
        """float32 (n, H, W) masks of ``rows``, each in [0, 1]."""
        (ch, cw), (h, w) = self.cell, self.image
        grids = self.grids[rows].astype(np.float32)[..., None]
        gh, gw = grids.shape[1:3]
        up = tf.image.resize(grids, ((gh + 1) * ch, (gw + 1) * cw), method="bilinear").numpy()
        return np.stack(
            [up[i, y : y + h, x : x + w, 0] for i, (y, x) in enumerate(self.shifts[rows])]
        )


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    a, b = value
    return int(a), int(b)


def make_masks(
    image: tuple[int, int],
    n_masks: int,
    grid_size: int | Sequence[int] = 7,
    cell_size: int | Sequence[int] | None = None,
    p1: float = 0.5,
    seed: int | None = 0,
) -> MaskSet:
    """Draws a RISE mask set (see the module doc for the draws and their order).

    Args:
        image: (H, W).
        n_masks: N.
        grid_size: Grid cells per side s (cell size ⌈H/s⌉), ignored with ``cell_size``.
        cell_size: Cell size in pixels (int or (ch, cw)).
        p1: Probability of a cell being kept.
        seed: Seed of ``numpy.random.default_rng``.

    Returns:
        The MaskSet.
    """
    if n_masks < 1:
        raise ValueError(f"n_masks must be >= 1, got {n_masks}")
    if not 0.0 < p1 <= 1.0:
        raise ValueError(f"p1 must lie in (0, 1], got {p1}")
    h, w = image
    if cell_size is None:
        gh, gw = _pair(grid_size)
        if min(gh, gw) < 1:
            raise ValueError(f"grid_size must be positive, got {grid_size}")
        ch, cw = math.ceil(h / gh), math.ceil(w / gw)
    else:
        ch, cw = _pair(cell_size)
        if min(ch, cw) < 1:
            raise ValueError(f"cell_size must be positive, got {cell_size}")
    gh, gw = math.ceil(h / ch), math.ceil(w / cw)
    rng = np.random.default_rng(seed)
    grids = rng.random((n_masks, gh, gw)) < p1
    rows = rng.integers(0, ch, n_masks)
    cols = rng.integers(0, cw, n_masks)
    return MaskSet(grids, np.stack([rows, cols], axis=1), (ch, cw), (h, w))


class RISE(PerturbationAnalyzer):
    """RISE analyzer (Petsiuk et al. 2018), model-agnostic.

    ``analyze``'s ``neuron_selection`` also takes a float (N, K) array of output weights.

    Args:
        model: Keras model or callable images → scores (N, K).
        n_masks: Number of masks N (the paper: 4000 for ResNet50; 2000 is a fair default).
        grid_size: Grid cells per side s (the paper: 7).
        cell_size: Cell size in pixels instead of ``grid_size``.
        p1: Probability of keeping a cell (the paper: 0.5).
        seed: Seed of the masks (deterministic maps); None draws fresh ones per call.
        baseline: Value of masked pixels (scalar or broadcastable to one image); 0.
        batch_size: Masked images per model call.
        logits: Strip a final softmax/sigmoid of a Keras model (default False: the paper
            uses the class probability).
        progress: False, True (tqdm bar if installed) or a callable ``(done, total)``.
        use_tf_function: Accepted as by every analyzer (``HeatmapCallback`` passes it); a
            Keras model always runs through its compiled canonical graph.
    """

    def __init__(
        self,
        model: Any,
        n_masks: int = 2000,
        grid_size: int | Sequence[int] = 7,
        cell_size: int | Sequence[int] | None = None,
        p1: float = 0.5,
        seed: int | None = 0,
        baseline: Any = 0.0,
        batch_size: int = 64,
        logits: bool = False,
        progress: ProgressArg = False,
        use_tf_function: bool = True,
    ) -> None:
        make_masks((8, 8), 1, grid_size, cell_size, p1, 0)  # validate early
        super().__init__(model, batch_size, logits, progress)
        self.n_masks, self.grid_size, self.cell_size = int(n_masks), grid_size, cell_size
        self.p1, self.seed, self.baseline = float(p1), seed, baseline

    def _maps(self, x: np.ndarray, neuron_selection: Any, size: int) -> np.ndarray:
        n, h, w, c = x.shape
        masks = make_masks((h, w), self.n_masks, self.grid_size, self.cell_size, self.p1, self.seed)
        weights = target_weights(neuron_selection, batched(self._f, x, size).reshape(n, -1))
        base = np.broadcast_to(np.asarray(self.baseline, np.float32), x.shape[1:])
        saliency = np.zeros((n, h * w))
        for rows in progress_iter(
            list(self._pieces(size)), -(-self.n_masks // size), self.progress, "rise"
        ):
            m = masks.masks(rows)
            for i in range(n):
                masked = x[i] * m[..., None] + base * (1.0 - m[..., None])
                scores = self._f(masked).reshape(len(m), -1) @ weights[i]
                saliency[i] += scores @ m.reshape(len(m), -1).astype(np.float64)
        saliency /= self.n_masks * self.p1
        spread = saliency.reshape(n, h, w, 1) / c
        return np.broadcast_to(spread, x.shape).astype(np.float32)

    def _pieces(self, size: int) -> Iterator[slice]:
        return chunks(self.n_masks, size)
