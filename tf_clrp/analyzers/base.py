"""The analyzer base: model walking, input checks, selection and batching."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp import canonizers, checks, inputs
from tf_clrp.composites import Composite
from tf_clrp.errors import InputError, ModelStructureError
from tf_clrp.graph import Graph, trace_model
from tf_clrp.mirror import MirroredModel
from tf_clrp.selection import MAX_ACTIVATION, Selection, resolve_selection

StepOutput = tf.Tensor | tuple[tf.Tensor, ...]


@dataclass(frozen=True)
class ReplicaStep:
    """One chunk's computation, split so that its middle part can run on several replicas.

    ``Analyzer._explain`` runs it locally (``step.run()``); ``explain_dataset`` with a
    ``tf.distribute.Strategy`` spreads the rows of ``inputs`` over the replicas, runs ``fn``
    through ``strategy.run`` and gives the gathered outputs to ``finish``.

    Attributes:
        key: Identifies ``fn`` (a compiled distributed step is cached per key).
        fn: Graph-traceable, row-wise: output row i depends only on input row i of each input.
            Takes tensors, returns a tensor or a tuple of tensors, each with the row axis
            first. Usually the analyzer's compiled ``tf.function``; a distributed run
            traces its Python function inside its own ``tf.function``.
        inputs: Numpy arrays with the same number of rows (the first axis).
        finish: Host-side; takes the outputs (numpy, same structure as ``fn``'s) for all
            rows and returns what ``analyzer.analyze`` returns for the chunk.
    """

    key: Hashable
    fn: Callable[..., StepOutput]
    inputs: tuple[np.ndarray, ...]
    finish: Callable[[Any], Any]

    def run(self) -> Any:
        """Runs the whole step on the default device: ``finish(fn(*inputs))``."""
        outputs = self.fn(*(tf.constant(a) for a in self.inputs))
        return self.finish(tf.nest.map_structure(lambda t: t.numpy(), outputs))


def check_neuron_selection_unit(neuron_selection_unit: str) -> None:
    """Raises unless ``neuron_selection_unit`` is "unit" or "channel"."""
    if neuron_selection_unit not in ("unit", "channel"):
        raise ValueError(
            f"neuron_selection_unit={neuron_selection_unit!r}; use 'unit' or 'channel'"
        )


def selection_scores(y: tf.Tensor, channels: int | None = None) -> tf.Tensor:
    """The scores whose arg-max "max_activation" selects, per row of ``y`` (B, n).

    Args:
        y: Flattened output values (B, n).
        channels: If set, units are channels (the last axis of the unflattened output,
            n = positions × channels) scored by their sum over the positions.

    Returns:
        (B, n) or, with channels, (B, channels).
    """
    if channels is None:
        return y
    return tf.reduce_sum(tf.reshape(y, (tf.shape(y)[0], -1, channels)), axis=1)


def build_graph(
    model: Any,
    output_index: int | None = None,
    layer_name: str | None = None,
    canonizer_sequence: Sequence[canonizers.Canonizer] = canonizers.DEFAULT,
    input_name: str | None = None,
    traced: Graph | None = None,
) -> Graph:
    """Traces and canonizes a model for explanation.

    Args:
        model: A Keras model.
        output_index: Which output to explain if there are several.
        layer_name: Explain this layer's output instead of the model's (hidden neurons).
        canonizer_sequence: The canonizers to apply, in order (``canonizers.DEFAULT``; a
            composite's own are ``Composite.canonizers``).
        input_name: Which input to explain if there are several (see ``tf_clrp.inputs``).
        traced: ``trace_model(model, output_index, input_name)`` when the caller already
            walked the model (the walk is the expensive part).

    Returns:
        The canonical graph.
    """
    if traced is None:
        traced = trace_model(model, output_index, input_name)
    graph = inputs.at_embedding(traced)
    if layer_name is not None:
        graph = graph.at_layer(layer_name)
    return canonizers.canonize(graph, canonizer_sequence)


def check_input(x: Any, graph: Graph) -> np.ndarray:
    """Validates a batch against the model's input and returns it as float32.

    Integer images (e.g. uint8) are converted to float32 with their values unchanged, which
    is what the Keras model itself does with them; preprocessing stays the caller's job.

    Args:
        x: The batch.
        graph: The explained graph.

    Returns:
        A float32 numpy array.

    Raises:
        InputError: wrong rank or shape, non-numeric dtype, NaN/Inf values.
    """
    array = np.asarray(checks.as_float_array(x))
    if array.dtype.kind not in "fiub":
        raise InputError(f"input has dtype {array.dtype}; expected a numeric array")
    expected = tuple(graph.input_shape)
    if array.ndim != len(expected):
        raise InputError(
            f"input has shape {array.shape} (rank {array.ndim}) but model "
            f"{graph.model_name!r} expects rank {len(expected)}: (batch, "
            f"{', '.join(str(d) for d in expected[1:])}); add a batch axis for one sample"
        )
    for axis, (got, want) in enumerate(zip(array.shape[1:], expected[1:]), start=1):
        if want is not None and got != want:
            raise InputError(
                f"input has shape {array.shape} but model {graph.model_name!r} expects "
                f"{('batch',) + tuple(expected[1:])}: axis {axis} is {got}, not {want}"
            )
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int((~finite).sum())
        raise InputError(f"input contains {bad} NaN/Inf value(s); explanations need finite input")
    return array


def _canonizer_sequence(
    sequence: Sequence[canonizers.Canonizer] | None, fold_batch_norm: bool
) -> tuple[canonizers.Canonizer, ...]:
    """The canonizers an analyzer applies: ``sequence`` (default ``canonizers.DEFAULT``),
    without BatchNorm folding if ``fold_batch_norm`` is False."""
    chosen = tuple(canonizers.DEFAULT if sequence is None else sequence)
    return chosen if fold_batch_norm else canonizers.without(chosen, canonizers.fold_batch_norm)


class Analyzer:
    """Base class: explains one output (or a hidden layer) of a Keras model.

    Args:
        model: A Keras 3 functional or Sequential model (never modified).
        output_index: Which model output to explain if it has several.
        layer_name: Explain this (hidden) layer's output instead of the model output.
        neuron_selection_mode: iNNvestigate's default selection: "max_activation", "index"
            or "all" (used when ``analyze`` gets no ``neuron_selection``).
        batch_size: Default chunk size for ``analyze`` (None: the whole batch at once; else
            a whole number >= 1).
        fold_batch_norm: Fold BatchNormalization into the preceding linear layers (False
            drops ``canonizers.fold_batch_norm`` from ``canonizers``).
        canonizers: The graph rewrites to apply, in order (None: ``canonizers.DEFAULT``;
            rule-based analyzers pass their composite's).
        input_name: The explained input of a multi-input model (the others are fed through
            unchanged); an integer input feeding an Embedding is explained at the
            embedding's output (maps of shape (batch, tokens)). See ``tf_clrp.inputs``.
        precision: "float32" (default), "mixed" or "bfloat16". "bfloat16" runs the LRP
            rules' extra convolutions (denominators and transposed products) in bfloat16
            (faster on CPUs with bf16 units); "mixed" only the denominators. Dense layers
            and the relevance handed between layers stay float32. CLRP and SGLRP run their
            two passes in a contrast basis then (see ``CLRP``). Speed and agreement with
            float32 are measured in BENCHMARKS.md ("Accuracy of the reduced precisions").
    """

    #: Whether the analyzer threads fed inputs (the other inputs of a multi-input model).
    accepts_feeds = False

    def __init__(
        self,
        model: Any,
        *,
        output_index: int | None = None,
        layer_name: str | None = None,
        neuron_selection_mode: str = "max_activation",
        batch_size: int | None = None,
        fold_batch_norm: bool = True,
        precision: str = "float32",
        input_name: str | None = None,
        canonizers: Sequence[canonizers.Canonizer] | None = None,
        traced_graph: Graph | None = None,
    ) -> None:
        if neuron_selection_mode not in ("max_activation", "index", "all"):
            raise ValueError(
                f"neuron_selection_mode={neuron_selection_mode!r}; use 'max_activation', "
                "'index' or 'all'"
            )
        self.model = model
        self.precision = precision
        #: Registry name and options; ``create_analyzer`` sets them.
        self.name: str | None = None
        self.options: dict[str, Any] = {}
        self.neuron_selection_mode = neuron_selection_mode
        self.batch_size = checks.positive_count("batch_size", batch_size, allow_none=True)
        self.layer_name = layer_name
        self.graph = build_graph(
            model,
            output_index,
            layer_name,
            _canonizer_sequence(canonizers, fold_batch_norm),
            input_name,
            traced_graph,
        )
        if self.graph.feeds and not self.accepts_feeds:
            raise ModelStructureError(
                f"{type(self).__name__} does not yet explain models with several inputs "
                f"(model {self.graph.model_name!r} also takes "
                f"{[f.name for f in self.graph.feeds]}); the gradient family and the LRP "
                "analyzers do"
            )
        checks.check_finite_weights(self.graph)
        shape = [d for d in self.graph.output_shape[1:]]
        self.output_shape = tuple(shape)
        self.n_outputs = int(np.prod([d for d in shape if d is not None])) if shape else 1
        #: Compiled forward to the arg-max scores (see ``_compile_forward``), if any.
        self._forward: Callable[[tf.Tensor], tf.Tensor] | None = None

    # ------------------------------------------------------------------ public
    def analyze(
        self, x: Any, neuron_selection: Any = None, batch_size: int | None = None, **kwargs: Any
    ) -> Any:
        """Explains a batch.

        Args:
            x: Input batch, shape ``(batch, *model_input_shape)``.
            neuron_selection: "max_activation" (default), "all", an int, one int per sample,
                or a float seed array of the output's shape (the initial relevance).
            batch_size: Process the batch in chunks of this size (a whole number >= 1;
                None: the analyzer's ``batch_size``).
            **kwargs: Analyzer-specific options.

        Returns:
            A float32 numpy array with the shape of ``x``.

        Raises:
            NonFiniteError: a map came out NaN/Inf (the message names the samples and the
                first layer with non-finite weights or an overflowing output).
        """
        batch_size = checks.positive_count("batch_size", batch_size, allow_none=True)
        if self.graph.feeds or self.graph.embedding is not None:
            return inputs.analyze_fed(self, x, neuron_selection, batch_size, **kwargs)
        array, selection = self.prepare(x, neuron_selection)
        result = self._run_chunked(
            array, selection, self.batch_size if batch_size is None else batch_size, **kwargs
        )
        checks.check_finite_maps(result, self.graph, array)
        return result

    def prepare(self, x: Any, neuron_selection: Any = None) -> tuple[np.ndarray, Selection]:
        """Validates a batch and its selection exactly as ``analyze`` does.

        Args:
            x: Input batch, shape ``(batch, *model_input_shape)``.
            neuron_selection: As for ``analyze`` (None: the analyzer's
                ``neuron_selection_mode``).

        Returns:
            The float32 input and the resolved Selection ("max_activation" is left as the
            code -1; see ``resolve_max_activation``).

        Raises:
            InputError: the batch does not fit the model.
            SelectionError: the selection does not fit the batch or the output.
            ValueError: no selection for an analyzer made with neuron_selection_mode="index".
        """
        array = check_input(x, self.graph)
        if neuron_selection is None and self.neuron_selection_mode == "index":
            raise ValueError(
                "this analyzer was created with neuron_selection_mode='index': pass "
                "neuron_selection=<int or one int per sample> to analyze()"
            )
        if neuron_selection is None and self.neuron_selection_mode == "all":
            neuron_selection = "all"
        selection = resolve_selection(
            neuron_selection, len(array), self.n_outputs, self.output_shape
        )
        return array, selection

    def resolve_max_activation(
        self, x: np.ndarray, selection: Selection, feeds: tuple[np.ndarray, ...] = ()
    ) -> Selection:
        """Replaces the arg-max code (-1) by the index of the largest explained output.

        The output is the one the analyzer explains (its mirrored model's, without a
        stripped final softmax; per-channel sums for ``neuron_selection_unit="channel"``),
        so passing the returned indices to ``analyze`` gives the same maps as -1 (barring two
        outputs equal up to float rounding).

        Args:
            x: Validated float32 batch (from ``prepare``).
            selection: Its Selection (from ``prepare``).
            feeds: The model's other inputs for these rows (see ``tf_clrp.inputs``).

        Returns:
            A Selection without -1 entries; ``selection`` itself if it has none (seeds,
            "all", explicit indices).

        Raises:
            NotImplementedError: the analyzer cannot compute its output on its own.
        """
        if selection.indices is None:
            return selection
        chosen = selection.indices == MAX_ACTIVATION
        if not np.any(chosen):
            return selection
        scores = np.asarray(self._selection_scores(x, feeds))
        return Selection(
            indices=np.where(chosen, scores.argmax(axis=1), selection.indices).astype(np.int32)
        )

    def replica_step(
        self, x: np.ndarray, selection: Selection, **analyze_kwargs: Any
    ) -> ReplicaStep:
        """The split of one chunk's computation (what ``_explain`` runs), for distribution.

        Args:
            x: Validated float32 chunk (from ``prepare``), not empty.
            selection: Its Selection (from ``prepare``).
            **analyze_kwargs: Analyzer-specific ``analyze`` options.

        Returns:
            The ReplicaStep; ``step.run()`` returns what ``analyze`` returns for the chunk.

        Raises:
            NotImplementedError: this analyzer class cannot be split.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be split into a ReplicaStep")

    def _run_chunked(
        self, array: np.ndarray, selection: Selection, batch_size: int | None, **kwargs: Any
    ) -> Any:
        if len(array) == 0:
            return self._empty(array, **kwargs)
        size = len(array) if batch_size is None else batch_size
        parts = [
            self._explain(
                array[i : i + size],
                selection.chunk(i, i + size),
                **self.chunk_options(
                    kwargs, np.arange(i, min(i + size, len(array))), total=len(array)
                ),
            )
            for i in range(0, len(array), size)
        ]
        return self._concatenate(parts)

    def chunk_options(
        self, kwargs: dict[str, Any], index: np.ndarray, total: int | None = None
    ) -> dict[str, Any]:
        """The ``analyze`` options of the samples ``index`` of a larger batch or dataset.

        Options that hold one entry per sample are indexed here by the subclasses that take
        them (CLRP's per-sample ``contrast``); ``analyze`` and ``explain_dataset`` both call
        it. The default passes every option unchanged.

        Args:
            kwargs: The ``analyze`` options of the whole batch or dataset.
            index: Positions of this chunk's samples in it.
            total: Its number of samples, where known (a per-sample option must match it).
        """
        return kwargs

    # ------------------------------------------------------------------ subclass hooks
    def _explain(self, x: np.ndarray, selection: Selection, **kwargs: Any) -> Any:
        return self.replica_step(x, selection, **kwargs).run()

    def _selection_scores(self, x: np.ndarray, feeds: tuple[np.ndarray, ...] = ()) -> Any:
        """(batch, n_outputs) scores of ``x`` whose arg-max "max_activation" selects."""
        if self._forward is None:
            raise NotImplementedError(
                f"{type(self).__name__} cannot compute its explained output on its own"
            )
        return self._forward(tf.constant(x), *(tf.constant(f) for f in feeds)).numpy()

    def _compile_forward(
        self,
        mirror: MirroredModel,
        channels: int | None,
        columns: int | None = None,
        use_tf_function: bool = True,
    ) -> Callable[[tf.Tensor], tf.Tensor]:
        """A (compiled) forward of ``mirror`` returning the ``selection_scores``.

        Args:
            mirror: The mirrored model whose output is explained.
            channels: Units are channels (see ``selection_scores``).
            columns: Keep only the first ``columns`` flat outputs (drops virtual outputs).
            use_tf_function: Compile it (one trace: the batch axis is left open).
        """

        def forward(x: tf.Tensor, *feeds: tf.Tensor) -> tf.Tensor:
            y = mirror(x, feeds)
            y = tf.reshape(y, (tf.shape(y)[0], -1))
            if columns is not None:
                y = y[:, :columns]
            return selection_scores(y, channels)

        if not use_tf_function:
            return forward
        spec = tf.TensorSpec((None, *self.graph.input_shape[1:]), tf.float32)
        return tf.function(forward, input_signature=[spec, *inputs.feed_specs(self.graph)])

    def _empty(self, x: np.ndarray, **kwargs: Any) -> Any:
        return np.zeros_like(x, dtype=np.float32)

    @staticmethod
    def _concatenate(parts: list[Any]) -> Any:
        return np.concatenate(parts, axis=0)

    def _mirror(self, composite: Composite) -> MirroredModel:
        return MirroredModel(self.graph, composite, self.precision)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.graph.model_name!r})"
