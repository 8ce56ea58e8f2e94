"""Attention rollout (Abnar & Zuidema 2020): how much each input token flows into the output.

Per ``MultiHeadAttention`` call (in model order): the attention weights averaged over heads,
plus the identity for the residual connection, rows renormalised; the product of these
matrices over all blocks is the rollout. The map reads one row of it: the class token's
(token 0) for models with a class token, else the mean over all query tokens. Image models
get each patch's value spread evenly over its pixels and channels (the map sums to the
rollout mass on the patches); token models get one value per token (the map of the
embedding output, summed over the embedding axis as for every token map).

The attention weights are recomputed from the model's own forward: tf_clrp's walk of the
model exposes every ``MultiHeadAttention`` call's query and key projections (or its softmax
when the layer uses dropout), so the user's model is never re-called or changed.
Rollout is class-agnostic: every selected output gets the same map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_clrp.analyzers.base import Analyzer, ReplicaStep
from tf_clrp.errors import ModelStructureError
from tf_clrp.graph import Graph, Node
from tf_clrp.selection import Selection


@dataclass(frozen=True)
class AttentionSite:
    """Where one ``MultiHeadAttention`` call's weights come from in the walked graph.

    Attributes:
        layer: The layer's name (for messages).
        weights: Id of the attention weights (B, heads, T, S), if the graph computes them
            (the softmax of the non-fused path); else None.
        query: Id of the projected query (B, T, heads, key_dim) fed to the fused op.
        key: Id of the projected key (B, S, heads, key_dim).
        mask: Id of the boolean attention mask of the fused op, or None.
        scale: The fused op's score scale (1/√key_dim in Keras' MultiHeadAttention).
        causal: The fused op masks future keys.
    """

    layer: str
    weights: int | None = None
    query: int | None = None
    key: int | None = None
    mask: int | None = None
    scale: float = 1.0
    causal: bool = False


def _attention_call(node: Node) -> Node | None:
    """The innermost ``MultiHeadAttention`` call a walked node is inside, if any."""
    for outer in reversed(node.within):
        if isinstance(outer.op, keras.layers.MultiHeadAttention):
            return outer
    return None


def attention_sites(graph: Graph) -> list[AttentionSite]:
    """The attention calls of a walked graph, in execution order.

    Raises:
        ModelStructureError: no ``MultiHeadAttention`` call was walked inside, or one
            computes its weights in a way rollout does not read.
    """
    calls: dict[tuple[str, tuple[int, ...]], list[Node]] = {}
    layers: dict[str, Any] = {}
    for node in graph.nodes:
        outer = _attention_call(node)
        if outer is not None:
            calls.setdefault((outer.name, outer.outputs), []).append(node)
            layers[outer.name] = outer.op
        elif isinstance(node.op, keras.layers.MultiHeadAttention):
            raise ModelStructureError(
                f"attention_rollout cannot read the attention weights of layer {node.name!r}: "
                f"it was not walked inside ({node.untraced or 'no reason recorded'})"
            )
    if not calls:
        opaque = [
            f"layer {n.name!r} of type {n.kind} ({n.untraced})" for n in graph.nodes if n.untraced
        ]
        hint = (
            f"; these layers were not walked inside and may hide some: {'; '.join(opaque)}"
            if opaque
            else ""
        )
        raise ModelStructureError(
            f"attention_rollout needs keras.layers.MultiHeadAttention calls; model "
            f"{graph.model_name!r} has none that tf_clrp can walk into{hint}"
        )
    return [_site(name, layers[name], nodes) for (name, _), nodes in calls.items()]


def _site(name: str, layer: Any, nodes: list[Node]) -> AttentionSite:
    """The site of one call of ``layer`` (a MultiHeadAttention), from its walked nodes."""
    softmax = [n for n in nodes if n.activation == "softmax" or type(n.op).__name__ == "Softmax"]
    if softmax:
        return AttentionSite(name, weights=softmax[-1].outputs[0])
    fused = [n for n in nodes if type(n.op).__name__ == "DotProductAttention"]
    if len(fused) != 1:
        raise ModelStructureError(
            f"attention_rollout cannot find the attention weights inside layer {name!r} "
            f"(no softmax and {len(fused)} dot_product_attention calls)"
        )
    op = fused[0].op
    if getattr(op, "attn_logits_soft_cap", None) is not None:
        raise ModelStructureError(
            f"attention_rollout does not support the logit soft cap of layer {name!r}"
        )
    ins = fused[0].inputs
    if len(ins) > 4:
        raise ModelStructureError(
            f"attention_rollout does not support an attention bias in layer {name!r}"
        )
    # Keras' MultiHeadAttention passes scale=1/√key_dim to the fused op
    return AttentionSite(
        name,
        query=ins[0],
        key=ins[1],
        mask=ins[3] if len(ins) == 4 else None,
        scale=1.0 / math.sqrt(float(layer.get_config()["key_dim"])),
        causal=bool(getattr(op, "is_causal", False)),
    )


def _weights(site: AttentionSite, values: dict[int, tf.Tensor]) -> tf.Tensor:
    """Attention weights (B, heads, T, S) of one site, float32."""
    if site.weights is not None:
        return tf.cast(values[site.weights], tf.float32)
    q = tf.cast(values[site.query], tf.float32)
    k = tf.cast(values[site.key], tf.float32)
    scores = tf.einsum("bthd,bshd->bhts", q, k) * site.scale
    keep = None
    if site.mask is not None:
        keep = values[site.mask]
        if keep.dtype != tf.bool:
            raise ModelStructureError(
                f"attention_rollout: the fused attention of layer {site.layer!r} takes a "
                f"{keep.dtype.name} tensor where a boolean mask was expected (an additive "
                "bias is not supported)"
            )
    if site.causal:
        t, s = tf.shape(scores)[-2], tf.shape(scores)[-1]
        causal = tf.linalg.band_part(tf.ones((t, s), tf.bool), -1, 0)
        keep = causal if keep is None else tf.logical_and(keep, causal)
    if keep is not None:
        scores = tf.where(keep, scores, tf.constant(-1e9, scores.dtype))
    return tf.nn.softmax(scores, axis=-1)


def rollout(weights: list[tf.Tensor]) -> tf.Tensor:
    """Rollout (B, T, T) of per-layer attention weights (each (B, heads, T, T)).

    Each layer's mean over heads plus the identity, rows renormalised, multiplied from the
    first layer on: rollout = Â_L ··· Â_1.
    """
    result = None
    for w in weights:
        a = tf.reduce_mean(w, axis=1)
        a = a + tf.eye(tf.shape(a)[-1], batch_shape=tf.shape(a)[:1], dtype=a.dtype)
        a = a / tf.reduce_sum(a, axis=-1, keepdims=True)
        result = a if result is None else tf.matmul(a, result)
    return result


class AttentionRollout(Analyzer):
    """Attention rollout of the ``MultiHeadAttention`` layers of a functional model.

    Args:
        model: A Keras model whose ``MultiHeadAttention`` calls tf_clrp can walk into
            (functional models, nested models and custom layers written in ``keras.ops``).
        class_token: The row read from the rollout: True: token 0 (the class token; its
            own column is dropped from the map, and for an image model whose token count
            is two more than a square-patch grid, the distillation token's column after it,
            as in DeiT); False: the mean over query tokens; None (default): True for an
            image model whose token count is one or two more than a square-patch grid of
            the image, else False.
        use_tf_function: Compile the computation (one trace per input shape).
        **kwargs: Options of ``Analyzer`` (``output_index``, ``input_name``, ...).

    Image models: tokens (after the class and distillation tokens) must form a grid of equal
    square patches covering the image (row-major, like a patchify ``Conv2D`` + reshape).
    """

    accepts_feeds = True
    #: Registry flags (as Grad-CAM's): no rule, layer_rules or postprocess options.
    lrp = False
    cam = True

    def __init__(
        self,
        model: Any,
        *,
        class_token: bool | None = None,
        use_tf_function: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        self.sites = attention_sites(self.graph)
        self.class_token = class_token
        self.use_tf_function = use_tf_function
        self._fn: Any = None

    def _rollout_row(self, x: tf.Tensor, *feeds: tf.Tensor) -> tf.Tensor:
        """(B, tokens) — the read row of the rollout, class token column dropped."""
        needed = {
            t for s in self.sites for t in (s.weights, s.query, s.key, s.mask) if t is not None
        }
        values: dict[int, tf.Tensor] = {self.graph.input_id: x}
        values.update((fed.id, v) for fed, v in zip(self.graph.feeds, feeds, strict=True))
        for node in self.graph.nodes:
            if needed.issubset(values):
                break
            for t, v in zip(node.outputs, node.run([values[i] for i in node.inputs])):
                values[t] = v
        weights = [_weights(s, values) for s in self.sites]
        shapes = {tuple(w.shape[-2:]) for w in weights}
        if len(shapes) != 1 or len({d for d in next(iter(shapes))}) != 1:
            raise ModelStructureError(
                f"attention_rollout needs self-attention over one token sequence in every "
                f"layer; the attention weights of {[s.layer for s in self.sites]} have "
                f"(queries, keys) shapes {sorted(shapes)}"
            )
        r = rollout(weights)
        prefix = self._prefix_tokens(int(r.shape[-1]))
        if prefix:
            return r[:, 0, prefix:]
        return tf.reduce_mean(r, axis=1)

    def _prefix_tokens(self, tokens: int) -> int:
        """How many tokens precede the patches and are dropped from the map when the class
        token's row is read: the class token, and DeiT's distillation token after it (an
        image model whose tokens are two more than a patch grid); 0: the mean over queries."""
        if self.class_token is False:
            return 0
        if self._is_image():
            for prefix in (1, 2):
                if _patch_grid(self._image_shape(), tokens - prefix) is not None:
                    return prefix
        return 1 if self.class_token else 0

    def _is_image(self) -> bool:
        return self.graph.embedding is None and len(self.graph.input_shape) == 4

    def _image_shape(self) -> tuple[int, int]:
        return int(self.graph.input_shape[1]), int(self.graph.input_shape[2])

    def _to_input(self, row: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
        """Spreads token values over the input: patches over their pixels and channels,
        tokens over their embedding features."""
        n, tokens = row.shape
        if not self._is_image():
            if len(x_shape) != 3 or x_shape[1] != tokens:
                raise ModelStructureError(
                    f"attention_rollout: {tokens} tokens do not map onto the input of shape "
                    f"{x_shape} (expected (batch, {tokens}, features))"
                )
            return np.repeat(row[:, :, None] / x_shape[2], x_shape[2], axis=2)
        h, w = self._image_shape()
        grid = _patch_grid((h, w), tokens)
        if grid is None:
            raise ModelStructureError(
                f"attention_rollout: {tokens} tokens do not form a grid of square patches "
                f"covering the {h}×{w} image (model {self.graph.model_name!r}); pass "
                "class_token=True/False if the class-token guess is wrong"
            )
        gh, gw = grid
        ph, pw = h // gh, w // gw
        channels = x_shape[3]
        patches = row.reshape(n, gh, gw) / (ph * pw * channels)
        pixels = np.repeat(np.repeat(patches, ph, axis=1), pw, axis=2)
        return np.repeat(pixels[..., None], channels, axis=3)

    def replica_step(
        self, x: np.ndarray, selection: Selection, feeds: tuple[np.ndarray, ...] = ()
    ) -> ReplicaStep:
        if self._fn is None:
            self._fn = (
                tf.function(self._rollout_row, autograph=False)
                if self.use_tf_function
                else self._rollout_row
            )
        shape = x.shape

        def finish(row: np.ndarray) -> np.ndarray:
            return self._to_input(np.asarray(row, np.float32), shape).astype(np.float32)

        return ReplicaStep(
            key=("attention_rollout",), fn=self._fn, inputs=(x, *feeds), finish=finish
        )


def _patch_grid(image: tuple[int, int], tokens: int) -> tuple[int, int] | None:
    """(rows, columns) of square patches tiling ``image`` with ``tokens`` patches, or None."""
    h, w = image
    if tokens <= 0:
        return None
    for rows in range(1, h + 1):
        if tokens % rows:
            continue
        cols = tokens // rows
        if h % rows == 0 and w % cols == 0 and h // rows == w // cols:
            return rows, cols
    return None
