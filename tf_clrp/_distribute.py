"""Running an analyzer's per-chunk computation under a ``tf.distribute.Strategy``.

An analyzer's ``_explain`` is split into three parts (a ``ReplicaStep``): host-side inputs
(numpy arrays whose first axis is the row axis), a graph-traceable row-wise step function,
and a host-side ``finish`` that turns the step's outputs into what ``analyze`` returns. The
rows are split evenly over the replicas (padded with copies of the last row), the step runs
through ``strategy.run`` inside one ``tf.function``, and ``strategy.gather`` collects the
outputs in replica order on every worker.

The split is taken from ``analyzer.replica_step(x, neuron_selection, **analyze_kwargs)`` if
the analyzer defines it (the proposed engine hook); otherwise the adapter below builds it for
the engine's analyzer classes from their (private) building blocks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp.analyzers.base import Analyzer, check_input
from tf_clrp.analyzers.contrastive import ContrastiveExplanation, _TwoSeedAnalyzer
from tf_clrp.analyzers.gradient_methods import _AveragedGradient
from tf_clrp.analyzers.propagation import Propagation
from tf_clrp.errors import SelectionError
from tf_clrp.selection import MAX_ACTIVATION, Selection, resolve_selection

StepOutput = tf.Tensor | tuple[tf.Tensor, ...]


@dataclass(frozen=True)
class ReplicaStep:
    """One chunk's computation, split so that its middle part can run on several replicas.

    Attributes:
        key: Identifies ``fn`` (the compiled distributed step is cached per key).
        fn: Graph-traceable, row-wise: output row i depends only on input row i of each input.
            Returns a tensor or a tuple of tensors, each with the row axis first.
        inputs: Numpy arrays with the same number of rows (the first axis).
        finish: Host-side; takes the outputs (numpy, same structure as ``fn``'s) for all
            rows and returns what ``analyzer.analyze`` returns for the chunk.
    """

    key: Hashable
    fn: Callable[..., StepOutput]
    inputs: tuple[np.ndarray, ...]
    finish: Callable[[Any], Any]


def prepare_input(analyzer: Analyzer, x: Any, neuron_selection: Any) -> tuple[np.ndarray,
                                                                                Selection]:
    """Validates a chunk and its selection exactly as ``Analyzer.analyze`` does.

    Args:
        analyzer: The analyzer.
        x: Input chunk.
        neuron_selection: As for ``analyze``.

    Returns:
        The float32 input and the resolved Selection.
    """
    array = check_input(x, analyzer.graph)
    if neuron_selection is None and analyzer.neuron_selection_mode == "index":
        raise ValueError(
            "this analyzer was created with neuron_selection_mode='index': pass "
            "neuron_selection=<int or one int per sample>")
    if neuron_selection is None and analyzer.neuron_selection_mode == "all":
        neuron_selection = "all"
    selection = resolve_selection(neuron_selection, len(array), analyzer.n_outputs,
                                  analyzer.output_shape)
    return array, selection


def _propagation_step(analyzer: Propagation, x: np.ndarray, selection: Selection,
                      **kwargs: Any) -> ReplicaStep:
    if kwargs:
        raise TypeError(f"unexpected analyze() arguments: {sorted(kwargs)}")
    finish = lambda out: out.astype(np.float32)
    if selection.seeds is not None:
        return ReplicaStep((id(analyzer), "by_seed"), analyzer._backward_by_seed,
                           (x, selection.seeds), finish)
    return ReplicaStep((id(analyzer), "by_index"), analyzer._backward_by_index,
                       (x, selection.indices), finish)


def _averaged_step(analyzer: _AveragedGradient, x: np.ndarray, selection: Selection,
                   **kwargs: Any) -> ReplicaStep:
    # Mirrors _AveragedGradient._explain: the arg-max is fixed at the real input (one cheap
    # forward on the host device), the n_points × batch gradients are distributed.
    if kwargs:
        raise TypeError(f"unexpected analyze() arguments: {sorted(kwargs)}")
    if selection.indices is not None and np.any(selection.indices == MAX_ACTIVATION):
        logits = analyzer._forward(tf.constant(x)).numpy()
        selection = Selection(indices=np.where(
            selection.indices == MAX_ACTIVATION, logits.argmax(axis=1),
            selection.indices).astype(np.int32))
    points = analyzer._points(x)
    n = points.shape[0]
    flat = points.reshape((-1,) + x.shape[1:]).astype(np.float32)

    def finish(grads: np.ndarray) -> np.ndarray:
        mean = grads.reshape(points.shape).mean(axis=0)
        return analyzer._finish(x, mean).astype(np.float32)

    if selection.seeds is not None:
        return ReplicaStep((id(analyzer), "by_seed"), analyzer._backward_by_seed,
                           (flat, np.tile(selection.seeds, (n, 1))), finish)
    return ReplicaStep((id(analyzer), "by_index"), analyzer._backward_by_index,
                       (flat, np.tile(selection.indices, n)), finish)


def _two_seed_step(analyzer: _TwoSeedAnalyzer, x: np.ndarray, selection: Selection,
                   contrast: Any = None, return_parts: bool = False) -> ReplicaStep:
    if selection.seeds is not None:
        raise SelectionError(
            f"{type(analyzer).__name__} takes target indices, not seed arrays, as "
            "neuron_selection (the seeds are defined by the method)")
    codes = analyzer._contrast_codes(contrast, len(x))

    def fn(xs: tf.Tensor, target: tf.Tensor, code: tf.Tensor) -> tuple[tf.Tensor, ...]:
        parts = analyzer._backward(xs, target, code)
        difference, contrastive = analyzer._combine(parts[0], parts[1])
        return parts[0], parts[1], contrastive, difference

    def finish(out: tuple[np.ndarray, ...]) -> Any:
        explanation = ContrastiveExplanation(*out)
        return explanation if return_parts else explanation.contrastive

    return ReplicaStep((id(analyzer), "parts"), fn, (x, selection.indices, codes), finish)


def replica_step(analyzer: Analyzer, x: np.ndarray, selection: Selection,
                 **analyze_kwargs: Any) -> ReplicaStep | None:
    """The distributable split of ``analyzer._explain(x, selection, **analyze_kwargs)``.

    Args:
        analyzer: The analyzer.
        x: Validated float32 chunk.
        selection: Resolved selection of the chunk.
        **analyze_kwargs: Analyzer-specific ``analyze`` options.

    Returns:
        The ReplicaStep, or None if this analyzer class cannot be split.
    """
    hook = getattr(analyzer, "replica_step", None)
    if callable(hook):
        return hook(x, selection, **analyze_kwargs)
    if isinstance(analyzer, _TwoSeedAnalyzer):
        return _two_seed_step(analyzer, x, selection, **analyze_kwargs)
    if isinstance(analyzer, _AveragedGradient):
        return _averaged_step(analyzer, x, selection, **analyze_kwargs)
    if isinstance(analyzer, Propagation):
        return _propagation_step(analyzer, x, selection, **analyze_kwargs)
    return None


class DistributedRunner:
    """Runs analyzer chunks on every replica of a ``tf.distribute.Strategy``.

    Args:
        strategy: E.g. ``MirroredStrategy`` (one machine, several devices) or
            ``MultiWorkerMirroredStrategy`` (several machines; every worker must make the
            same calls with the same data, in the same order).
    """

    def __init__(self, strategy: tf.distribute.Strategy) -> None:
        self.strategy = strategy
        self.num_replicas = int(strategy.num_replicas_in_sync)
        self.local_devices = tuple(strategy.extended.worker_devices)
        self._compiled: dict[Hashable, Any] = {}
        self._warned = False

    @property
    def is_writer(self) -> bool:
        """True on the worker that should write files (the chief; always on one machine)."""
        return bool(self.strategy.extended.should_checkpoint)

    def _distribute(self, array: np.ndarray, rows: int) -> Any:
        local = self.local_devices

        def value(ctx: tf.distribute.experimental.ValueContext) -> tf.Tensor:
            replica = ctx.replica_id_in_sync_group
            with tf.device(local[replica % len(local)]):
                return tf.constant(array[replica * rows:(replica + 1) * rows])

        return self.strategy.experimental_distribute_values_from_function(value)

    def _compile(self, step: ReplicaStep) -> Any:
        compiled = self._compiled.get(step.key)
        if compiled is None:
            strategy, fn = self.strategy, step.fn

            @tf.function(reduce_retracing=True)
            def compiled(*args: Any) -> Any:
                outputs = strategy.run(fn, args=args)
                return tf.nest.map_structure(lambda o: strategy.gather(o, axis=0), outputs)

            self._compiled[step.key] = compiled
        return compiled

    def run_step(self, step: ReplicaStep) -> Any:
        """Runs one split chunk: rows spread over the replicas, outputs gathered in order.

        Args:
            step: The chunk's ReplicaStep.

        Returns:
            ``step.finish`` of the gathered outputs.
        """
        total = len(step.inputs[0])
        rows = max(1, -(-total // self.num_replicas))
        padded_total = rows * self.num_replicas
        distributed = []
        for array in step.inputs:
            if padded_total > total:
                array = np.concatenate(
                    [array, np.repeat(array[-1:], padded_total - total, axis=0)], axis=0)
            distributed.append(self._distribute(array, rows))
        out = self._compile(step)(*distributed)
        out = tf.nest.map_structure(lambda t: t.numpy()[:total], out)
        return step.finish(out)

    def analyze(self, analyzer: Analyzer | Any, x: Any, neuron_selection: Any,
                **analyze_kwargs: Any) -> Any:
        """Like ``analyzer.analyze(x, neuron_selection, **analyze_kwargs)``, on all replicas.

        Args:
            analyzer: The analyzer.
            x: One global batch (split over the replicas).
            neuron_selection: As for ``analyze``.
            **analyze_kwargs: Analyzer-specific ``analyze`` options.

        Returns:
            What ``analyze`` returns.
        """
        step = None
        if isinstance(analyzer, Analyzer):
            array, selection = prepare_input(analyzer, x, neuron_selection)
            if len(array) == 0:
                return analyzer._empty(array, **analyze_kwargs)
            step = replica_step(analyzer, array, selection, **analyze_kwargs)
        if step is None:
            if not self._warned:
                warnings.warn(
                    f"{type(analyzer).__name__} cannot be split over replicas; it runs on the "
                    "default device of every worker", RuntimeWarning, stacklevel=3)
                self._warned = True
            return analyzer.analyze(x, neuron_selection=neuron_selection, **analyze_kwargs)
        return self.run_step(step)

    def broadcast_from_chief(self, values: np.ndarray) -> np.ndarray:
        """Every worker gets the first replica's (the chief's) ``values``.

        Args:
            values: A float64 vector; only the chief's matters.

        Returns:
            The chief's vector, on every worker.
        """
        values = np.asarray(values, np.float64)
        local = self.local_devices

        def value(ctx: tf.distribute.experimental.ValueContext) -> tf.Tensor:
            replica = ctx.replica_id_in_sync_group
            with tf.device(local[replica % len(local)]):
                return tf.constant(values if replica == 0 else np.zeros_like(values))

        summed = self.strategy.reduce(
            tf.distribute.ReduceOp.SUM,
            self.strategy.experimental_distribute_values_from_function(value), axis=None)
        return np.asarray(summed)
