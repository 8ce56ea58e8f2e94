"""Class activation maps: Grad-CAM, Grad-CAM++, Layer-CAM and Guided Grad-CAM.

All four read one feature map A (B, h, w, K) of the flattened graph (nested models inlined,
so a transfer-learning base inside a Sequential head needs no sub-model) and the gradient
G = ∂s/∂A of the explained score s (the selected logit; a final softmax is stripped):

* ``grad_cam`` (Selvaraju et al. 2017): relu(Σ_k α_k A_k), α_k = mean_ij G_kij;
* ``grad_cam_plus_plus`` (Chattopadhyay et al. 2018): relu(Σ_k w_k A_k),
  w_k = Σ_ij a_kij relu(G_kij), a_kij = G²/(2G² + Σ_ab A_kab · G³) (0 where the
  denominator is 0) — the closed form for s = exp(logit), without its constant factor
  exp(logit) (as pytorch-grad-cam and tf-keras-vis);
* ``layer_cam`` (Jiang et al. 2021): relu(Σ_k relu(G_k) ⊙ A_k);
* ``guided_grad_cam``: Guided Backprop (unit seed) ⊙ the upsampled Grad-CAM.

Maps come back at the input's spatial size (bilinear, half-pixel centres, as
``tf.image.resize``), spread evenly over the input's channel axis (last axis) like
``Occlusion``: the channel sum of the returned map is the upsampled CAM. ``upsample=False``
returns the raw (B, h, w) map. Token sequences (B, T, D) of an image model (a ViT) are read
as an h × w patch grid (T = h·w, or h·w + 1 with a leading class token dropped), h/w = H/W.

``contrast=`` makes a CAM contrastive in the way CLRP is: the explained score becomes
s = z_target − Σ_k d_k z_k with the dual's weights d (unit mass): "others" (d_k ∝ |z_k|,
k ≠ target), "others_uniform" (d_k = 1/(C−1)), or a rival class k (d = e_k). For Grad-CAM
(linear in the seed) this is relu(L_target − L_dual) with L the map before the ReLU.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp.analyzers.base import (
    Analyzer,
    ReplicaStep,
    check_neuron_selection_unit,
    selection_scores,
)
from tf_clrp.analyzers.contrastive import CONTRASTS, dual_by_code
from tf_clrp.analyzers.propagation import Propagation, one_hot_selection
from tf_clrp.composites import gradient_composite
from tf_clrp.errors import ModelStructureError, SelectionError
from tf_clrp.graph import Graph, trace_model
from tf_clrp.selection import CODES, Selection

#: Contrast code of a plain (non-contrastive) CAM.
NO_CONTRAST = CODES["no_contrast"]

#: Layers skipped by the automatic choice of the feature map: they re-sample or copy the
#: last convolutional features (VGG's final max pooling, dropout, padding).
_SKIPPED_KINDS = (
    "MaxPooling",
    "AveragePooling",
    "Dropout",
    "SpatialDropout",
    "ZeroPadding",
    "Cropping",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "Identity",
)

CAM_METHODS = ("grad_cam", "grad_cam_plus_plus", "layer_cam")


@dataclass(frozen=True)
class FeatureMap:
    """The feature map a CAM reads.

    Attributes:
        layer: Name of the layer producing it (``outer/inner`` inside nested models).
        tensor_id: Its tensor id in the graph.
        shape: Its shape without the batch axis.
        grid: For token sequences: (h, w, leading tokens dropped); None for spatial maps.
    """

    layer: str
    tensor_id: int
    shape: tuple[int | None, ...]
    grid: tuple[int, int, int] | None = None


def token_grid(tokens: int, image_hw: tuple[int, int]) -> tuple[int, int, int] | None:
    """The patch grid (h, w, dropped leading tokens) of a token sequence, if it has one.

    Args:
        tokens: Sequence length T.
        image_hw: The input's (H, W).

    Returns:
        (h, w, skip) with h·w = T − skip, skip ∈ {0, 1}, h/w = H/W; None if no such grid.
    """
    height, width = image_hw
    for skip in (0, 1):
        count = tokens - skip
        if count < 1:
            continue
        h = round(math.sqrt(count * height / width))
        if h >= 1 and count % h == 0 and h * width == (count // h) * height:
            return h, count // h, skip
    return None


def _layer_label(node: Any) -> str:
    return node.name[: -len("/activation")] if node.fused else node.name


def _spatial_rank(graph: Graph) -> int:
    return len(graph.input_shape) - 2


def _feature_of(graph: Graph, tensor_id: int, layer: str) -> FeatureMap | None:
    """The FeatureMap of a tensor if it is spatial (or a token grid), else None."""
    shape = tuple(graph.shapes.get(tensor_id, ()))
    spatial = _spatial_rank(graph)
    if len(shape) == spatial + 2 and any(d is None or d > 1 for d in shape[1:-1]):
        return FeatureMap(layer, tensor_id, shape[1:])
    if spatial == 2 and len(shape) == 3 and shape[1] is not None:
        hw = graph.input_shape[1:3]
        if None not in hw:
            grid = token_grid(int(shape[1]), (int(hw[0]), int(hw[1])))
            if grid is not None and grid[0] * grid[1] > 1:
                return FeatureMap(layer, tensor_id, shape[1:], grid)
    return None


def find_feature_map(
    model: Any, graph: Graph, layer_name: str | None, output_index: int | None = None
) -> FeatureMap:
    """The feature map of ``layer_name``, or by default the last spatial one.

    The default is the output of the last layer (in execution order, on the path to the
    explained output) whose output is spatial — same rank as the input, a spatial size
    above 1 — or a patch grid of tokens; pooling, dropout and padding layers are skipped,
    so a VGG's last convolution is chosen rather than its final max pooling.

    Args:
        model: The Keras model (its layer names are looked up).
        graph: The analyzer's canonical graph.
        layer_name: A layer name (``outer/inner`` or the inner name for nested models).
        output_index: The explained output.

    Raises:
        ModelStructureError: no such layer, or its output is not a spatial map / token grid.
    """
    producer = graph.producer()
    if layer_name is not None:
        node = trace_model(model, output_index).find(layer_name)
        tensor_id = node.outputs[0]
        if tensor_id not in producer:
            raise ModelStructureError(
                f"layer {node.name!r} is not on the path to the explained output of model "
                f"{graph.model_name!r} (or was folded away: pass fold_batch_norm=False)"
            )
        feature = _feature_of(graph, tensor_id, node.name)
        if feature is None:
            raise ModelStructureError(
                f"layer {node.name!r} has output shape {graph.shapes.get(tensor_id)}: a CAM "
                f"needs a spatial feature map of rank {len(graph.input_shape)} (batch, "
                "positions..., channels) or a token grid (batch, h·w [+1], dim)"
            )
        return feature
    for node in reversed(graph.nodes):
        if node.op is not None and type(node.op).__name__.startswith(_SKIPPED_KINDS):
            continue
        if node.inputs == () or node.outputs[0] == graph.input_id:
            continue
        feature = _feature_of(graph, node.outputs[0], _layer_label(node))
        if feature is not None:
            return feature
    raise ModelStructureError(
        f"model {graph.model_name!r} has no layer with a spatial output (or token grid) "
        f"before its output; a CAM is undefined for it: pass layer_name=<a layer with output "
        f"(batch, positions..., channels)> or use a gradient/LRP method"
    )


def cam_from_gradients(method: str, features: tf.Tensor, grads: tf.Tensor) -> tf.Tensor:
    """The CAM of one method from the feature map and its gradient, both (B, ..., K).

    Returns:
        (B, ...) — the spatial axes of ``features``.
    """
    spatial = list(range(1, len(features.shape) - 1))
    if method == "grad_cam":
        weights = tf.reduce_mean(grads, axis=spatial, keepdims=True)
        return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
    if method == "grad_cam_plus_plus":
        squared = tf.square(grads)
        denominator = (
            2.0 * squared + tf.reduce_sum(features, axis=spatial, keepdims=True) * squared * grads
        )
        alpha = tf.math.divide_no_nan(squared, denominator)
        weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=spatial, keepdims=True)
        return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
    if method == "layer_cam":
        return tf.nn.relu(tf.reduce_sum(tf.nn.relu(grads) * features, axis=-1))
    raise ValueError(f"method={method!r}; use one of {CAM_METHODS}")


def upsample_to_input(
    maps: np.ndarray, input_shape: tuple[int, ...], spread: bool = True
) -> np.ndarray:
    """Bilinear upsampling of (B, h, w) (or (B, t)) maps to an input batch's shape.

    Args:
        maps: Raw maps, spatial rank 1 or 2.
        input_shape: The input batch's shape (B, H, W, C) or (B, T, C).
        spread: Divide by C (the channel sum is then the upsampled map); else repeat.

    Returns:
        float32 array of ``input_shape``.
    """
    maps = np.asarray(maps, dtype=np.float32)
    size = tuple(input_shape[1:-1])
    images = maps[..., None] if maps.ndim == 3 else maps[:, :, None, None]
    target = size if len(size) == 2 else (size[0], 1)
    resized = tf.image.resize(images, target, method="bilinear").numpy()
    resized = resized.reshape((len(maps),) + size + (1,))
    channels = input_shape[-1]
    scale = 1.0 / channels if spread else 1.0
    return np.broadcast_to(resized * np.float32(scale), input_shape).astype(np.float32)


class GradCAM(Analyzer):
    """Grad-CAM and its variants (see the module doc for the formulas).

    Args:
        model: The Keras model (never modified).
        layer_name: The feature-map layer; default: the last spatial one (see
            ``find_feature_map``).
        method: "grad_cam", "grad_cam_plus_plus" or "layer_cam".
        upsample: Return maps of the input's shape (True) or the raw (B, h, w) maps.
        contrast: None, "others", "others_uniform" or a rival class index (per call too).
        explained_layer: Explain this hidden layer's output (hidden units) instead of the
            model's output; the feature map must lie before it.
        neuron_selection_unit: "unit" or "channel" (for hidden convolutional layers).
        use_tf_function: Compile the step (default).
        **kwargs: ``Analyzer`` options (output_index, batch_size, neuron_selection_mode,
            fold_batch_norm — default False here: the feature map is the layer's own output;
            ``precision`` has no effect: no LRP rule runs).
    """

    #: The method when ``method=`` is not given.
    default_method = "grad_cam"
    #: ``create_analyzer`` offers no LRP/gradient post-processing options for CAMs.
    cam = True

    def __init__(
        self,
        model: Any,
        layer_name: str | None = None,
        *,
        method: str | None = None,
        upsample: bool = True,
        contrast: Any = None,
        explained_layer: str | None = None,
        neuron_selection_unit: str = "unit",
        use_tf_function: bool = True,
        **kwargs: Any,
    ) -> None:
        method = method or self.default_method
        if method not in CAM_METHODS or (
            type(self).default_method != "grad_cam" and method != self.default_method
        ):
            raise ValueError(f"method={method!r}; use one of {CAM_METHODS}")
        check_neuron_selection_unit(neuron_selection_unit)
        kwargs.setdefault("fold_batch_norm", False)
        super().__init__(model, layer_name=explained_layer, **kwargs)
        self.method = method
        self.upsample = bool(upsample)
        self.explained_layer = explained_layer
        self.feature = find_feature_map(model, self.graph, layer_name, kwargs.get("output_index"))
        self.layer_name = self.feature.layer
        self.channels = int(self.output_shape[-1]) if neuron_selection_unit == "channel" else None
        n_units = self.n_outputs
        if self.channels is not None:
            self.n_outputs = self.channels
        self.contrast = contrast
        self._contrast_codes(contrast, 1)  # validate early
        spec = tf.TensorSpec((None, *self.graph.input_shape[1:]), tf.float32)
        index = tf.TensorSpec((None,), tf.int32)
        seeds = tf.TensorSpec((None, n_units), tf.float32)
        compile_ = lambda fn, sig: (
            tf.function(fn, input_signature=sig, autograph=False) if use_tf_function else fn
        )
        self._by_index = compile_(self._cam_by_index, [spec, index, index])
        self._by_seed = compile_(self._cam_by_seed, [spec, seeds])
        self._forward = compile_(self._scores, [spec])

    # ------------------------------------------------------------------ graph
    def _run(
        self, x: tf.Tensor, tape: tf.GradientTape | None = None
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Plain forward; returns the flat output and the (watched) feature map."""
        values = {self.graph.input_id: x}
        feature = None
        for node in self.graph.nodes:
            values.update(zip(node.outputs, node.run([values[t] for t in node.inputs])))
            if tape is not None and self.feature.tensor_id in node.outputs:
                feature = tf.cast(values[self.feature.tensor_id], tf.float32)
                values[self.feature.tensor_id] = feature
                tape.watch(feature)
        y = values[self.graph.output_id]
        return tf.reshape(tf.cast(y, tf.float32), (tf.shape(x)[0], -1)), feature

    def _scores(self, x: tf.Tensor) -> tf.Tensor:
        return selection_scores(self._run(x)[0], self.channels)

    def _grid(self, t: tf.Tensor) -> tf.Tensor:
        if self.feature.grid is None:
            return t
        h, w, skip = self.feature.grid
        return tf.reshape(t[:, skip:], (-1, h, w, t.shape[-1]))

    def _cam(self, x: tf.Tensor, make_seed: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """(the raw CAMs, each sample's max |gradient| on the feature grid)."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            y, feature = self._run(x, tape)
        seed = make_seed(tf.stop_gradient(y))
        grads = tape.gradient(y, feature, output_gradients=seed)
        if grads is None:
            grads = tf.zeros_like(feature)
        grid_grads = self._grid(grads)
        reach = tf.reduce_max(tf.reshape(tf.abs(grid_grads), (tf.shape(x)[0], -1)), axis=1)
        return cam_from_gradients(self.method, self._grid(feature), grid_grads), reach

    def _cam_by_index(
        self, x: tf.Tensor, indices: tf.Tensor, codes: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self._cam(x, lambda y: self._seed(y, indices, codes))

    def _cam_by_seed(self, x: tf.Tensor, seeds: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return self._cam(x, lambda y: seeds)

    def _seed(self, y: tf.Tensor, indices: tf.Tensor, codes: tf.Tensor) -> tf.Tensor:
        """Target one-hot minus the dual's unit-mass weights (times the target's mass)."""
        mask = one_hot_selection(y, indices, self.channels)
        mass = tf.reduce_sum(mask, axis=1, keepdims=True)
        rest = 1.0 - mask
        others = rest * tf.abs(y)
        rival = one_hot_selection(y, tf.maximum(codes, 0), self.channels)
        code = codes[:, None]
        dual = dual_by_code(code, others, rest, rival)
        dual = tf.math.divide_no_nan(dual, tf.reduce_sum(dual, axis=1, keepdims=True))
        return mask - dual * mass

    def _contrast_codes(self, contrast: Any, batch: int) -> np.ndarray:
        contrast = self.contrast if contrast is None else contrast
        if contrast is None:
            return np.full(batch, NO_CONTRAST, np.int32)
        if isinstance(contrast, str):
            if contrast not in ("others", "others_uniform"):
                raise SelectionError(
                    f"contrast={contrast!r}: a CAM takes 'others', 'others_uniform' or a "
                    "rival class index"
                )
            return np.full(batch, CONTRASTS[contrast], np.int32)
        codes = np.asarray(contrast)
        if codes.dtype.kind not in "iu" or codes.ndim > 1 or codes.size not in (1, batch):
            raise SelectionError(
                f"contrast={contrast!r}: use 'others', 'others_uniform', a rival class index "
                f"or one index per sample (batch of {batch})"
            )
        codes = np.broadcast_to(codes.reshape(-1), (batch,)).astype(np.int32)
        outside = codes[(codes < 0) | (codes >= self.n_outputs)]
        if outside.size:
            raise SelectionError(
                f"contrast index {int(outside[0])} is out of range: the explained output "
                f"has {self.n_outputs} units"
            )
        return codes

    # ------------------------------------------------------------------ public
    def analyze(
        self,
        x: Any,
        neuron_selection: Any = None,
        batch_size: int | None = None,
        contrast: Any = None,
    ) -> np.ndarray:
        """CAMs of a batch.

        Args:
            x: Input batch.
            neuron_selection: As for every analyzer ("max_activation", ints, "all", or a
                float seed array = the output gradient).
            batch_size: Chunk size.
            contrast: Override the analyzer's contrast for this call.

        Returns:
            float32 maps of x's shape (``upsample=True``) or (B, h, w).
        """
        array, selection = self.prepare(x, neuron_selection)
        if len(array) == 0:
            return self._empty(array)
        self._contrast_codes(contrast, len(array))  # checks the whole batch's contrast first
        size = batch_size or self.batch_size or len(array)
        if size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        return self._run_chunked(array, selection, size, contrast=contrast)

    def chunk_options(
        self, kwargs: dict[str, Any], index: np.ndarray, total: int | None = None
    ) -> dict[str, Any]:
        """Indexes a per-sample ``contrast`` (one rival class per sample) by ``index`` (see
        ``Analyzer.chunk_options``); one rival for all is passed unchanged."""
        contrast = kwargs.get("contrast")
        if contrast is None:
            contrast = self.contrast
        if isinstance(contrast, str) or np.ndim(contrast) != 1 or np.size(contrast) == 1:
            return kwargs
        rivals = np.asarray(contrast)
        needed = total if total is not None else (int(index[-1]) + 1 if len(index) else 0)
        if len(rivals) < needed or (total is not None and len(rivals) != total):
            raise SelectionError(
                f"contrast has {len(rivals)} entries for {needed} samples; "
                "give one rival class per sample"
            )
        return {**kwargs, "contrast": rivals[index]}

    def replica_step(
        self, x: np.ndarray, selection: Selection, contrast: Any = None
    ) -> ReplicaStep:
        """The CAMs of one chunk (see ``Analyzer.replica_step``)."""
        finish = self._finisher(x.shape)
        codes = self._contrast_codes(contrast, len(x))
        if selection.seeds is not None:
            if np.any(codes != NO_CONTRAST):
                raise SelectionError("contrast= needs target indices, not a seed array")
            return ReplicaStep((id(self), "by_seed"), self._by_seed, (x, selection.seeds), finish)
        return ReplicaStep(
            (id(self), "by_index"), self._by_index, (x, selection.indices, codes), finish
        )

    def _finisher(self, input_shape: tuple[int, ...]) -> Any:
        def finish(out: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            raw, reach = out
            self._check_reach(reach)
            if not self.upsample:
                return np.asarray(raw, dtype=np.float32)
            return upsample_to_input(raw, input_shape)

        return finish

    def _check_reach(self, reach: np.ndarray) -> None:
        """Warns about samples whose explained output does not depend on the feature grid.

        Their gradient there is exactly 0, so their CAM is an all-zero map that says
        nothing: an inactive (ReLU-dead) explained unit, or a structural reason such as a
        ViT's last block, after which the head reads only the class token.
        """
        dead = np.flatnonzero(np.asarray(reach) == 0)
        if dead.size:
            warnings.warn(
                f"grad-CAM: the explained output of sample(s) {dead.tolist()} (of this chunk) "
                f"does not depend on the feature map of layer {self.feature.layer!r} (its "
                "gradient there is exactly 0), so their maps are all zero. If the unit is "
                "active, pick another layer_name= (a ViT's head reads only the class token "
                "after the last block: use the input of the last block)",
                RuntimeWarning,
                stacklevel=4,
            )

    def _empty(self, x: np.ndarray, **kwargs: Any) -> np.ndarray:
        if self.upsample:
            return np.zeros_like(x, dtype=np.float32)
        grid = self.feature.grid
        shape = grid[:2] if grid is not None else self.feature.shape[:-1]
        return np.zeros((0, *shape), dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.graph.model_name!r}, method={self.method!r},"
            f" layer_name={self.feature.layer!r})"
        )


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018); options as ``GradCAM``."""

    default_method = "grad_cam_plus_plus"


class LayerCAM(GradCAM):
    """Layer-CAM (Jiang et al. 2021); options as ``GradCAM``."""

    default_method = "layer_cam"


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: Guided Backprop (unit seed) ⊙ the upsampled Grad-CAM (repeated,
    not spread, over the input's channels), as Selvaraju et al. 2017.

    Args:
        model: The Keras model.
        layer_name: The feature-map layer (default: the last spatial one).
        explained_layer: Explain this hidden layer's output (hidden units).
        neuron_selection_unit: "unit" or "channel".
        use_tf_function: Compile the steps (default).
        **kwargs: ``Analyzer`` options.
    """

    def __init__(
        self,
        model: Any,
        layer_name: str | None = None,
        *,
        explained_layer: str | None = None,
        neuron_selection_unit: str = "unit",
        use_tf_function: bool = True,
        **kwargs: Any,
    ) -> None:
        for option in ("method", "upsample", "contrast"):
            if option in kwargs:
                raise TypeError(f"guided_grad_cam takes no {option}= option")
        super().__init__(
            model,
            layer_name,
            explained_layer=explained_layer,
            neuron_selection_unit=neuron_selection_unit,
            use_tf_function=use_tf_function,
            **kwargs,
        )
        self.guided = Propagation(
            model,
            gradient_composite("guided"),
            seed="one",
            output_index=kwargs.get("output_index"),
            layer_name=explained_layer,
            neuron_selection_unit=neuron_selection_unit,
            use_tf_function=use_tf_function,
        )

    def replica_step(
        self, x: np.ndarray, selection: Selection, contrast: Any = None
    ) -> ReplicaStep:
        """Grad-CAM and Guided Backprop of the chunk for the same units."""
        if np.any(self._contrast_codes(contrast, len(x)) != NO_CONTRAST):
            raise SelectionError("guided_grad_cam has no contrast option")
        selection = self.resolve_max_activation(x, selection)
        cam = super().replica_step(x, selection)
        guided = self.guided.replica_step(x, selection)

        def fn(*inputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return cam.fn(*inputs), guided.fn(*inputs[:2])

        def finish(out: tuple[tuple[np.ndarray, np.ndarray], Any]) -> np.ndarray:
            raw, reach = out[0]
            self._check_reach(reach)
            upsampled = upsample_to_input(raw, x.shape, spread=False)
            return (upsampled * guided.finish(out[1])).astype(np.float32)

        return ReplicaStep((id(self), "guided", selection.seeds is None), fn, cam.inputs, finish)


__all__ = [
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerCAM",
    "GuidedGradCAM",
    "FeatureMap",
    "find_feature_map",
    "token_grid",
    "cam_from_gradients",
    "upsample_to_input",
]
