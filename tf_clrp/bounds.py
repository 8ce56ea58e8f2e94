"""Common preprocessings: the function and the input bounds (low, high) it produces.

The z^B first-layer rule needs the lowest and highest value each input can take *after* the
preprocessing the model expects (pass them as ``input_layer_rule=(low, high)``). Each
preprocessing here is declared once, its function beside its bounds; the CLI's
``--preprocess`` presets read this table. Imports no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
#: ImageNet mean pixel (B, G, R) that Keras' "caffe" preprocessing subtracts.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
#: EfficientNet-Lite's centre and scale: (x - 127) / 128.
EFFNET_LITE_MEAN, EFFNET_LITE_STD = 127.0, 128.0


def raw(x: np.ndarray) -> np.ndarray:
    """Pixel values 0..255 unchanged (as float32)."""
    return np.asarray(x).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    """x / 255 -> [0, 1]."""
    return np.asarray(x).astype(np.float32) / 255.0


def symmetric(x: np.ndarray) -> np.ndarray:
    """x / 127.5 - 1 -> [-1, 1] (Keras 'tf' mode: MobileNet, Inception, Xception)."""
    return np.asarray(x).astype(np.float32) / 127.5 - 1.0


def torch(x: np.ndarray) -> np.ndarray:
    """(x / 255 - mean) / std with the ImageNet mean/std per RGB channel (torchvision)."""
    return (np.asarray(x).astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD


def caffe(x: np.ndarray) -> np.ndarray:
    """RGB -> BGR, minus the ImageNet BGR mean (Keras 'caffe' mode: VGG, ResNet50)."""
    return np.asarray(x)[..., ::-1].astype(np.float32) - CAFFE_MEAN_BGR


def effnet_lite(x: np.ndarray) -> np.ndarray:
    """(x - 127) / 128 (EfficientNet-Lite, ``tf_clrp.zoo``)."""
    return ((np.asarray(x, np.float32) - EFFNET_LITE_MEAN) / EFFNET_LITE_STD).astype(np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """A preprocessing of 0..255 RGB images and the bounds of its outputs.

    Attributes:
        apply: The function (0..255 images -> model inputs).
        low: Lowest output value (scalar or one per channel).
        high: Highest output value (scalar or one per channel).
        description: One line for listings.
        rgb_only: Needs three RGB channels.
    """

    apply: Callable[[np.ndarray], np.ndarray]
    low: object
    high: object
    description: str
    rgb_only: bool = False


#: name -> preprocessing (function, bounds, description).
PREPROCESSING_TABLE: dict[str, Preprocessing] = {
    "raw": Preprocessing(raw, 0.0, 255.0, "pixel values 0..255 unchanged"),
    "unit": Preprocessing(unit, 0.0, 1.0, "x / 255"),
    "symmetric": Preprocessing(
        symmetric, -1.0, 1.0, "x / 127.5 - 1 (Keras 'tf' mode: MobileNet, Inception, Xception)"
    ),
    "torch": Preprocessing(
        torch,
        (0.0 - _IMAGENET_MEAN) / _IMAGENET_STD,
        (1.0 - _IMAGENET_MEAN) / _IMAGENET_STD,
        "(x / 255 - mean) / std, ImageNet mean/std per RGB channel (torchvision)",
        rgb_only=True,
    ),
    "caffe": Preprocessing(
        caffe,
        -CAFFE_MEAN_BGR,
        255.0 - CAFFE_MEAN_BGR,
        "RGB→BGR, minus the ImageNet BGR mean (Keras 'caffe' mode: VGG, ResNet50)",
        rgb_only=True,
    ),
    "effnet_lite": Preprocessing(
        effnet_lite,
        (0.0 - EFFNET_LITE_MEAN) / EFFNET_LITE_STD,
        (255.0 - EFFNET_LITE_MEAN) / EFFNET_LITE_STD,
        "(x - 127) / 128 (EfficientNet-Lite, tf_clrp.zoo)",
    ),
}
#: name -> (low, high, description): the bounds of ``PREPROCESSING_TABLE``.
PREPROCESSINGS: dict[str, tuple[object, object, str]] = {
    name: (p.low, p.high, p.description) for name, p in PREPROCESSING_TABLE.items()
}


def input_bounds(preprocessing: str) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest preprocessed input values.

    Args:
        preprocessing: One of ``PREPROCESSINGS`` ("raw", "unit", "symmetric", "torch",
            "caffe", "effnet_lite").

    Returns:
        (low, high) as float32 arrays (scalars or one value per channel).

    Raises:
        ValueError: unknown preprocessing (the message lists the known ones).
    """
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(
            f"unknown preprocessing {preprocessing!r}; known: {', '.join(PREPROCESSINGS)}"
        )
    low, high, _ = PREPROCESSINGS[preprocessing]
    return np.asarray(low, np.float32), np.asarray(high, np.float32)
