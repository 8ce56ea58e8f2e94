"""The ``--preprocess`` presets: how 0..255 RGB images become model inputs.

Imports no TensorFlow (``tf-clrp list`` prints this table). The constants and bounds come
from ``tf_clrp.bounds``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tf_clrp.bounds import _IMAGENET_MEAN, _IMAGENET_STD, CAFFE_MEAN_BGR, input_bounds


@dataclass(frozen=True)
class Preprocessing:
    """How 0..255 RGB images become model inputs; bounds come from ``tf_clrp.bounds``."""

    description: str
    apply: Callable[[np.ndarray], np.ndarray]
    bounds_name: str
    rgb_only: bool = False

    @property
    def low(self) -> np.ndarray:
        """Lowest preprocessed value (scalar or per channel)."""
        return input_bounds(self.bounds_name)[0]

    @property
    def high(self) -> np.ndarray:
        """Highest preprocessed value (scalar or per channel)."""
        return input_bounds(self.bounds_name)[1]


def _effnet_lite(x: np.ndarray) -> np.ndarray:
    from tf_clrp.zoo import preprocess_input

    return np.asarray(preprocess_input(x), np.float32)


PREPROCESSING: dict[str, Preprocessing] = {
    "none": Preprocessing("raw RGB values 0..255", lambda x: x.astype(np.float32), "raw"),
    "unit": Preprocessing("x / 255 -> [0, 1]", lambda x: x.astype(np.float32) / 255.0, "unit"),
    "symmetric": Preprocessing("x / 127.5 - 1 -> [-1, 1] (Keras 'tf' mode)",
                               lambda x: x.astype(np.float32) / 127.5 - 1.0, "symmetric"),
    "caffe": Preprocessing("RGB->BGR, minus ImageNet BGR mean (Keras 'caffe': VGG, ResNet50)",
                           lambda x: x[..., ::-1].astype(np.float32) - CAFFE_MEAN_BGR,
                           "caffe", rgb_only=True),
    "torch": Preprocessing(
        "(x / 255 - ImageNet mean) / std (torchvision)",
        lambda x: (x.astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD,
        "torch", rgb_only=True),
    "effnet_lite": Preprocessing("(x - 127) / 128 (EfficientNet-Lite0 of tf_clrp.zoo)",
                                 _effnet_lite, "effnet_lite"),
}
