"""The analyzer base: model walking, input checks, selection and batching."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp import canonizers
from tf_clrp.composites import Composite
from tf_clrp.errors import InputError
from tf_clrp.graph import Graph, trace_model
from tf_clrp.mirror import MirroredModel
from tf_clrp.selection import Selection, resolve_selection


def build_graph(model: Any, output_index: int | None = None, layer_name: str | None = None,
                fold_batch_norm: bool = True) -> Graph:
    """Traces and canonizes a model for explanation.

    Args:
        model: A Keras functional or Sequential model.
        output_index: Which output to explain if there are several.
        layer_name: Explain this layer's output instead of the model's (hidden neurons).
        fold_batch_norm: Fold BatchNormalization into the preceding linear layers.

    Returns:
        The canonical graph.
    """
    graph = trace_model(model, output_index)
    if layer_name is not None:
        node = graph.find(layer_name)
        graph = graph.truncated(node.outputs[0])
    return canonizers.canonize(graph, strip_output=layer_name is None, fold_bn=fold_batch_norm)


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
    if isinstance(x, tf.Tensor):
        x = x.numpy()
    array = np.asarray(x)
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


class Analyzer:
    """Base class: explains one output (or a hidden layer) of a Keras model.

    Args:
        model: A Keras 3 functional or Sequential model (never modified).
        output_index: Which model output to explain if it has several.
        layer_name: Explain this (hidden) layer's output instead of the model output.
        neuron_selection_mode: iNNvestigate's default selection: "max_activation", "index"
            or "all" (used when ``analyze`` gets no ``neuron_selection``).
        batch_size: Default chunk size for ``analyze`` (None: the whole batch at once).
    """

    def __init__(self, model: Any, *, output_index: int | None = None,
                 layer_name: str | None = None, neuron_selection_mode: str = "max_activation",
                 batch_size: int | None = None, fold_batch_norm: bool = True) -> None:
        if neuron_selection_mode not in ("max_activation", "index", "all"):
            raise ValueError(
                f"neuron_selection_mode={neuron_selection_mode!r}; use 'max_activation', "
                "'index' or 'all'"
            )
        self.model = model
        self.neuron_selection_mode = neuron_selection_mode
        self.batch_size = batch_size
        self.layer_name = layer_name
        self.graph = build_graph(model, output_index, layer_name, fold_batch_norm)
        shape = [d for d in self.graph.output_shape[1:]]
        self.output_shape = tuple(shape)
        self.n_outputs = int(np.prod([d for d in shape if d is not None])) if shape else 1

    # ------------------------------------------------------------------ public
    def analyze(self, x: Any, neuron_selection: Any = None, batch_size: int | None = None,
                **kwargs: Any) -> Any:
        """Explains a batch.

        Args:
            x: Input batch, shape ``(batch, *model_input_shape)``.
            neuron_selection: "max_activation" (default), "all", an int, one int per sample,
                or a float seed array of the output's shape (the initial relevance).
            batch_size: Process the batch in chunks of this size.
            **kwargs: Analyzer-specific options.

        Returns:
            A float32 numpy array with the shape of ``x``.
        """
        array = check_input(x, self.graph)
        if neuron_selection is None and self.neuron_selection_mode == "index":
            raise ValueError(
                "this analyzer was created with neuron_selection_mode='index': pass "
                "neuron_selection=<int or one int per sample> to analyze()"
            )
        if neuron_selection is None and self.neuron_selection_mode == "all":
            neuron_selection = "all"
        selection = resolve_selection(neuron_selection, len(array), self.n_outputs,
                                      self.output_shape)
        return self._run_chunked(array, selection, batch_size or self.batch_size, **kwargs)

    def _run_chunked(self, array: np.ndarray, selection: Selection, batch_size: int | None,
                     **kwargs: Any) -> Any:
        if len(array) == 0:
            return self._empty(array, **kwargs)
        size = batch_size or len(array)
        if size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        parts = [
            self._explain(array[i:i + size], selection.chunk(i, i + size), **kwargs)
            for i in range(0, len(array), size)
        ]
        return self._concatenate(parts)

    # ------------------------------------------------------------------ subclass hooks
    def _explain(self, x: np.ndarray, selection: Selection, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _empty(self, x: np.ndarray, **kwargs: Any) -> Any:
        return np.zeros_like(x, dtype=np.float32)

    @staticmethod
    def _concatenate(parts: list[Any]) -> Any:
        return np.concatenate(parts, axis=0)

    def _mirror(self, composite: Composite) -> MirroredModel:
        return MirroredModel(self.graph, composite)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.graph.model_name!r})"
