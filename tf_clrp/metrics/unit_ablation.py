"""Unit ablation: zero one hidden unit (channel) at a time and measure every class score.

The model is split at the named layer without being modified. Its canonical graph (see
``tf_clrp.graph``; nested models are inlined) is evaluated once on the clean batch, storing the
layer's output and every other tensor the rest of the graph needs (the "frontier", e.g. a skip
connection that bypasses the layer); then only the nodes downstream of the layer are
re-evaluated on the modified tensor. Both passes are compiled with ``tf.function``. This works
for any directed acyclic functional graph.

Limits (a clear ``ValueError`` is raised): the layer must be called exactly once (a layer of a
nested sub-model is found by its own name or ``"outer/inner"``; shared layers, including layers
of a sub-model called several times, are ambiguous), must have a single output, must not be the
model's output layer, and the model must be functional or a built Sequential model with a single
input and output. Units are indices along the last (channels-last) axis of the layer's output.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_clrp._io import ProgressArg, progress_iter
from tf_clrp.graph import Node
from tf_clrp.metrics._common import average_ranks, chunks, pearson
from tf_clrp.metrics._keras import CanonicalModel, batch_spec, compile_nodes


def _split(net: CanonicalModel, layer_name: str) -> tuple[int, list[Node], list[int]]:
    """Return (layer output tensor id, downstream nodes, frontier tensor ids) for a layer."""
    node = net.traced.find(layer_name)
    calls = [n for n in net.traced.nodes if n.op is node.op]
    if len(calls) > 1:
        raise ValueError(f"layer {layer_name!r} is called {len(calls)} times (shared); ambiguous")
    if len(node.outputs) != 1:
        raise ValueError(f"layer {layer_name!r} has {len(node.outputs)} outputs; need one")
    target = node.outputs[0]
    if target == net.traced.output_id:
        raise ValueError(f"layer {layer_name!r} is the model's output layer; nothing to ablate")
    graph = net.graph
    producer = graph.producer().get(target)
    start = graph.nodes.index(producer) + 1 if producer is not None else 0
    dependent = {target}
    downstream = []
    for n in graph.nodes[start:]:
        if dependent.intersection(n.inputs):
            downstream.append(n)
            dependent.update(n.outputs)
    if graph.output_id not in dependent:
        raise ValueError(f"the model's output does not depend on layer {layer_name!r}")
    frontier = list(dict.fromkeys(t for n in downstream for t in n.inputs if t not in dependent))
    return target, downstream, frontier


def unit_ablation(
    model: keras.Model,
    x: Any,
    layer_name: str,
    units: Any = None,
    batch_size: int = 64,
    logits: bool = True,
    progress: ProgressArg = False,
) -> np.ndarray:
    """Change of every class score when one unit of a hidden layer is set to zero.

    Args:
        model: functional or built Sequential Keras model (not modified).
        x: input batch (N, ...), one model input.
        layer_name: name of the layer whose output units are ablated (a layer of a nested
            sub-model: its own name or ``"outer/inner"``).
        units: indices along the layer output's last axis (default: all).
        batch_size: rows per model call; ablated copies of several units share a call.
        logits: score = pre-activation of a final softmax/sigmoid layer (default) instead
            of the probabilities.
        progress: False, True (tqdm bar if installed) or a callable ``(done, total)``.

    Returns:
        float64 array (n_units, N, n_classes): ``score(x | unit u zeroed) - score(x)``.
        Negative entries mean the unit supported that class.
    """
    net = CanonicalModel(model, logits=logits)
    graph = net.graph
    target, downstream, frontier = _split(net, layer_name)
    x = np.asarray(x)
    n = len(x)
    keep = [target, *frontier, graph.output_id]
    clean_pass = compile_nodes(graph.nodes, [graph.input_id], keep, [net.input_spec])
    cache: list[list[np.ndarray]] = [[] for _ in keep]
    for s in chunks(n, batch_size):
        for store, value in zip(cache, clean_pass(net.as_input(x[s]))):
            store.append(value.numpy())
    h, *front, clean = (np.concatenate(c, axis=0) for c in cache)
    resume = compile_nodes(
        downstream,
        [target, *frontier],
        [graph.output_id],
        [batch_spec(a.shape, a.dtype) for a in (h, *front)],
    )
    n_channels = h.shape[-1]
    units = np.arange(n_channels) if units is None else np.atleast_1d(np.asarray(units, int))
    if units.size and (units.min() < -n_channels or units.max() >= n_channels):
        raise ValueError(f"units must lie in [0, {n_channels}), got {units}")
    units = units % n_channels
    out = np.empty((len(units), n, clean.shape[-1]), dtype=np.float64)
    rows = len(units) * n
    pieces = list(chunks(rows, batch_size))
    for s in progress_iter(pieces, len(pieces), progress, "unit ablation"):
        r = np.arange(s.start, s.stop)
        u_idx, sample = r // n, r % n
        mask = np.ones((len(r), n_channels), dtype=h.dtype)
        mask[np.arange(len(r)), units[u_idx]] = 0
        mask = mask.reshape((len(r),) + (1,) * (h.ndim - 2) + (n_channels,))
        inputs = [h[sample] * mask, *(v[sample] for v in front)]
        scores = resume(*(tf.convert_to_tensor(v) for v in inputs))[0].numpy()
        out[u_idx, sample] = scores.astype(np.float64) - clean[sample]
    return out


def unit_relevance(layer_relevance: Any) -> np.ndarray:
    """Sum a layer's relevance over all but the batch and channel axes.

    Args:
        layer_relevance: array (N, ..., C) of relevance at a layer's output.

    Returns:
        float64 array (C, N): relevance per unit and sample, ordered like
        :func:`unit_ablation`'s first two axes.
    """
    r = np.asarray(layer_relevance, dtype=np.float64)
    if r.ndim < 2:
        raise ValueError(f"expected (N, ..., C), got shape {r.shape}")
    return r.reshape(r.shape[0], -1, r.shape[-1]).sum(axis=1).T


def rank_agreement(ablation_effect: Any, relevance_per_unit: Any) -> Any:
    """Spearman correlation between the score drop of ablating a unit and its relevance.

    ρ = Pearson(rank(−Δ), rank(R)) with average ranks for ties, where Δ is the score change
    returned by :func:`unit_ablation` for one class. ρ = 1: the more relevance an explanation
    gives a unit, the more the score falls when the unit is removed.

    Args:
        ablation_effect: Δ of shape (n_units,) or (n_units, N), e.g. ``effect[:, :, c]``.
        relevance_per_unit: relevance of the same shape (see :func:`unit_relevance`).

    Returns:
        A float for 1-D input, else an array (N,) with one ρ per sample (NaN if constant).
    """
    a = np.asarray(ablation_effect, dtype=np.float64)
    b = np.asarray(relevance_per_unit, dtype=np.float64)
    if a.shape != b.shape or a.ndim not in (1, 2):
        raise ValueError(
            f"shapes must match and be (n_units,) or (n_units, N): {a.shape}, {b.shape}"
        )
    if a.ndim == 1:
        return pearson(average_ranks(-a), average_ranks(b))
    return np.array(
        [pearson(average_ranks(-a[:, i]), average_ranks(b[:, i])) for i in range(a.shape[1])]
    )
