"""Attention as AttnLRP sees it: scores, softmax and weighted values as separate nodes.

Keras 3's ``MultiHeadAttention`` (without dropout) calls ``ops.dot_product_attention``, one
fused op computing softmax(scale·Q·Kᵀ, mask)·V. AttnLRP gives its three steps three rules,
so ``split_attention`` (a canonizer: ``Graph -> Graph``, same function) replaces each fused
node by

* ``<name>/scores``: scale·Q·Kᵀ (group ``BILINEAR``), op :class:`AttentionScores`;
* ``<name>/softmax``: the masked softmax over keys (group ``SOFTMAX``), op
  :class:`AttentionSoftmax`;
* ``<name>/values``: A·V (group ``ATTENTION_VALUES``, the weights first), op
  :class:`AttentionValues`.

The split is checked once per node on a random probe against the fused op itself (a custom
``scale`` or an additive bias would not match: the layer is refused, never explained
wrongly). Attention written with explicit ops (keras_hub's BERT, ``MultiHeadAttention``
with dropout: einsum, ``Softmax(scores, mask)``, einsum) is marked the same way: its softmax
nodes join ``SOFTMAX`` and a product of a softmax's output (through dropout or reshapes)
with another activation joins ``ATTENTION_VALUES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tf_clrp import layers
from tf_clrp.errors import UnsupportedLayerError
from tf_clrp.graph import Graph, Node, new_tensor_id
from tf_clrp.layers import Group

#: The score given to masked keys (Keras' fused attention uses a large negative number too).
MASKED_SCORE = -1e9

#: Probe lengths (queries, keys) for sequence axes whose length is not static.
_PROBE_QUERIES, _PROBE_KEYS = 3, 4


def _repeat_heads(x: tf.Tensor, heads: int | None) -> tf.Tensor:
    """Grouped-query attention: repeats key/value heads up to the query's ``heads``."""
    kv_heads = x.shape[2]
    if heads is None or kv_heads is None or heads <= kv_heads or kv_heads <= 1:
        return x
    return tf.repeat(x, heads // kv_heads, axis=2)


@dataclass(frozen=True)
class AttentionScores:
    """scale · Q·Kᵀ: (B, T, N, H), (B, S, N, H) -> (B, N, T, S).

    Attributes:
        name: The fused op's node name (for messages).
        scale: The score scale (1/√H in Keras' MultiHeadAttention and by default).
    """

    name: str
    scale: float

    def __call__(self, query: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
        key = _repeat_heads(key, query.shape[2])
        # (B, N, T, H)·(B, N, S, H)ᵀ as one batched MatMul (einsum is slower on CPU)
        query, key = tf.transpose(query, (0, 2, 1, 3)), tf.transpose(key, (0, 2, 1, 3))
        return tf.matmul(query, key, transpose_b=True) * self.scale


@dataclass(frozen=True)
class AttentionSoftmax:
    """The softmax over keys, masked keys (and future keys if ``causal``) excluded.

    Attributes:
        name: The fused op's node name.
        causal: Mask future keys.
        axis: The softmax axis.
    """

    name: str
    causal: bool = False
    axis: int = -1

    def keep(self, scores: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor | None:
        """Boolean map of the scores that take part (None: all of them)."""
        keep = None if mask is None else tf.cast(mask, tf.bool)
        if self.causal:
            t, s = tf.shape(scores)[-2], tf.shape(scores)[-1]
            causal = tf.linalg.band_part(tf.ones((t, s), tf.bool), -1, 0)
            keep = causal if keep is None else tf.logical_and(keep, causal)
        return None if keep is None else tf.broadcast_to(keep, tf.shape(scores))

    def __call__(self, scores: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        keep = self.keep(scores, mask)
        if keep is not None:
            scores = tf.where(keep, scores, tf.constant(MASKED_SCORE, scores.dtype))
        return tf.nn.softmax(scores, axis=self.axis)


@dataclass(frozen=True)
class AttentionValues:
    """A·V: (B, N, T, S), (B, S, N, H) -> (B, T, N, H)."""

    name: str

    def __call__(self, weights: tf.Tensor, value: tf.Tensor) -> tf.Tensor:
        value = _repeat_heads(value, weights.shape[1])
        attended = tf.matmul(weights, tf.transpose(value, (0, 2, 1, 3)))  # (B, N, T, H)
        return tf.transpose(attended, (0, 2, 1, 3))


def _float(values: list[tf.Tensor]) -> list[tf.Tensor]:
    return [tf.cast(v, tf.float32) if v.dtype.is_floating else v for v in values]


def _probe(node: Node, graph: Graph) -> list[np.ndarray]:
    """Random concrete inputs for a fused attention node (batch 1, a random boolean mask)."""
    rng = np.random.default_rng(0)
    q_shape, k_shape = graph.shapes.get(node.inputs[0], ()), graph.shapes.get(node.inputs[1], ())
    v_shape = graph.shapes.get(node.inputs[2], ())
    if len(q_shape) != 4 or len(k_shape) != 4 or len(v_shape) != 4:
        raise UnsupportedLayerError(
            f"AttnLRP: the fused attention {node.name!r} has inputs of shapes "
            f"{q_shape}, {k_shape}, {v_shape}; (batch, tokens, heads, dim) was expected"
        )
    mask_shape = graph.shapes.get(node.inputs[3], ()) if len(node.inputs) == 4 else ()
    t = q_shape[1] or (mask_shape[-2] if len(mask_shape) == 4 and mask_shape[-2] else None)
    s = k_shape[1] or (mask_shape[-1] if len(mask_shape) == 4 and mask_shape[-1] else None)
    t, s = t or _PROBE_QUERIES, s or _PROBE_KEYS
    q = rng.standard_normal((1, t, *q_shape[2:])).astype(np.float32)
    k = rng.standard_normal((1, s, *k_shape[2:])).astype(np.float32)
    v = rng.standard_normal((1, s, *v_shape[2:])).astype(np.float32)
    probe = [q, k, v]
    if len(node.inputs) == 4:
        if len(mask_shape) != 4:
            raise UnsupportedLayerError(
                f"AttnLRP: the fused attention {node.name!r} takes a fourth tensor of shape "
                f"{mask_shape}; only a (batch, heads, queries, keys) boolean mask is supported"
            )
        full = [1, mask_shape[1] or 1, t, s]
        mask = rng.random(full) > 0.4
        mask[..., 0] = True  # every query keeps a key
        probe.append(mask)
    return probe


def _split(node: Node, graph: Graph) -> list[Node]:
    """The three nodes of one fused attention node (checked against it on a probe)."""
    op = node.op
    if len(node.inputs) not in (3, 4):
        raise UnsupportedLayerError(
            f"AttnLRP: the fused attention {node.name!r} takes {len(node.inputs)} tensors; "
            "query, key, value and an optional boolean mask are supported (not an additive "
            "attention bias)"
        )
    head_dim = graph.shapes.get(node.inputs[0], (None,))[-1]
    if head_dim is None:
        raise UnsupportedLayerError(
            f"AttnLRP: the head size of the fused attention {node.name!r} is not static"
        )
    scores = AttentionScores(node.name, 1.0 / math.sqrt(float(head_dim)))
    softmax = AttentionSoftmax(node.name, causal=bool(getattr(op, "is_causal", False)))
    values = AttentionValues(node.name)
    probe = _probe(node, graph)
    try:
        expected = np.asarray(node.run([tf.constant(p) for p in probe])[0], np.float64)
    except Exception as error:  # noqa: BLE001 - the probe's mask is not what the op takes
        raise UnsupportedLayerError(
            f"AttnLRP cannot split the fused attention {node.name!r}: it does not run on "
            f"(query, key, value, boolean mask) ({type(error).__name__}: {error})"
        ) from error
    mask = tf.constant(probe[3]) if len(probe) == 4 else None
    q, k, v = (tf.constant(p) for p in probe[:3])
    got = np.asarray(values(softmax(scores(q, k), mask), v), np.float64)
    gap = float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-12))
    if got.shape != expected.shape or gap > 1e-4:
        raise UnsupportedLayerError(
            f"AttnLRP cannot split the fused attention {node.name!r}: softmax(Q·Kᵀ/√"
            f"{head_dim}, mask)·V differs from the op's output by {gap:.2g} (relative) on a "
            "probe (a custom scale, an attention bias or a logit soft cap?)"
        )

    score_id, weight_id = new_tensor_id(), new_tensor_id()
    mask_in = node.inputs[3:]

    def run_scores(xs: list[tf.Tensor]) -> list[tf.Tensor]:
        return [scores(*_float(xs))]

    def run_softmax(xs: list[tf.Tensor]) -> list[tf.Tensor]:
        return [softmax(tf.cast(xs[0], tf.float32), xs[1] if len(xs) > 1 else None)]

    def run_values(xs: list[tf.Tensor]) -> list[tf.Tensor]:
        return [values(*_float(xs))]

    common = {"within": node.within}
    return [
        Node(
            f"{node.name}/scores",
            scores,
            Group.BILINEAR,
            node.inputs[:2],
            (score_id,),
            run_scores,
            **common,
        ),
        Node(
            f"{node.name}/softmax",
            softmax,
            Group.SOFTMAX,
            (score_id, *mask_in),
            (weight_id,),
            run_softmax,
            activation="softmax",
            **common,
        ),
        Node(
            f"{node.name}/values",
            values,
            Group.ATTENTION_VALUES,
            (weight_id, node.inputs[2]),
            node.outputs,
            run_values,
            **common,
        ),
    ]


def _is_softmax(node: Node) -> bool:
    """A softmax node of the walk (a Softmax layer or ``ops.softmax``, masked or not)."""
    if node.group is Group.ACTIVATION:
        return node.activation == "softmax"
    return (
        node.group is Group.MASKED_ACTIVATION
        and node.op is not None
        and layers.activation_of(node.op) == "softmax"
    )


def split_attention(graph: Graph) -> Graph:
    """Splits fused attention into scores, softmax and A·V; marks explicit attention.

    Args:
        graph: A canonical graph (after ``canonizers.DEFAULT``).

    Returns:
        The graph with every ``DotProductAttention`` node split in three, every softmax in
        group ``SOFTMAX`` and every product of attention weights with values in group
        ``ATTENTION_VALUES`` (weights first).

    Raises:
        UnsupportedLayerError: a fused attention that is not softmax(Q·Kᵀ/√d, mask)·V.
    """
    nodes: list[Node] = []
    weights: set[int] = set()  # attention weights (softmax outputs, their dropout/reshapes)
    for node in graph.nodes:
        if type(node.op).__name__ == "DotProductAttention":
            nodes.extend(_split(node, graph))
            continue
        if _is_softmax(node) and node.outputs[0] != graph.output_id:
            node = node.evolve(group=Group.SOFTMAX, activation="softmax")
            weights.update(node.outputs)
        elif node.group is Group.RESHAPE and len(node.inputs) == 1 and node.inputs[0] in weights:
            weights.update(node.outputs)
        elif (
            node.group is Group.BILINEAR
            and len(node.inputs) == 2
            and (weights.intersection(node.inputs))
        ):
            if node.inputs[0] not in weights:  # weights first (the CP rule's convention)
                node = node.evolve(
                    inputs=node.inputs[::-1], run=lambda xs, run=node.run: run(xs[::-1])
                )
            node = node.evolve(group=Group.ATTENTION_VALUES)
        nodes.append(node)
    return graph.evolve(nodes=nodes)


#: Groups whose presence makes a model a transformer for the contrastive analyzers' default.
TRANSFORMER_GROUPS = frozenset(
    {
        Group.LAYER_NORM,
        Group.BILINEAR,
        Group.MASKED_ACTIVATION,
        Group.SOFTMAX,
        Group.ATTENTION_VALUES,
    }
)


def is_transformer(graph: Graph) -> bool:
    """Whether a walked graph has attention or LayerNorm/RMSNorm (AttnLRP's domain).

    Args:
        graph: A traced (or canonical) graph.

    Returns:
        True if a node is in ``TRANSFORMER_GROUPS``, is a fused attention op, or is a
        ``MultiHeadAttention`` layer that was not walked inside.
    """
    return any(
        node.group in TRANSFORMER_GROUPS
        or type(node.op).__name__ in ("DotProductAttention", "MultiHeadAttention")
        or any(type(w.op).__name__ == "MultiHeadAttention" for w in node.within)
        for node in graph.nodes
    )
