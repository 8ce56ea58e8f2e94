"""Model-agnostic baselines: Occlusion and Prediction Difference Analysis (Zintgraf et al. 2017).

Both slide a ``window`` (int or (h, w)) with ``stride`` over the image; the last window of a
row/column is aligned to the border so that every pixel is covered. For each window w they
compute a score difference Δ_w and spread it evenly over the window's pixels and channels; a
pixel covered by several windows gets the mean of their shares:

    R[n, y, x, c] = mean_{w ∋ (y, x)} Δ_w / (|w| · C),      |w| = window height · width,

so with ``stride == window`` the map summed over a window equals that window's Δ_w.

Occlusion: Δ_w = s(x) − s(x with w set to ``baseline``), s = the explained score (logit of the
selected class; a final softmax/sigmoid of a Keras model is stripped).

Prediction difference: Δ_w = E(x) − E(x with w marginalised), the patch's values replaced by
``n_samples`` draws x̃ and the model's outputs averaged over them:

* ``evidence="log_odds"`` (Zintgraf): E = log2 odds of the class probability p_c = softmax(z)_c
  (sigmoid for one output); the marginal probability is the mean of p_c over the draws. Computed
  in log space (no Laplace correction needed, no clipping).
* ``evidence="logit"``: E = z_c, averaged over the draws (linear in the outputs).

Sampling: ``"marginal"`` takes the patch at the same position from a random reference image
(``reference`` images, or else the other images of the analysed batch), i.e. the empirical
marginal of that patch. ``"conditional"`` draws from a Gaussian over (window + 2·frame)² × C
patches, fitted once to all such patches of the reference images (stationary mean and
covariance, shrinkage λ = 1e-3 · mean variance), conditioned on the observed frame around the
window; images are reflect-padded by ``frame`` so border windows have a full frame. This is the
approximation of Zintgraf et al.'s conditional sampler.

Cost: windows × n_samples model evaluations per image (windows ≈ (H/stride) · (W/stride)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from tf_clrp._io import ProgressArg, progress_iter
from tf_clrp.metrics._common import (
    as_images,
    chunks,
    class_ids,
    target_weights,
)
from tf_clrp.metrics._keras import batched, score_function


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows along one axis, the last one aligned to the border."""
    window = min(window, size)
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def sliding_windows(
    shape: tuple[int, int], window: int | Sequence[int], stride: int | Sequence[int]
) -> tuple[np.ndarray, tuple[int, int]]:
    """All window positions covering an image.

    Args:
        shape: ``(H, W)``.
        window: window side or ``(h, w)`` (clipped to the image).
        stride: step or ``(sy, sx)``.

    Returns:
        ``(starts, (wh, ww))`` with ``starts`` an int array (n_windows, 2) of top-left corners.
    """
    (wh, ww), (sy, sx) = _pair(window), _pair(stride)
    if min(wh, ww, sy, sx) < 1:
        raise ValueError("window and stride must be positive")
    wh, ww = min(wh, shape[0]), min(ww, shape[1])
    ys, xs = window_starts(shape[0], wh, sy), window_starts(shape[1], ww, sx)
    starts = np.array([(y, x) for y in ys for x in xs], dtype=np.int64)
    return starts, (wh, ww)


def spread_windows(
    deltas: np.ndarray, starts: np.ndarray, size: tuple[int, int], shape: tuple[int, int, int]
) -> np.ndarray:
    """Spread per-window differences over pixels and channels (mean over covering windows).

    Args:
        deltas: (N, n_windows) Δ per image and window.
        starts: (n_windows, 2) top-left corners.
        size: ``(wh, ww)``.
        shape: ``(H, W, C)`` of one image.

    Returns:
        float32 (N, H, W, C) map.
    """
    h, w, c = shape
    wh, ww = size
    acc = np.zeros((len(deltas), h, w))
    count = np.zeros((h, w))
    for j, (y, x) in enumerate(starts):
        acc[:, y : y + wh, x : x + ww] += deltas[:, j, None, None] / (wh * ww * c)
        count[y : y + wh, x : x + ww] += 1
    per_pixel = acc / count
    return np.repeat(per_pixel[..., None], c, axis=-1).astype(np.float32)


class PerturbationAnalyzer:
    """Base of the model-agnostic analyzers: the model's scores on perturbed inputs.

    Not built on the propagation engine, so ``model`` may be any callable images → scores;
    they take only their own options (no ``Analyzer`` options).

    Args:
        model: Keras model or callable images → scores (N, K).
        batch_size: Images per model call.
        logits: Strip a final softmax/sigmoid of a Keras model.
        progress: False, True (tqdm bar if installed) or a callable ``(done, total)``.
    """

    def __init__(self, model: Any, batch_size: int, logits: bool, progress: ProgressArg) -> None:
        self.model = model
        self.batch_size, self.progress = batch_size, progress
        self._f = score_function(model, logits=logits)

    def analyze(
        self, x: Any, neuron_selection: Any = "max_activation", batch_size: int | None = None
    ) -> np.ndarray:
        """Maps of a batch.

        Args:
            x: (N, H, W, C) images.
            neuron_selection: "max_activation", an int or N ints; where the analyzer says so
                also a float (N, K) array of output weights (score = Σ_k weight_k · s_k).
            batch_size: Overrides the constructor's value.

        Returns:
            float32 array of x's shape (see the analyzer's module for how the map is spread).
        """
        return self._maps(as_images(x), neuron_selection, batch_size or self.batch_size)

    def _maps(self, x: np.ndarray, neuron_selection: Any, batch_size: int) -> np.ndarray:
        raise NotImplementedError


class Occlusion(PerturbationAnalyzer):
    """Occlusion analyzer: Δ_w = s(x) − s(x with window w set to ``baseline``).

    ``analyze``'s ``neuron_selection`` also takes a float (N, K) array of output weights.

    Args:
        model: Keras model or callable images → scores (N, K).
        window: window side or (h, w).
        stride: step or (sy, sx).
        baseline: occluding value: scalar or array broadcastable to the input batch.
        batch_size: images per model call.
        logits: strip a final softmax/sigmoid of a Keras model.
        progress: False, True (tqdm bar if installed) or a callable ``(done, total)``.
    """

    def __init__(
        self,
        model: Any,
        window: int | Sequence[int] = 8,
        stride: int | Sequence[int] = 4,
        baseline: Any = 0.0,
        batch_size: int = 64,
        logits: bool = True,
        progress: ProgressArg = False,
    ) -> None:
        super().__init__(model, batch_size, logits, progress)
        self.window, self.stride, self.baseline = window, stride, baseline

    def _maps(self, x: np.ndarray, neuron_selection: Any, bs: int) -> np.ndarray:
        n, h, w, c = x.shape
        clean = batched(self._f, x, bs).reshape(n, -1)
        weights = target_weights(neuron_selection, clean)
        s_clean = (weights * clean).sum(axis=1)
        base = np.broadcast_to(np.asarray(self.baseline, dtype=np.float32), x.shape)
        starts, (wh, ww) = sliding_windows((h, w), self.window, self.stride)
        n_w = len(starts)
        deltas = np.empty((n, n_w))
        pieces = list(chunks(n * n_w, bs))
        for s in progress_iter(pieces, len(pieces), self.progress, "occlusion"):
            r = np.arange(s.start, s.stop)
            i, j = r // n_w, r % n_w
            batch = x[i].copy()
            for row, (ii, jj) in enumerate(zip(i, j)):
                y0, x0 = starts[jj]
                batch[row, y0 : y0 + wh, x0 : x0 + ww] = base[ii, y0 : y0 + wh, x0 : x0 + ww]
            out = self._f(batch).reshape(len(r), -1)
            deltas[i, j] = s_clean[i] - (weights[i] * out).sum(axis=1)
        return spread_windows(deltas, starts, (wh, ww), (h, w, c))


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def log_probs(z: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log p_c, log(1 − p_c))`` of softmax(z) (sigmoid for one output), computed stably.

    Args:
        z: logits (B, K).
        cls: class per row (B,).

    Returns:
        Two arrays (B,).
    """
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    rows = np.arange(len(z))
    if z.shape[1] == 1:
        zc = z[:, 0]
        return -np.logaddexp(0.0, -zc), -np.logaddexp(0.0, zc)
    total = _logsumexp(z, axis=1)
    others = z.copy()
    others[rows, cls] = -np.inf
    return z[rows, cls] - total, _logsumexp(others, axis=1) - total


class _ConditionalGaussian:
    """Gaussian over (wh + 2f) × (ww + 2f) × C patches, conditioned on the outer frame."""

    def __init__(
        self,
        reference: np.ndarray,
        size: tuple[int, int],
        frame: int,
        rng: np.random.Generator,
    ) -> None:
        wh, ww = size
        c = reference.shape[-1]
        ph, pw = wh + 2 * frame, ww + 2 * frame
        d = ph * pw * c
        max_patches = min(20000, max(2 * d, 40_000_000 // (8 * d)))
        padded = np.pad(reference, ((0, 0), (frame, frame), (frame, frame), (0, 0)), mode="reflect")
        step = max(1, min(ph, pw) // 4)
        h, w = padded.shape[1:3]
        corners = [
            (m, y, x)
            for m in range(len(padded))
            for y in range(0, h - ph + 1, step)
            for x in range(0, w - pw + 1, step)
        ]
        if len(corners) > max_patches:
            keep = rng.choice(len(corners), max_patches, replace=False)
            corners = [corners[k] for k in keep]
        data = np.stack([padded[m, y : y + ph, x : x + pw].ravel() for m, y, x in corners])
        data = data.astype(np.float64)
        mu = data.mean(axis=0)
        cov = np.cov(data, rowvar=False) if len(data) > 1 else np.zeros((mu.size, mu.size))
        cov = np.atleast_2d(cov)
        cov += (1e-3 * max(float(np.mean(np.diag(cov))), 0.0) + 1e-8) * np.eye(mu.size)
        inner = np.zeros((ph, pw, c), dtype=bool)
        inner[frame : frame + wh, frame : frame + ww] = True
        inner = inner.ravel()
        self.inner, self.outer = np.flatnonzero(inner), np.flatnonzero(~inner)
        self.mu_i, self.mu_o = mu[self.inner], mu[self.outer]
        if self.outer.size:
            s_oo = cov[np.ix_(self.outer, self.outer)]
            s_io = cov[np.ix_(self.inner, self.outer)]
            self.gain = np.linalg.solve(s_oo, s_io.T).T
            cond = cov[np.ix_(self.inner, self.inner)] - self.gain @ s_io.T
        else:
            self.gain = np.zeros((self.inner.size, 0))
            cond = cov[np.ix_(self.inner, self.inner)]
        cond = 0.5 * (cond + cond.T)
        evals, evecs = np.linalg.eigh(cond)
        self.root = evecs * np.sqrt(np.clip(evals, 0.0, None))
        self.frame, self.patch = frame, (ph, pw, c)
        self.window = (wh, ww, c)

    def sample(self, outer_patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw one inner window per row given full patches (B, ph, pw, C) (inner ignored)."""
        flat = outer_patches.reshape(len(outer_patches), -1).astype(np.float64)
        mean = self.mu_i + (flat[:, self.outer] - self.mu_o) @ self.gain.T
        noise = rng.standard_normal((len(flat), self.inner.size)) @ self.root.T
        return (mean + noise).reshape(len(flat), *self.window).astype(np.float32)


class PredictionDifference(PerturbationAnalyzer):
    """Prediction Difference Analysis (Zintgraf et al. 2017).

    ``analyze``'s ``neuron_selection`` takes a float (N, K) array of output weights only
    with ``evidence="logit"``.

    Args:
        model: Keras model or callable images → logits (N, K).
        window: window side or (h, w).
        stride: step or (sy, sx).
        sampling: "marginal" or "conditional" (see the module doc).
        n_samples: draws per window.
        reference: images (M, H, W, C) defining the sampling distribution; default the
            analysed batch ("marginal": the *other* images of the batch).
        frame: frame width around the window for "conditional".
        evidence: "log_odds" (Zintgraf; bits) or "logit".
        seed: random seed.
        logits: strip a final softmax/sigmoid of a Keras model (the evidence is then
            computed from the logits).
        batch_size: images per model call (``PerturbationAnalyzer``).
        progress: as for every ``PerturbationAnalyzer``.
    """

    def __init__(
        self,
        model: Any,
        window: int | Sequence[int] = 8,
        stride: int | Sequence[int] = 4,
        sampling: Literal["marginal", "conditional"] = "marginal",
        n_samples: int = 10,
        reference: Any = None,
        frame: int = 2,
        evidence: Literal["log_odds", "logit"] = "log_odds",
        seed: int | None = 0,
        batch_size: int = 64,
        logits: bool = True,
        progress: ProgressArg = False,
    ) -> None:
        if sampling not in ("marginal", "conditional"):
            raise ValueError(f"sampling must be 'marginal' or 'conditional', got {sampling!r}")
        if evidence not in ("log_odds", "logit"):
            raise ValueError(f"evidence must be 'log_odds' or 'logit', got {evidence!r}")
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        super().__init__(model, batch_size, logits, progress)
        self.window, self.stride, self.sampling = window, stride, sampling
        self.n_samples, self.frame, self.evidence = int(n_samples), int(frame), evidence
        self.reference = None if reference is None else as_images(reference)
        self.seed = seed

    def _maps(self, x: np.ndarray, neuron_selection: Any, bs: int) -> np.ndarray:
        n, h, w, c = x.shape
        rng = np.random.default_rng(self.seed)
        ref = self.reference if self.reference is not None else x
        if ref.shape[1:] != x.shape[1:]:
            raise ValueError(f"reference images have shape {ref.shape[1:]}, inputs {x.shape[1:]}")
        if self.sampling == "marginal" and self.reference is None and n < 2:
            raise ValueError("marginal sampling needs reference images or a batch of >= 2 images")
        starts, (wh, ww) = sliding_windows((h, w), self.window, self.stride)
        gauss, padded = None, x
        if self.sampling == "conditional":
            gauss = _ConditionalGaussian(ref, (wh, ww), self.frame, rng)
            fr = self.frame
            padded = np.pad(x, ((0, 0), (fr, fr), (fr, fr), (0, 0)), mode="reflect")

        clean = batched(self._f, x, bs).reshape(n, -1)
        if self.evidence == "logit":
            weights = target_weights(neuron_selection, clean)
            e_clean = (weights * clean).sum(axis=1)
        else:
            cls = class_ids(neuron_selection, clean)
            lp, l1p = log_probs(clean, cls)
            e_clean = (lp - l1p) / np.log(2.0)

        n_w, n_s = len(starts), self.n_samples
        acc_a = np.empty((n, n_w, n_s))
        acc_b = np.empty((n, n_w, n_s))
        pieces = list(chunks(n * n_w * n_s, bs))
        for s in progress_iter(pieces, len(pieces), self.progress, "prediction difference"):
            r = np.arange(s.start, s.stop)
            i, rest = r // (n_w * n_s), r % (n_w * n_s)
            j, k = rest // n_s, rest % n_s
            batch = x[i].copy()
            if gauss is None:
                if self.reference is None:  # another image of the batch, never the same one
                    src = (i + rng.integers(1, n, size=len(r))) % n
                else:
                    src = rng.integers(0, len(ref), size=len(r))
                for row in range(len(r)):
                    y0, x0 = starts[j[row]]
                    batch[row, y0 : y0 + wh, x0 : x0 + ww] = ref[
                        src[row], y0 : y0 + wh, x0 : x0 + ww
                    ]
            else:
                ph, pw = wh + 2 * self.frame, ww + 2 * self.frame
                around = np.stack(
                    [
                        padded[i[row], y : y + ph, xx : xx + pw]
                        for row, (y, xx) in enumerate(starts[j])
                    ]
                )
                draws = gauss.sample(around, rng)
                for row in range(len(r)):
                    y0, x0 = starts[j[row]]
                    batch[row, y0 : y0 + wh, x0 : x0 + ww] = draws[row]
            out = self._f(batch).reshape(len(r), -1)
            if self.evidence == "logit":
                acc_a[i, j, k] = (weights[i] * out).sum(axis=1)
            else:
                acc_a[i, j, k], acc_b[i, j, k] = log_probs(out, cls[i])
        if self.evidence == "logit":
            e_marg = acc_a.mean(axis=2)
        else:
            # log p̄ − log(1 − p̄); the 1/S of both means cancels
            e_marg = (_logsumexp(acc_a, axis=2) - _logsumexp(acc_b, axis=2)) / np.log(2.0)
        deltas = e_clean[:, None] - e_marg
        return spread_windows(deltas, starts, (wh, ww), (h, w, c))
