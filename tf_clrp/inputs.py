"""Several inputs and token inputs: which model input is explained and how a batch splits.

A multi-input model is explained for one named input (``input_name``); its other inputs
(segment ids, padding masks, ...) are *feeds*: handed to the model unchanged, never
explained. An integer input that feeds an ``Embedding`` (token ids) is explained at the
embedding's output: the analyzers see the embedded tokens (batch, tokens, dim) as their input,
and the maps are summed over the embedding axis to (batch, tokens), with padding positions
set to exactly 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp import _compat
from tf_clrp.errors import InputError, ModelStructureError
from tf_clrp.graph import Graph, ModelInput, Node, new_tensor_id
from tf_clrp.tracing import SHAPE_ONLY

#: The model input whose zeros mark padding tokens (keras_hub's convention), besides an
#: ``Embedding(mask_zero=True)``.
PADDING_MASK_INPUT = "padding_mask"


@dataclass(frozen=True)
class SplitBatch:
    """A user's batch split by role.

    Attributes:
        explained: The explained input as given (token ids for a token input).
        feeds: The other inputs, one per ``graph.feeds``, in the model's dtypes.
        token_mask: (batch, tokens) bool, False at padding positions; None if unknown.
    """

    explained: np.ndarray
    feeds: tuple[np.ndarray, ...]
    token_mask: np.ndarray | None


def feed_specs(graph: Graph) -> list[tf.TensorSpec]:
    """TensorSpecs of the fed inputs (batch axis open), for compiled functions."""
    return [tf.TensorSpec((None, *fed.shape[1:]), tf.as_dtype(fed.dtype)) for fed in graph.feeds]


def at_embedding(graph: Graph) -> Graph:
    """For an integer explained input: the graph explained at its Embedding's output.

    Args:
        graph: A traced graph.

    Returns:
        ``graph`` itself for a float input; else a graph whose input is the embedding output,
        with the Embedding call in ``graph.embedding`` and the token ids fed through if other
        layers read them too (or the embedding's ``mask_zero`` mask is needed).

    Raises:
        ModelStructureError: the integer input does not feed exactly one Embedding.
    """
    chosen = next((m for m in graph.model_inputs if m.id == graph.input_id), None)
    if chosen is None or not chosen.is_integer:
        return graph
    readers = graph.consumers().get(graph.input_id, [])
    embeddings = [n for n in readers if n.group == "embedding" and n.untraced != SHAPE_ONLY]
    if len(embeddings) != 1:
        found = (
            "no Embedding"
            if not embeddings
            else (f"{len(embeddings)} Embedding layers ({', '.join(n.name for n in embeddings)})")
        )
        raise ModelStructureError(
            f"input {chosen.name!r} of model {graph.model_name!r} has integer dtype "
            f"{chosen.dtype} and feeds {found}: tf_clrp explains an integer input (token ids) "
            "at the output of the one Embedding layer it feeds; explain a float input "
            "instead (input_name=...)"
        )
    embedding = embeddings[0]
    embedded = embedding.outputs[0]
    nodes = [n for n in graph.nodes if n is not embedding]
    if getattr(embedding.op, "mask_zero", False):
        nodes = _with_mask_node(nodes, embedding, graph.input_id)
    reads_ids = any(graph.input_id in n.inputs for n in nodes)
    return replace(
        graph,
        nodes=nodes,
        input_id=embedded,
        input_shape=graph.shapes[embedded],
        feeds=graph.feeds + ((chosen,) if reads_ids else ()),
        embedding=embedding,
    )


def _with_mask_node(nodes: list[Node], embedding: Node, ids: int) -> list[Node]:
    """Re-attaches the Embedding's ``mask_zero`` mask to the explained tensor (the layers
    after it read the mask from the tensor, as in the Keras model)."""
    embedded, masked = embedding.outputs[0], new_tensor_id()

    def run(values: list[tf.Tensor]) -> list[tf.Tensor]:
        mask = embedding.op.compute_mask(values[1])
        return [_compat.with_keras_mask(tf.identity(values[0]), mask)]

    mask_node = Node(
        name=f"{embedding.name}/mask",
        op=None,
        group="reshape",
        inputs=(embedded, ids),
        outputs=(masked,),
        run=run,
    )
    rewired = [
        n.evolve(inputs=tuple(masked if t == embedded else t for t in n.inputs)) for n in nodes
    ]
    return [mask_node, *rewired]


def _as_named(x: Any, graph: Graph) -> dict[str, Any]:
    names = [m.name for m in graph.model_inputs]
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        unknown = [str(k) for k in x if k not in names]
        if missing or unknown:
            problem = (
                f"is missing input(s) {missing}" if missing else f"has unknown key(s) {unknown}"
            )
            raise InputError(f"the input dict {problem}; model {graph.model_name!r} takes {names}")
        return dict(x)
    if isinstance(x, (list, tuple)) and len(names) > 1:
        if len(x) != len(names):
            raise InputError(
                f"got a list of {len(x)} arrays but model {graph.model_name!r} takes "
                f"{len(names)} inputs, in this order: {names}"
            )
        return dict(zip(names, x))
    if len(names) > 1:
        raise InputError(
            f"model {graph.model_name!r} takes {len(names)} inputs {names}: pass a dict "
            "{name: array} or a list in that order"
        )
    return {names[0]: x}


def _checked(value: Any, model_input: ModelInput, model_name: str) -> np.ndarray:
    array = value.numpy() if isinstance(value, tf.Tensor) else np.asarray(value)
    expected = model_input.shape
    if array.dtype.kind not in "fiub":
        raise InputError(f"input {model_input.name!r} has dtype {array.dtype}; expected numbers")
    if array.ndim != len(expected) or any(
        want is not None and got != want for got, want in zip(array.shape[1:], expected[1:])
    ):
        raise InputError(
            f"input {model_input.name!r} has shape {array.shape} but model {model_name!r} "
            f"expects {('batch', *expected[1:])}"
        )
    if model_input.is_integer:
        if array.dtype.kind == "f" and not np.all(array == np.round(array)):
            raise InputError(
                f"input {model_input.name!r} is an integer input ({model_input.dtype}) but "
                "got non-integer values"
            )
        return array.astype(model_input.dtype)
    return array.astype(np.float32, copy=False)


def split_batch(x: Any, graph: Graph) -> SplitBatch:
    """Validates a batch (the array, dict or list the model takes) and splits it by role.

    Args:
        x: One array (single-input models), a dict {input name: array} or a list of arrays
            in the order of ``model.inputs``.
        graph: The explained graph.

    Returns:
        The SplitBatch.

    Raises:
        InputError: a missing or unknown input, wrong shapes, unequal batch sizes, token ids
            outside the Embedding's vocabulary.
    """
    named = _as_named(x, graph)
    arrays = {m.name: _checked(named[m.name], m, graph.model_name) for m in graph.model_inputs}
    sizes = {name: len(a) for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise InputError(f"inputs have different batch sizes: {sizes}")
    explained = arrays[graph.explained_input]
    mask = None
    if graph.embedding is not None:
        _check_token_ids(explained, graph)
        mask = _token_mask(explained, arrays, graph)
    return SplitBatch(explained, tuple(arrays[f.name] for f in graph.feeds), mask)


def _check_token_ids(ids: np.ndarray, graph: Graph) -> None:
    vocabulary = getattr(graph.embedding.op, "input_dim", None)
    if vocabulary is None or ids.size == 0:
        return
    bad = (ids < 0) | (ids >= vocabulary)
    if bad.any():
        row, position = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"input {graph.explained_input!r}: token id {int(ids[row, position])} at sample "
            f"{row}, position {position} is outside the vocabulary of Embedding "
            f"{graph.embedding.name!r} (0..{vocabulary - 1})"
        )


def _token_mask(ids: np.ndarray, arrays: dict[str, np.ndarray], graph: Graph) -> np.ndarray | None:
    if getattr(graph.embedding.op, "mask_zero", False):
        return ids != 0
    padding = arrays.get(PADDING_MASK_INPUT)
    if padding is not None and padding.shape == ids.shape:
        return padding.astype(bool)
    return None


def embed(graph: Graph, ids: np.ndarray) -> np.ndarray:
    """The Embedding output of token ids, float32 (the explained tensor of a token input)."""
    assert graph.embedding is not None
    output = graph.embedding.run([tf.constant(ids)])[0]
    return tf.cast(output, tf.float32).numpy()


def token_map(result: Any, token_mask: np.ndarray | None) -> Any:
    """Sums maps at the embedding output over the embedding axis and zeroes padding.

    Args:
        result: (batch, tokens, dim) array, or a dataclass of such arrays.
        token_mask: (batch, tokens) bool, False at padding; None: no padding known.

    Returns:
        (batch, tokens) float32 arrays in the same structure.
    """
    if dataclasses.is_dataclass(result):
        return replace(
            result,
            **{
                f.name: token_map(getattr(result, f.name), token_mask)
                for f in dataclasses.fields(result)
            },
        )
    summed = np.asarray(result, dtype=np.float32).sum(axis=-1)
    if token_mask is not None:
        summed = np.where(token_mask, summed, np.float32(0.0))
    return summed.astype(np.float32)


def analyze_fed(
    analyzer: Any,
    x: Any,
    neuron_selection: Any = None,
    batch_size: int | None = None,
    **kwargs: Any,
) -> Any:
    """``analyzer.analyze`` for a model with fed inputs or a token input.

    Args:
        analyzer: An engine analyzer whose graph has feeds or an embedding.
        x: The batch as the model takes it (array, dict or list).
        neuron_selection: As for ``analyze``.
        batch_size: Chunk size.
        **kwargs: Analyzer-specific options.

    Returns:
        The maps of the explained input ((batch, tokens) for token inputs).
    """
    graph = analyzer.graph
    batch = split_batch(x, graph)
    explained = embed(graph, batch.explained) if graph.embedding is not None else batch.explained
    array, selection = analyzer.prepare(explained, neuron_selection)
    if len(array) == 0:
        result = analyzer._empty(array, **kwargs)
    else:
        size = batch_size or analyzer.batch_size or len(array)
        if size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        parts = []
        for start in range(0, len(array), size):
            stop = min(start + size, len(array))
            options = analyzer.chunk_options(kwargs, np.arange(start, stop), total=len(array))
            if graph.feeds:
                options = {**options, "feeds": tuple(f[start:stop] for f in batch.feeds)}
            parts.append(
                analyzer._explain(array[start:stop], selection.chunk(start, stop), **options)
            )
        result = analyzer._concatenate(parts)
    return token_map(result, batch.token_mask) if graph.embedding is not None else result
