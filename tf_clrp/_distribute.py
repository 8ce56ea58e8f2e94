"""Running an analyzer's per-chunk computation under a ``tf.distribute.Strategy``.

An analyzer's chunk computation is split into three parts (a ``ReplicaStep``, from
``Analyzer.replica_step``): host-side inputs (numpy arrays whose first axis is the row axis),
a graph-traceable row-wise step function, and a host-side ``finish`` that turns the step's
outputs into what ``analyze`` returns. The rows are split evenly over the replicas (padded
with copies of the last row), the step runs through ``strategy.run`` inside one
``tf.function``, and ``strategy.gather`` collects the outputs in replica order on every
worker. Analyzers whose ``replica_step`` raises ``NotImplementedError`` (and objects that are
not tf_clrp analyzers) run unsplit on every worker.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp.analyzers.base import Analyzer, ReplicaStep


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
                return tf.constant(array[replica * rows : (replica + 1) * rows])

        return self.strategy.experimental_distribute_values_from_function(value)

    def _compile(self, step: ReplicaStep) -> Any:
        compiled = self._compiled.get(step.key)
        if compiled is None:
            # strategy.run calls a tf.function given to it with the per-replica values
            # themselves; trace its Python function in the replicas instead
            strategy = self.strategy
            fn = getattr(step.fn, "python_function", step.fn)

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
                    [array, np.repeat(array[-1:], padded_total - total, axis=0)], axis=0
                )
            distributed.append(self._distribute(array, rows))
        out = self._compile(step)(*distributed)
        out = tf.nest.map_structure(lambda t: t.numpy()[:total], out)
        return step.finish(out)

    def analyze(
        self, analyzer: Analyzer | Any, x: Any, neuron_selection: Any, **analyze_kwargs: Any
    ) -> Any:
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
            array, selection = analyzer.prepare(x, neuron_selection)
            if len(array) == 0:  # nothing to split
                return analyzer.analyze(array, neuron_selection=neuron_selection, **analyze_kwargs)
            try:
                step = analyzer.replica_step(array, selection, **analyze_kwargs)
            except NotImplementedError:
                step = None
        if step is None:
            if not self._warned:
                warnings.warn(
                    f"{type(analyzer).__name__} cannot be split over replicas; it runs on the "
                    "default device of every worker",
                    RuntimeWarning,
                    stacklevel=3,
                )
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
            self.strategy.experimental_distribute_values_from_function(value),
            axis=None,
        )
        return np.asarray(summed)
