"""Path- and noise-averaged gradients: Integrated Gradients and SmoothGrad.

Both evaluate the (plain) gradient at many points derived from each input. The explained
unit is fixed at the real input first (arg-max there, not at each perturbed point), then
all points of a chunk go through one batched backward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tf_clrp import checks
from tf_clrp.analyzers.base import ReplicaStep
from tf_clrp.analyzers.propagation import Propagation
from tf_clrp.composites import Composite, assemble, gradient_composite
from tf_clrp.rules import Rule
from tf_clrp.selection import Selection


class _AveragedGradient(Propagation):
    """Averages the gradient over ``n_points`` inputs made from each sample."""

    n_points: int = 1

    def __init__(
        self,
        model: Any,
        *,
        composite: Composite | None = None,
        layer_rules: dict[str, Rule] | None = None,
        **kwargs: Any,
    ) -> None:
        composite = assemble(composite, layer_rules=layer_rules, default=gradient_composite)
        super().__init__(model, composite, seed="one", **kwargs)

    def _points(self, x: np.ndarray) -> np.ndarray:
        """(n_points, batch, ...) inputs at which the gradient is taken."""
        raise NotImplementedError

    def _finish(self, x: np.ndarray, mean_gradient: np.ndarray) -> np.ndarray:
        return mean_gradient

    def replica_step(
        self,
        x: np.ndarray,
        selection: Selection,
        feeds: tuple[np.ndarray, ...] = (),
        **analyze_kwargs: Any,
    ) -> ReplicaStep:
        """All points of the chunk in one backward pass (see ``Analyzer.replica_step``).

        The arg-max is fixed at the real input (one forward on the host device) before the
        points are made; the ``n_points × batch`` gradients are the distributable part. Fed
        inputs (``feeds``) are repeated unchanged for every point.
        """
        if analyze_kwargs:
            raise TypeError(f"unexpected analyze() arguments: {sorted(analyze_kwargs)}")
        selection = self.resolve_max_activation(x, selection, feeds)
        points = self._points(x)
        n = points.shape[0]
        flat = points.reshape((-1,) + x.shape[1:]).astype(np.float32)
        tiled = tuple(np.tile(f, (n,) + (1,) * (f.ndim - 1)) for f in feeds)

        def finish(out: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            mean = out[0].reshape(points.shape).mean(axis=0)
            return self._finish(x, mean).astype(np.float32)

        if selection.seeds is not None:
            return ReplicaStep(
                (id(self), "by_seed"),
                self._by_seed,
                (flat, np.tile(selection.seeds, (n, 1)), *tiled),
                finish,
            )
        return ReplicaStep(
            (id(self), "by_index"),
            self._by_index,
            (flat, np.tile(selection.indices, n), *tiled),
            finish,
        )


class IntegratedGradients(_AveragedGradient):
    """Integrated Gradients (Sundararajan et al. 2017), Riemann sum along the straight path.

    Args:
        model: The Keras model.
        reference_inputs: Baseline x₀ (scalar or array broadcastable to one sample); 0.
        steps: Number of points on the path x₀ + k/steps·(x − x₀), k = 0..steps−1 (the left
            Riemann sum, as iNNvestigate; it includes x₀ and excludes x).
        **kwargs: ``Analyzer`` options.
    """

    def __init__(
        self, model: Any, reference_inputs: Any = 0.0, steps: int = 64, **kwargs: Any
    ) -> None:
        self.steps = checks.positive_count("steps", steps)
        self.reference_inputs = checks.finite_bounds("reference_inputs", reference_inputs)
        super().__init__(model, **kwargs)

    def _points(self, x: np.ndarray) -> np.ndarray:
        alphas = np.arange(0, self.steps, dtype=np.float32) / self.steps
        shape = (-1,) + (1,) * x.ndim
        return self.reference_inputs + alphas.reshape(shape) * (x - self.reference_inputs)

    def _finish(self, x: np.ndarray, mean_gradient: np.ndarray) -> np.ndarray:
        return (x - self.reference_inputs) * mean_gradient


class SmoothGrad(_AveragedGradient):
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies.

    Args:
        model: The Keras model.
        augment_by_n: Number of noisy copies per sample.
        noise_scale: Standard deviation of the Gaussian noise (absolute, in input units; 1.0
            is what iNNvestigate 2.1.2 always uses).
        noise_relative: Scale the noise by each sample's value range (max − min), as in
            Smilkov et al. (who suggest noise_scale 0.1–0.2).
        seed: Seed of the noise generator (reproducible maps).
        **kwargs: ``Analyzer`` options (e.g. ``postprocess``).
    """

    def __init__(
        self,
        model: Any,
        augment_by_n: int = 64,
        noise_scale: float = 1.0,
        noise_relative: bool = False,
        seed: int | None = 0,
        **kwargs: Any,
    ) -> None:
        self.augment_by_n = checks.positive_count("augment_by_n", augment_by_n)
        self.noise_scale = checks.finite_parameter("noise_scale", noise_scale, minimum=0.0)
        self.noise_relative = bool(noise_relative)
        self.rng = np.random.default_rng(seed)
        super().__init__(model, **kwargs)

    def _points(self, x: np.ndarray) -> np.ndarray:
        scale = np.float32(self.noise_scale)
        if self.noise_relative:
            axes = tuple(range(1, x.ndim))
            scale = scale * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))
        noise = self.rng.standard_normal((self.augment_by_n,) + x.shape).astype(np.float32)
        return x + noise * scale
